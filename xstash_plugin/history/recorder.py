"""At the session's end: every run's result into the history store, and (``--xstash-mlflow``)
into MLflow. Neither ever fails the session: a problem is a warning in the terminal summary."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin.history.baseline import repository_state
from xstash_plugin.history.store import HistoryError, HistoryStore, Session, StoredRun, from_record
from xstash_plugin.run.record import RECORD_NAME
from xstash_plugin.session import State


def _record_of(row: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    run_dir = row.get("run_dir")
    if not run_dir or row.get("kind") == "aggregate":
        return None
    try:
        record = json.loads((Path(run_dir) / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (record, str(run_dir)) if isinstance(record, dict) else None


def stored_runs(
    rows: list[dict[str, Any]], session: str, commit: str | None, branch: str | None
) -> list[StoredRun]:
    """This session's runs as the store keeps them (a reused run counts for this session:
    same run key, same result)."""
    runs = []
    for row in rows:
        found = _record_of(row)
        if found is None:
            continue
        record, run_dir = found
        stored = from_record(record, run_dir, commit, branch, seed_key=row.get("seed_key"))
        status = "passed" if row.get("status") in ("reused", "regressed") else row.get("status")
        runs.append(
            dataclasses.replace(stored, nodeid=str(row["id"]), status=str(status), session=session)
        )
    return runs


def record_history(config: pytest.Config, state: State, rows: list[dict[str, Any]]) -> list[str]:
    """Record the session; the warnings to show (none when it went well)."""
    if not rows:
        return []
    commit, branch = repository_state(config.rootpath)
    runs = stored_runs(rows, state.session_id, commit, branch)
    if not runs:
        return []
    started = min((run.started for run in runs if run.started), default=time.time())
    session = Session(
        id=state.session_id,
        repo_commit=commit,
        branch=branch,
        started=started,
        ended=time.time(),
        host=socket.gethostname(),
    )
    try:
        store = HistoryStore(state.settings.history)
        try:
            store.record(session, runs)
        finally:
            store.close()
    except HistoryError as exc:
        return [f"this session's results were not recorded in the history: {exc}"]
    return []


def log_to_mlflow(state: State, rows: list[dict[str, Any]]) -> list[str]:
    """``--xstash-mlflow URI``: every finished run to MLflow; the warnings to show."""
    uri = state.settings.mlflow
    if uri is None:
        return []
    from xstash_plugin.report.mlflow_log import MlflowLogger

    logger = MlflowLogger(uri)
    for row in rows:
        found = _record_of(row)
        if found is not None:
            logger.log_run(found[0], Path(found[1]))
    return [f"--xstash-mlflow {uri}: {problem}" for problem in logger.problems]
