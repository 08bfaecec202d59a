"""``xstash.needs``: one experiment uses another's output.

.. code-block:: yaml

    xstash:
      needs:
        pretrain: configs/pipeline/pretrain.yaml          # a config, relative to the repository
        data: configs/pipeline/data.yaml::size=small      # one point of a sweep

The upstream's run directory and metrics reach the config as ``${xstash.needs.<name>.run_dir}``
and ``${xstash.needs.<name>.metrics.<metric>}``, resolved by xstash before the tool's config is
written (the tool never sees ``xstash``). Collection checks that each target exists and is an
experiment (one point of it, when it sweeps), that references name a declared need, and that
needs form no cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstash_plugin.config.yamlio import YamlDoc
from xstash_plugin.errors import ConfigError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# ${xstash.needs.<name>.run_dir} or ${xstash.needs.<name>.metrics.<dotted metric>}
REFERENCE = re.compile(r"\$\{xstash\.needs\.([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z0-9_.-]+)\}")
FIX = (
    "write needs: {name: configs/path/to/upstream.yaml} (relative to the folder holding "
    "configs/), or path::<point id> for one point of a sweep"
)


@dataclass(frozen=True)
class Need:
    """One declared upstream: ``target`` is the upstream config's path, ``point`` the id of one
    of its sweep points (as its test id shows it in brackets) or None."""

    name: str
    target: Path
    point: str | None
    line: int
    raw: str

    def describe(self) -> str:
        return self.raw


def check_needs(
    doc: YamlDoc, block: Any, repo_root: Path, errors: list[ConfigError]
) -> tuple[Need, ...]:
    """``xstash.needs``, its shape and its targets' existence checked."""
    if not isinstance(block, dict) or "needs" not in block:
        return ()
    raw = block["needs"]
    if not isinstance(raw, dict) or not raw:
        errors.append(
            ConfigError(
                doc.path, doc.line("xstash", "needs"), "'xstash.needs' must be a mapping", FIX
            )
        )
        return ()
    found: list[Need] = []
    for key, value in raw.items():
        name, line = str(key), doc.line("xstash", "needs", str(key))
        if not NAME.fullmatch(name):
            errors.append(
                ConfigError(doc.path, line, f"need name {name!r} is not a plain name", FIX)
            )
            continue
        if not isinstance(value, str) or not value.strip():
            errors.append(
                ConfigError(doc.path, line, f"need '{name}': {value!r} is not a path", FIX)
            )
            continue
        path_text, _, point = value.strip().partition("::")
        target = (repo_root / path_text).resolve()
        if not target.is_file():
            near = (doc.path.parent / path_text).resolve()
            target = near if near.is_file() else target
        if not target.is_file():
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"need '{name}': {path_text} does not exist ({target})",
                    "correct the path: it is relative to the folder holding configs/ (or to "
                    "this config's folder)",
                )
            )
            continue
        if target == doc.path.resolve():
            errors.append(
                ConfigError(doc.path, line, f"need '{name}' is this experiment itself", FIX)
            )
            continue
        found.append(Need(name, target, point.strip() or None, line, value.strip()))
    return tuple(found)


def references(payload: Any) -> Iterator[tuple[tuple[str, ...], str, str]]:
    """``(key path, need name, field)`` of every ``${xstash.needs...}`` in ``payload``."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*path, str(k)), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, str(i)), v) for i, v in enumerate(value))
        elif isinstance(value, str) and "${xstash.needs." in value:
            for match in REFERENCE.finditer(value):
                yield path, match.group(1), match.group(2)


def check_references(
    doc: YamlDoc, payload: dict[str, Any], needs: tuple[Need, ...], errors: list[ConfigError]
) -> None:
    """Each ``${xstash.needs.<name>.<field>}`` names a declared need and a field it has."""
    declared = {need.name for need in needs}
    for path, name, what in references(payload):
        line = doc.line(*path)
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none declared"
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"'${{xstash.needs.{name}.{what}}}' at '{'.'.join(path)}' names no need "
                    f"of this experiment ({known})",
                    "declare it under xstash.needs, or correct the name",
                )
            )
        elif what != "run_dir" and not what.startswith("metrics."):
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"'${{xstash.needs.{name}.{what}}}' at '{'.'.join(path)}': a need has "
                    "run_dir and metrics.<name>",
                    f"write ${{xstash.needs.{name}.run_dir}} or "
                    f"${{xstash.needs.{name}.metrics.accuracy}}",
                )
            )


def find_cycle(start: Path, needs_of: Callable[[Path], tuple[Need, ...]]) -> list[Path] | None:
    """A cycle of needs through ``start`` (as the list of configs, ``start`` first and last),
    or None. ``needs_of`` gives a config's needs (empty for one that does not parse)."""
    path: list[Path] = [start]
    seen: set[Path] = set()

    def visit(node: Path) -> list[Path] | None:
        for need in needs_of(node):
            if need.target == start:
                return [*path, start]
            if need.target in seen:
                continue
            seen.add(need.target)
            path.append(need.target)
            found = visit(need.target)
            if found is not None:
                return found
            path.pop()
        return None

    return visit(start)


def resolve(value: Any, values: dict[str, dict[str, Any]]) -> Any:
    """``value`` with every ``${xstash.needs...}`` replaced: a string that is one reference
    becomes the value itself (a metric keeps its type), one that embeds it gets its text.
    ``values[name]`` holds ``run_dir`` and ``metrics``; KeyError names what is missing."""
    if isinstance(value, dict):
        return {k: resolve(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, values) for v in value]
    if not isinstance(value, str) or "${xstash.needs." not in value:
        return value

    def lookup(name: str, what: str) -> Any:
        entry = values[name]
        if what == "run_dir":
            return entry["run_dir"]
        node: Any = entry.get("metrics")
        node = {} if node is None else node
        for part in what.split(".")[1:]:
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"{name}.{what}")
            node = node[part]
        return node

    whole = REFERENCE.fullmatch(value)
    if whole is not None:
        return lookup(whole.group(1), whole.group(2))
    return REFERENCE.sub(lambda m: str(lookup(m.group(1), m.group(2))), value)


def check_graph(
    path: Path,
    needs: tuple[Need, ...],
    load: Callable[[Path], Any],
    labels: Callable[[Any], list[str]],
) -> list[ConfigError]:
    """Each need's target is an experiment (one point of it, when it sweeps), and the needs
    through ``path`` form no cycle. ``load`` gives a config's Experiment, or None when it is
    not a valid one; ``labels`` an experiment's point ids (empty: it does not sweep)."""
    errors: list[ConfigError] = []
    for need in needs:
        upstream = load(need.target)
        if upstream is None:
            errors.append(
                ConfigError(
                    path,
                    need.line,
                    f"need '{need.name}': {need.target} is not a valid experiment",
                    "fix that config first (its own errors are reported at its collection)",
                )
            )
            continue
        points = labels(upstream)
        if need.point is None and points:
            errors.append(
                ConfigError(
                    path,
                    need.line,
                    f"need '{need.name}': {need.raw} sweeps {len(points)} points",
                    f"name one of them: {need.raw}::{points[0]} (its points: "
                    f"{', '.join(points[:10])}{', ...' if len(points) > 10 else ''})",
                )
            )
        elif need.point is not None and need.point not in points:
            known = ", ".join(points[:10]) if points else "it does not sweep"
            errors.append(
                ConfigError(
                    path,
                    need.line,
                    f"need '{need.name}': {need.raw} has no point '{need.point}' ({known})",
                    "use a point id as its test id shows it in brackets, or no ::point",
                )
            )

    def needs_of(node: Path) -> tuple[Need, ...]:
        found = load(node)
        return tuple(found.needs) if found is not None else ()

    cycle = find_cycle(path.resolve(), needs_of)
    if cycle is not None:
        errors.append(
            ConfigError(
                path,
                needs[0].line if needs else 1,
                "needs form a cycle: " + " -> ".join(p.name for p in cycle),
                "an experiment cannot need itself, even through others: remove one of these needs",
            )
        )
    return errors


def placeholders(payload: Any, names: list[str]) -> Any:
    """``payload`` with stand-ins for its needs' values, to compose it at collection (the
    upstream's run does not exist yet): a run directory ``/xstash-needs/<name>``, a metric 0."""

    values = {name: {"run_dir": f"/xstash-needs/{name}", "metrics": _Zeros()} for name in names}
    return resolve(payload, values)


class _Zeros(dict[str, Any]):
    """Every metric is 0 (a stand-in at collection)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        return 0
