"""The results history: every session's runs in one SQLite file (``sqlite3`` only).

Default file: ``<output root>/.xstash/history.sqlite``. One :meth:`HistoryStore.record` is one
transaction (``BEGIN IMMEDIATE``): two sessions ending at once take turns (WAL mode, a busy
timeout), and a session is in the file whole or not at all. Whatever goes wrong with the file
(damaged, not a database, locked past the timeout, its folder not writable, written by a newer
xstash) is a :class:`HistoryError` saying which file and what to do, never a raw ``sqlite3``
error: callers warn and go on. The tables, their indexes and the migrations are in
:mod:`xstash_plugin.history.store_schema`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from xstash_plugin.history.store_schema import SCHEMA_VERSION as SCHEMA_VERSION
from xstash_plugin.history.store_schema import HistoryError as HistoryError
from xstash_plugin.history.store_schema import (
    history_error,
    metric_values,
    newest_per_commit,
    number_or_none,
    numeric_metrics,
    open_db,
    point_text,
    rollback,
    split_seed,
    text_or_none,
)

DEFAULT_NAME = "history.sqlite"
RECORD_NAME = "xstash.json"  # as xstash_plugin.run.record names it
UNFINISHED = ("running", "submitted")  # records import_outputs leaves out: no result yet


@dataclass(frozen=True)
class StoredRun:
    """One run as the history keeps it."""

    nodeid: str  # pytest node id
    experiment: str
    config: str  # config path relative to the rootdir (posix)
    point: dict[str, Any]  # sweep point WITHOUT the seed key ({} for none)
    seed: int | None  # xstash.seeds: the run's seed, else None
    status: str  # passed, failed, error, timeout, ...
    metrics: dict[str, float]  # flattened (dotted names), finite numbers only
    run_key: str | None
    tool_commit: str | None  # record["git"]["commit"]
    tool_dirty: bool | None  # record["git"]["dirty"]
    repo_commit: str | None  # the repository (rootdir) HEAD at session end
    branch: str | None  # its branch (None when detached)
    dependency_hash: str | None
    host: str | None
    launcher: str | None
    started: float | None
    ended: float | None
    run_dir: str | None
    session: str | None  # the pytest session id


@dataclass(frozen=True)
class Session:
    id: str
    repo_commit: str | None
    branch: str | None
    started: float
    ended: float
    host: str | None


@dataclass(frozen=True)
class SeriesPoint:
    """One metric of one (config, point) at one commit: its values (one per seed)."""

    commit: str | None
    ended: float  # when the session these values come from ended
    config: str
    point: dict[str, Any]
    metric: str
    values: tuple[float, ...]


_FIELDS = [f.name for f in fields(StoredRun) if f.name != "metrics"]  # the columns of `runs`
_COLUMNS = ", ".join(_FIELDS)
_MARKS = ", ".join("?" * (len(_FIELDS) + 2))
_INSERT_RUN = f"INSERT INTO runs (id, session_id, {_COLUMNS}) VALUES ({_MARKS})"
_INSERT_METRIC = "INSERT INTO metrics (run_id, name, value) VALUES (?, ?, ?)"
_NEWEST = "ORDER BY ended DESC, started DESC, rowid DESC LIMIT 1"
_HAS_RUNS = "EXISTS (SELECT 1 FROM runs WHERE runs.session_id = sessions.id)"


def _run_values(run: StoredRun) -> tuple[Any, ...]:
    """A StoredRun as the values of ``_COLUMNS``."""
    values = {name: getattr(run, name) for name in _FIELDS}
    values["point"] = point_text(run.point)
    values["tool_dirty"] = None if run.tool_dirty is None else int(bool(run.tool_dirty))
    return tuple(values.values())


def _stored_run(row: Sequence[Any], metrics: dict[str, float]) -> StoredRun:
    """A row of ``SELECT id, <_COLUMNS>`` (the id first) as a StoredRun."""
    values = dict(zip(_FIELDS, row[1:], strict=True))
    values["point"] = json.loads(values["point"])
    dirty = values["tool_dirty"]
    values["tool_dirty"] = None if dirty is None else bool(dirty)
    return StoredRun(metrics=metrics, **values)


class HistoryStore:
    """The history file at ``path``; opened on first use (a read of a file that does not exist
    yet finds nothing and creates nothing), ``timeout``: how long to wait for another writer."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with suppress(sqlite3.Error):
                db.close()

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Every sqlite3 / OS error of ``action`` as a HistoryError."""
        try:
            yield
        except HistoryError:
            raise
        except (sqlite3.Error, OSError, OverflowError) as exc:
            raise history_error(exc, self.path, self.timeout, action) from exc

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._db is None:
            if not create and not self.path.exists():
                return None
            self._db = open_db(self.path, self.timeout)
        return self._db

    @contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection | None]:
        """A consistent snapshot for the queries of one read (None: no history yet)."""
        with self._guard(action):
            db = self._connect(create=False)
            if db is None:
                yield None
                return
            db.execute("BEGIN")
            try:
                yield db
                db.execute("COMMIT")
            finally:
                rollback(db)

    def record(self, session: Session, runs: Sequence[StoredRun]) -> None:
        """Store ``session`` and its ``runs`` in one transaction. A run recorded again (same
        session id and nodeid) replaces the earlier one; within ``runs``, the last of a nodeid
        wins. Each run's own fields are kept as given (``run.session`` included)."""
        unique = list({run.nodeid: run for run in runs}.values())
        rows = [_run_values(run) for run in unique]
        with self._guard(f"recording session {session.id}"):
            db = self._connect(create=True)
            assert db is not None
            db.execute("BEGIN IMMEDIATE")
            try:
                self._write(db, session, unique, rows)
                db.execute("COMMIT")
            finally:
                rollback(db)

    @staticmethod
    def _write(
        db: sqlite3.Connection,
        session: Session,
        runs: list[StoredRun],
        rows: list[tuple[Any, ...]],
    ) -> None:
        values = (session.repo_commit, session.branch, session.started, session.ended, session.host)
        new = db.execute(
            "INSERT OR IGNORE INTO sessions (id, repo_commit, branch, started, ended, host) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (session.id, *values),
        ).rowcount
        if not new:  # recorded before: update it, replace the runs it is given again
            db.execute(
                "UPDATE sessions SET repo_commit = ?, branch = ?, started = ?, ended = ?, "
                "host = ? WHERE id = ?",
                (*values, session.id),
            )
            db.executemany(
                "DELETE FROM runs WHERE session_id = ? AND nodeid = ?",
                [(session.id, run.nodeid) for run in runs],
            )
        first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM runs").fetchone()[0]
        db.executemany(_INSERT_RUN, [(first + i, session.id, *row) for i, row in enumerate(rows)])
        db.executemany(
            _INSERT_METRIC,
            [
                (first + i, name, value)
                for i, run in enumerate(runs)
                for name, value in numeric_metrics(run.metrics).items()
            ],
        )

    @staticmethod
    def _session_runs(db: sqlite3.Connection, session_id: str) -> list[StoredRun]:
        metrics: dict[int, dict[str, float]] = defaultdict(dict)
        for run_id, name, value in db.execute(
            "SELECT m.run_id, m.name, m.value FROM runs r JOIN metrics m ON m.run_id = r.id "
            "WHERE r.session_id = ?",
            (session_id,),
        ):
            metrics[run_id][name] = value
        rows = db.execute(
            f"SELECT id, {_COLUMNS} FROM runs WHERE session_id = ? ORDER BY id", (session_id,)
        ).fetchall()
        return [_stored_run(row, metrics.get(row[0], {})) for row in rows]

    def _newest_runs(self, action: str, where: str, args: tuple[Any, ...]) -> list[StoredRun]:
        with self._reading(action) as db:
            if db is None:
                return []
            found = db.execute(
                f"SELECT id FROM sessions WHERE {where} AND {_HAS_RUNS} {_NEWEST}", args
            ).fetchone()
            return [] if found is None else self._session_runs(db, found[0])

    def runs_at_commit(self, commit_prefix: str) -> list[StoredRun]:
        """The runs of the newest session (with runs) whose repo_commit starts with
        ``commit_prefix`` (at least 7 hex digits, any case), passed or not; [] if none."""
        prefix = commit_prefix.strip().lower()
        if len(prefix) < 7 or any(c not in "0123456789abcdef" for c in prefix):
            raise ValueError(f"a commit prefix has 7 or more hex digits, not {commit_prefix!r}")
        after = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # every hash with this prefix is below
        return self._newest_runs(
            f"reading the runs at commit {prefix}",
            "repo_commit >= ? AND repo_commit < ?",
            (prefix, after),
        )

    def last_session(self, branch: str | None, before: str | None = None) -> list[StoredRun]:
        """The runs of the newest session (with runs) on ``branch`` (None: a detached HEAD)
        other than the session ``before``; [] if none."""
        return self._newest_runs(
            f"reading the last session on {branch or 'a detached HEAD'}",
            "branch IS ? AND id IS NOT ?",
            (branch, before),
        )

    def series(
        self, experiment: str, metric: str | None = None, commits: int = 100
    ) -> list[SeriesPoint]:
        """The history of ``experiment`` (``metric``, or all): per repo commit, oldest first
        (a commit's place: the first session that ran the experiment there; the newest
        ``commits`` commits), per (config, point, metric), the values of the newest session at
        that commit that ran this (config, point): one value per seed, in seed order. Sessions
        without a repo commit each count as a commit of their own (``commit`` None)."""
        if commits <= 0:
            return []
        with self._reading(f"reading the series of {experiment}") as db:
            if db is None:
                return []
            rows = db.execute(
                "SELECT r.id, r.config, r.point, r.seed, r.nodeid, s.id, s.repo_commit, "
                "s.started, s.ended FROM runs r JOIN sessions s ON s.id = r.session_id "
                "WHERE r.experiment = ?",
                (experiment,),
            ).fetchall()
            chosen, order = newest_per_commit(rows, commits)
            values = metric_values(db, [row[0] for row in chosen], metric)
        return _series_points(chosen, order, values)

    def sessions(self) -> list[Session]:
        """Every recorded session, oldest (by end) first."""
        with self._reading("listing the sessions") as db:
            if db is None:
                return []
            rows = db.execute(
                "SELECT id, repo_commit, branch, started, ended, host FROM sessions "
                "ORDER BY ended, started, rowid"
            ).fetchall()
        return [Session(*row) for row in rows]

    def _existing(self, session_id: str) -> tuple[Session | None, set[str]]:
        """A recorded session and its runs' node ids (import_outputs adds only what is new)."""
        with self._reading(f"reading session {session_id}") as db:
            if db is None:
                return None, set()
            row = db.execute(
                "SELECT id, repo_commit, branch, started, ended, host FROM sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
            if row is None:
                return None, set()
            found = db.execute("SELECT nodeid FROM runs WHERE session_id = ?", (session_id,))
            return Session(*row), {nodeid for (nodeid,) in found}


def _series_points(
    chosen: list[tuple[Any, ...]],
    order: dict[Any, int],
    values: dict[int, list[tuple[str, float]]],
) -> list[SeriesPoint]:
    groups: dict[tuple[int, str, str, str], list[tuple[tuple[int, int, str], float]]] = {}
    ended: dict[tuple[int, str, str, str], float] = {}
    for run_id, config, point, seed, nodeid, session, commit, _, end in chosen:
        place = order[commit if commit is not None else (None, session)]
        rank = (0 if seed is None else 1, seed or 0, nodeid)
        for name, value in values.get(run_id, []):
            groups.setdefault((place, config, point, name), []).append((rank, value))
            ended[place, config, point, name] = end  # one session per (commit, config, point)
    commit_of = {place: key if isinstance(key, str) else None for key, place in order.items()}
    points: dict[str, dict[str, Any]] = {}
    found = []
    for group, ranked in sorted(groups.items()):  # keys are unique: values never compared
        place, config, point, name = group
        if point not in points:
            points[point] = json.loads(point)
        found.append(
            SeriesPoint(
                commit=commit_of[place],
                ended=ended[group],
                config=config,
                point=dict(points[point]),
                metric=name,
                values=tuple(value for _, value in sorted(ranked)),  # ranks are unique too
            )
        )
    return found


def from_record(
    record: dict[str, Any],
    run_dir: str | None,
    repo_commit: str | None,
    branch: str | None,
    seed_key: str | None = None,
) -> StoredRun:
    """A run record (an ``xstash.json`` dict, :meth:`RunRecord.to_json`) as a StoredRun. The
    seed is split out of the point only by ``seed_key`` (a leading ``+`` ignored); metrics are
    flattened to dotted names, finite numbers only. Wrong types become None, never an error."""
    raw_point = record.get("point")
    if seed_key is None and isinstance(record.get("seed_key"), str):
        seed_key = record["seed_key"]  # written by this xstash for seeded runs
    point, seed = split_seed(dict(raw_point) if isinstance(raw_point, dict) else {}, seed_key)
    git = record.get("git") if isinstance(record.get("git"), dict) else {}
    assert isinstance(git, dict)
    dirty = git.get("dirty")
    return StoredRun(
        nodeid=str(record.get("nodeid") or ""),
        experiment=str(record.get("experiment") or ""),
        config=str(record.get("config") or ""),
        point=point,
        seed=seed,
        status=str(record.get("status") or "error"),
        metrics=numeric_metrics(record.get("metrics")),
        run_key=text_or_none(record.get("run_key")),
        tool_commit=text_or_none(git.get("commit")),
        tool_dirty=dirty if isinstance(dirty, bool) else None,
        repo_commit=repo_commit,
        branch=branch,
        dependency_hash=text_or_none(record.get("dependency_hash")),
        host=text_or_none(record.get("host")),
        launcher=text_or_none(record.get("launcher")),
        started=number_or_none(record.get("started")),
        ended=number_or_none(record.get("ended")),
        run_dir=run_dir,
        session=text_or_none(record.get("session")),
    )


def _records(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every readable, finished run record below ``root`` (``.xstash`` folders skipped)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".xstash")
        if RECORD_NAME not in files:
            continue
        try:
            with open(os.path.join(folder, RECORD_NAME), encoding="utf-8") as file:
                record = json.load(file)
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("status") not in UNFINISHED:
            yield Path(folder), record


def _session_of(session_id: str, records: list[dict[str, Any]]) -> Session:
    """A session made from its runs' records: the most common git commit, the first host."""
    gits = [r["git"] for r in records if isinstance(r.get("git"), dict)]
    commits = Counter(c for git in gits if (c := text_or_none(git.get("commit"))))
    starts = [t for r in records if (t := number_or_none(r.get("started"))) is not None]
    ends = [t for r in records if (t := number_or_none(r.get("ended"))) is not None]
    hosts = [h for r in records if (h := text_or_none(r.get("host")))]
    return Session(
        id=session_id,
        repo_commit=commits.most_common(1)[0][0] if commits else None,
        branch=None,
        started=min(starts, default=0.0),
        ended=max(ends + starts, default=0.0),
        host=hosts[0] if hosts else None,
    )


def import_outputs(store: HistoryStore, root: Path) -> int:
    """Back-fill ``store`` from every run record below ``root`` (``.xstash`` skipped; records
    still ``running`` or ``submitted`` left out), one session per record ``session`` (a record
    without one: a session of its own, ``run-dir:<path>``), its repo commit the records' most
    common ``git.commit``. Only what the store lacks is added: a session already there keeps
    its row (its branch, its commit) and its runs. Returns the number of runs added."""
    groups: dict[str, list[tuple[Path, dict[str, Any]]]] = defaultdict(list)
    for run_dir, record in _records(Path(root)):
        session_id = text_or_none(record.get("session")) or f"run-dir:{run_dir.resolve()}"
        groups[session_id].append((run_dir, record))
    added = 0
    for session_id, found in groups.items():
        existing, known = store._existing(session_id)
        session = existing or _session_of(session_id, [record for _, record in found])
        runs = [
            from_record(record, str(run_dir), session.repo_commit, session.branch)
            for run_dir, record in found
        ]
        runs = [run for run in runs if run.nodeid not in known]
        if runs or existing is None:
            store.record(session, runs)
        added += len({run.nodeid for run in runs})
    return added
