"""Why a run ran again: with ``--xstash-reuse``, an experiment that finds no passed run with its
run key says which ingredient of the key changed against the newest passed run of the same
experiment and point (the same node id, in the same config's folder of the output root).

One line, e.g. ``tool code src/train.py changed; config model.lr 0.1 -> 0.01``: kept in the
record (``rerun_reason``), the result row, the JUnit properties, and shown under the item's
result with ``-v`` (:class:`RerunLines`, on the controller). The ingredients come from
provenance.py (:class:`KeyParts`); the file lists of hashed folders (the tool's code, folder
inputs) are kept once per distinct folder state as ``<output root>/.xstash/trees/<hash>.json``,
so a record stays small and a changed file can still be named.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin.fsutil import atomic_write
from xstash_plugin.run.provenance import DEPENDENCY_FILES, Files, KeyParts
from xstash_plugin.run.record import RunRecord
from xstash_plugin.run.reuse import ReuseIndex

TREES = "trees"
SHOWN = 3  # changes named per ingredient; the rest are counted
NO_PREVIOUS = "no passed run of this experiment yet"
ABSENT = "(absent)"


def keep_trees(folder: Path, parts: KeyParts, kept: set[str]) -> None:
    """Keep the file lists of ``parts`` as ``folder/<hash>.json`` (once per process each; a
    file already there is never rewritten: its name is its content's hash)."""
    for digest, files in parts.trees.items():
        if digest in kept:
            continue
        path = folder / f"{digest}.json"
        try:
            if not path.is_file():
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write(path, json.dumps({"files": files}, sort_keys=True))
        except OSError:
            continue  # the reason will then say 'changed' without naming files
        kept.add(digest)


def _tree(folder: Path, digest: Any, parts: KeyParts) -> Files | None:
    if not isinstance(digest, str):
        return None
    if digest in parts.trees:
        return parts.trees[digest]
    try:
        data = json.loads((folder / f"{digest}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else None


def _listed(items: list[str]) -> str:
    more = len(items) - SHOWN
    return ", ".join(items[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def file_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``path changed`` / ``added`` / ``removed`` between two {name: digest} maps."""
    changed = sorted(name for name in old.keys() & new.keys() if old[name] != new[name])
    added = sorted(new.keys() - old.keys())
    removed = sorted(old.keys() - new.keys())
    return (
        [f"{name} changed" for name in changed]
        + [f"{name} added" for name in added]
        + [f"{name} removed" for name in removed]
    )


class _Change:
    """One changed ingredient, told against the previous run's record."""

    def __init__(self, old: RunRecord, parts: KeyParts, trees: Path) -> None:
        self.old, self.parts, self.trees = old, parts, trees
        self.before: dict[str, Any] = old.key_ingredients or {}
        self.details: dict[str, Any] = old.key_details or {}

    def tool(self) -> str:
        return f"tool {self.before.get('tool')} -> {self.parts.ingredients['tool']}"

    def code(self) -> str | None:
        old = _tree(self.trees, self.before.get("code"), self.parts)
        new = self.parts.trees.get(str(self.parts.ingredients["code"]))
        if old is None or new is None:
            return "tool code changed"
        changes = file_changes(old, new)
        # The dependency files are in the tool's folder too: told as dependencies.
        other = [c for c in changes if c.rpartition(" ")[0] not in DEPENDENCY_FILES]
        if not other and changes and self._differs("dependencies"):
            return None
        if not other:
            return "tool code changed (the same files' contents: committed or staged since)"
        return "tool code " + _listed(other)

    def _differs(self, name: str) -> bool:
        return bool(self.before.get(name) != self.parts.ingredients.get(name))

    def dependencies(self) -> str:
        old = self.details.get("dependencies")
        new = self.parts.details["dependencies"]
        changes = file_changes(old, new) if isinstance(old, dict) else []
        return "dependencies " + (_listed(changes) if changes else "changed")

    def config(self) -> str:
        old, new = self.details.get("config"), self.parts.details["config"]
        if not isinstance(old, dict):
            return "config changed"
        names = [*new, *(name for name in old if name not in new)]
        changes = [
            f"{name} {old.get(name, ABSENT)} -> {new.get(name, ABSENT)}"
            for name in names
            if old.get(name) != new.get(name)
        ]
        if not changes:
            return "config changed (in values too long for the record to keep whole)"
        return "config " + _listed(changes)

    def overrides(self) -> str:
        def by_key(overrides: list[str]) -> dict[str, str]:
            return {item.split("=", 1)[0].lstrip("+~"): item for item in overrides}

        old, new = by_key(list(self.old.overrides)), by_key(self.parts.overrides)
        changes = []
        for key, item in new.items():
            if key not in old:
                changes.append(f"{item} added")
            elif old[key] != item:
                before, after = old[key].partition("=")[2], item.partition("=")[2]
                changes.append(f"{key} {before or old[key]} -> {after or item}")
        changes += [f"{item} removed" for key, item in old.items() if key not in new]
        return "overrides " + (_listed(changes) if changes else "reordered")

    def inputs(self) -> str:
        old = self.details.get("inputs")
        new: dict[str, str] = self.parts.details["inputs"]
        if not isinstance(old, dict):
            return "inputs changed"
        changes = []
        for name in sorted(old.keys() | new.keys()):
            if name not in old or name not in new:
                changes.append(f"input {name} {'added' if name not in old else 'removed'}")
            elif old[name] != new[name]:
                before = _tree(self.trees, old[name], self.parts)
                after = self.parts.trees.get(new[name])
                inside = file_changes(before, after) if before and after else []
                changes.append(
                    f"input {name}: {_listed(inside)}" if inside else f"input {name} changed"
                )
        return _listed(changes) if changes else "inputs changed"

    def upstream(self) -> str:
        old, new = self.details.get("upstream") or {}, self.parts.details.get("upstream") or {}
        changes = file_changes(old, new) if isinstance(old, dict) else []
        return "upstream " + (_listed(changes) if changes else "changed")


INGREDIENTS: dict[str, Callable[[_Change], str | None]] = {
    "tool": _Change.tool,
    "code": _Change.code,
    "dependencies": _Change.dependencies,
    "config": _Change.config,
    "overrides": _Change.overrides,
    "inputs": _Change.inputs,
    "upstream": _Change.upstream,
}


def explain(old: RunRecord, parts: KeyParts, trees: Path) -> str:
    """Which ingredients of ``parts`` differ from those ``old``'s record keeps, and how."""
    if not isinstance(old.key_ingredients, dict):
        return (
            "its run key differs from the newest passed run's, whose record does not keep its "
            "key's ingredients (an older xstash wrote it)"
        )
    change = _Change(old, parts, trees)
    reasons = [describe(change) for name, describe in INGREDIENTS.items() if change._differs(name)]
    told = [reason for reason in reasons if reason]
    return "; ".join(told) or "its run key differs from the newest passed run's"


def rerun_reason(
    index: ReuseIndex, config_relpath: Path, nodeid: str, parts: KeyParts, trees: Path
) -> str:
    """Why the run of ``nodeid`` (whose key matched no passed run) runs again."""
    previous = index.latest(config_relpath, nodeid)
    if previous is None:
        return NO_PREVIOUS
    try:
        old = RunRecord.load(previous)
    except (OSError, ValueError):
        return NO_PREVIOUS
    return explain(old, parts, trees)


class RerunLines:
    """``-v``: under each experiment that ran again with --xstash-reuse, why (the controller,
    or the one process without xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)  # after the terminal reporter's line for the same report
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = getattr(report, "xstash", None)
        if report.when != "call" or not isinstance(row, dict) or row.get("reused_from"):
            return
        reason = row.get("rerun_reason")
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if not reason or terminal is None or self.config.option.verbose <= 0:
            return
        terminal.ensure_newline()
        terminal.write(f"    rerun: {reason}")
        terminal.currentfspath = -2  # the next line (or section) starts on a line of its own


def register(config: pytest.Config) -> None:
    """Show rerun reasons with ``-v`` (plugin.py calls this where the terminal is)."""
    if not hasattr(config, "workerinput") and not config.pluginmanager.has_plugin("xstash-rerun"):
        config.pluginmanager.register(RerunLines(config), "xstash-rerun")
