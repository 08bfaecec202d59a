"""Baselines: the results this session's are compared with (``--xstash-baseline REF``).

``REF`` is a git revision of the repository (a branch, tag or commit: the results of the newest
session recorded at that commit in the history store), ``last`` (the newest earlier session on
the current branch), or a ``.json`` results file (``--xstash-report results.json`` of another
session). Results are matched by config file and sweep point; the seeds of a point are its
repeats. Only runs that passed count: a failed run measured nothing to compare with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstash_plugin.history.store import HistoryError, HistoryStore, StoredRun
from xstash_plugin.run.provenance import git_output

PASSING = ("passed", "reused")
Key = tuple[str, str]  # (config, sweep point as canonical JSON, without the seed)


def point_key(point: dict[str, Any] | None) -> str:
    return json.dumps(point or {}, sort_keys=True, default=str)


@dataclass
class Baseline:
    """What ``REF`` resolved to: each point's metric values (one per run or seed)."""

    label: str  # what the messages call it: "main (a1b2c3d)"
    commit: str | None = None
    values: dict[Key, dict[str, list[float]]] = field(default_factory=dict)
    problem: str | None = None  # why there is nothing to compare with (a warning)

    def of(self, config: str, point: dict[str, Any] | None) -> dict[str, list[float]] | None:
        return self.values.get((config, point_key(point)))

    def add(self, config: str, point: dict[str, Any] | None, metrics: dict[str, float]) -> None:
        found = self.values.setdefault((config, point_key(point)), {})
        for name, value in metrics.items():
            found.setdefault(name, []).append(float(value))


def repository_state(root: Path) -> tuple[str | None, str | None]:
    """(HEAD's commit, its branch; None when detached or not a repository)."""
    commit = git_output(root, "rev-parse", "HEAD")
    branch = git_output(root, "rev-parse", "--abbrev-ref", "HEAD")
    branch = None if branch is None or branch.strip() == "HEAD" else branch.strip()
    return (None if commit is None else commit.strip()), branch


def _from_runs(label: str, commit: str | None, runs: list[StoredRun]) -> Baseline:
    baseline = Baseline(label, commit)
    for run in runs:
        if run.status in PASSING:
            baseline.add(run.config, run.point, run.metrics)
    if not baseline.values:
        baseline.problem = f"the baseline {label} has no passed results to compare with"
    return baseline


def _from_report(path: Path) -> Baseline:
    from xstash_plugin.report.rows import flatten, is_number

    baseline = Baseline(str(path))
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        baseline.problem = f"the baseline file {path} cannot be read: {exc}"
        return baseline
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or row.get("kind") == "aggregate":
            continue
        if row.get("status") not in PASSING:
            continue
        point = dict(row.get("point") or {})
        point.pop(str(row.get("seed_key", "")), None)
        metrics = {k: v for k, v in flatten(row.get("metrics") or {}).items() if is_number(v)}
        baseline.add(str(row.get("config")), point, metrics)
    if not baseline.values:
        baseline.problem = f"the baseline file {path} has no passed results"
    return baseline


def load_baseline(ref: str, store_path: Path, root: Path, session: str, here: Path) -> Baseline:
    """Resolve ``ref`` (see the module's docstring); ``root``: the repository, ``here``: where
    pytest was started (a results file's path is relative to it)."""
    if ref.endswith(".json"):
        return _from_report(here / ref)
    try:
        store = HistoryStore(store_path)
        try:
            if ref == "last":
                _, branch = repository_state(root)
                runs = store.last_session(branch, before=session)
                label = f"the last session on {branch or 'this detached HEAD'}"
                commit = runs[0].repo_commit if runs else None
                return _from_runs(label, commit, runs)
            commit = git_output(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
            if commit is None:
                return Baseline(ref, problem=f"'{ref}' is not a git revision of {root}")
            commit = commit.strip()
            label = f"{ref} ({commit[:7]})"
            found = _from_runs(label, commit, store.runs_at_commit(commit))
            if not found.values:
                found.problem = (
                    f"no results are recorded at {label} in {store_path}: run the suite on "
                    "that commit first (its results are recorded at the end of every session), "
                    "or import its run directories: xstash history import <output root>"
                )
            return found
        finally:
            store.close()
    except HistoryError as exc:
        return Baseline(ref, problem=str(exc))
