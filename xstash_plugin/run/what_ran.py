"""What a run records about what ran, once its environment is ready: the tool folder's git
state (and its uncommitted diff, saved as ``tool.diff`` in the run directory when tracked files
differ), the interpreter and the environment's resolved packages (by hash, see envs.py), the
run key's ingredients (provenance.py) and, with --xstash-reuse, why it runs again (rerun.py).

Per run this is cheap: git is asked once per tool folder per process, the environment frozen
once per build, the key's files listed once per process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.registry import Tool
from xstash_plugin.fsutil import atomic_write
from xstash_plugin.run.envs import uv_version
from xstash_plugin.run.provenance import KeyParts, git_state, python_version_of, uncommitted_diff
from xstash_plugin.run.rerun import TREES, keep_trees, rerun_reason
from xstash_plugin.session import State

TOOL_DIFF = "tool.diff"


def _tool_state(state: State, tool: Tool) -> dict[str, Any]:
    """The tool folder's git state and uncommitted diff, asked once per process."""
    key = str(tool.path)
    found = state.provenance.get(key)
    if found is None:
        git = git_state(tool.path)
        diff = uncommitted_diff(tool.path) if git.get("dirty") else None
        if diff is not None:
            diff = (
                f"# xstash: uncommitted changes of {tool.path} against commit {git['commit']}\n"
                f"# (git diff HEAD); to apply them in the repository: git apply {TOOL_DIFF}\n"
                + diff
            )
        found = state.provenance[key] = {"git": git, "diff": diff}
    return found


class Item(Protocol):
    """What this needs of the run's item (run/items.py's ExperimentItem is one)."""

    experiment: Experiment

    @property
    def nodeid(self) -> str: ...

    @property
    def config_relpath(self) -> Path: ...

    def add_report_section(self, when: str, key: str, content: str) -> None: ...


def provenance(
    state: State, item: Item, python: str | None, run_dir: Path, parts: KeyParts
) -> dict[str, Any]:
    """The record's fields about what ran (writes ``tool.diff`` when the tree is dirty); with
    --xstash-reuse, why it runs again (also a section of the item's report)."""
    tool = item.experiment.tool
    known = _tool_state(state, tool)
    info: dict[str, Any] = {
        "git": known["git"],
        "dependency_hash": parts.ingredients["dependencies"],
        "tool_python": python,
        "tool_python_version": python_version_of(python) if python else None,
        "uv": uv_version() if tool.env == "uv" else None,
        "key_ingredients": parts.ingredients,
        "key_details": parts.details,
    }
    environment = state.envs.environment(python) if python else None
    if environment is not None:
        info["environment_hash"], path = environment
        info["environment_path"] = str(path)
    if known["diff"] is not None:
        try:
            atomic_write(run_dir / TOOL_DIFF, known["diff"])
            info["tool_diff"] = TOOL_DIFF
        except OSError:
            pass  # the record still says the tree was dirty
    keep_trees(state.xstash_dir / TREES, parts, state.keys.stored)
    if state.reuse is not None:  # no passed run had this run's key
        trees = state.xstash_dir / TREES
        reason = rerun_reason(state.reuse, item.config_relpath, item.nodeid, parts, trees)
        info["rerun_reason"] = reason
        item.add_report_section("call", "xstash rerun", reason)
    return info
