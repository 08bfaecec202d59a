"""The history database's schema, its migrations, opening it, and its errors as people read them.

Schema (version 1)::

    meta(key PRIMARY KEY, value)                      -- schema_version
    sessions(id PRIMARY KEY, repo_commit, branch, started, ended, host)
        index sessions_by_commit (repo_commit, ended)  -- runs_at_commit, series
        index sessions_by_branch (branch, ended)       -- last_session
    runs(id INTEGER PRIMARY KEY, session_id -> sessions ON DELETE CASCADE, nodeid, experiment,
         config, point (canonical JSON), seed, status, run_key, tool_commit, tool_dirty,
         repo_commit, branch, dependency_hash, host, launcher, started, ended, run_dir, session,
         UNIQUE (session_id, nodeid))                  -- a session's runs; no duplicates
        index runs_by_experiment (experiment, session_id)  -- series
    metrics(run_id -> runs ON DELETE CASCADE, name, value, PRIMARY KEY (run_id, name))
                                                       -- one row per flattened finite metric

Version 0 (the first draft, never released but kept as the migration's test case) had no
``metrics`` table and no ``runs.seed`` column: a run's metrics were one JSON text column
``runs.metrics``, and there was no index on ``runs.experiment``.

When the schema changes: bump :data:`SCHEMA_VERSION`, write the function that turns version
``n`` into ``n + 1`` and add it to :data:`MIGRATIONS` under ``n``. Opening an older database runs
the missing steps in one transaction; a newer one is refused (:class:`HistoryError`).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
_CHUNK = 500  # ids per `IN (...)`: well under SQLite's limit on bound parameters

_SESSIONS = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        repo_commit TEXT,
        branch TEXT,
        started REAL NOT NULL,
        ended REAL NOT NULL,
        host TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_by_commit ON sessions (repo_commit, ended)",
    "CREATE INDEX IF NOT EXISTS sessions_by_branch ON sessions (branch, ended)",
]
_RUNS = [
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        nodeid TEXT NOT NULL,
        experiment TEXT NOT NULL,
        config TEXT NOT NULL,
        point TEXT NOT NULL,
        seed INTEGER,
        status TEXT NOT NULL,
        run_key TEXT,
        tool_commit TEXT,
        tool_dirty INTEGER,
        repo_commit TEXT,
        branch TEXT,
        dependency_hash TEXT,
        host TEXT,
        launcher TEXT,
        started REAL,
        ended REAL,
        run_dir TEXT,
        session TEXT,
        UNIQUE (session_id, nodeid)
    )""",
    "CREATE INDEX runs_by_experiment ON runs (experiment, session_id)",
    """CREATE TABLE metrics (
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (run_id, name)
    ) WITHOUT ROWID""",
]
# The columns of `runs` a version-0 database has too (all but `seed`).
_V0_COLUMNS = (
    "id, session_id, nodeid, experiment, config, point, status, run_key, tool_commit, "
    "tool_dirty, repo_commit, branch, dependency_hash, host, launcher, started, ended, run_dir, "
    "session"
)


class HistoryError(Exception):
    """The history cannot be read or written (corrupt, not a database, locked past the timeout,
    not writable, written by a newer xstash). The message says which file and what to do;
    callers warn and go on: the runs themselves are safe in their run directories."""


def numeric_metrics(metrics: Any, prefix: str = "") -> dict[str, float]:
    """Nested metrics as dotted names, finite numbers only (bools and the rest left out)."""
    found: dict[str, float] = {}
    if not isinstance(metrics, dict):
        return found
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(numeric_metrics(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int too large for a float
                continue
            if math.isfinite(number):
                found[name] = number
    return found


def _v0_to_v1(db: sqlite3.Connection) -> None:
    """Version 0 -> 1: metrics out of the JSON column into their table; runs get `seed`."""
    db.execute("ALTER TABLE runs RENAME TO runs_v0")
    for statement in _RUNS:
        db.execute(statement)
    db.execute(f"INSERT INTO runs ({_V0_COLUMNS}) SELECT {_V0_COLUMNS} FROM runs_v0")
    rows = []
    for run_id, text in db.execute("SELECT id, metrics FROM runs_v0").fetchall():
        try:
            metrics = json.loads(text) if text else {}
        except ValueError:
            metrics = {}
        rows += [(run_id, name, value) for name, value in numeric_metrics(metrics).items()]
    db.executemany("INSERT INTO metrics (run_id, name, value) VALUES (?, ?, ?)", rows)
    db.execute("DROP TABLE runs_v0")


# version n -> the function that turns a version-n database into version n + 1
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _v0_to_v1}


def _version(db: sqlite3.Connection, path: Path) -> int | None:
    """The database's schema version; None for an empty database."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    if "meta" not in tables:
        raise HistoryError(
            f"{path} is an SQLite database but not an xstash results history (it has no 'meta' "
            "table): move it aside, or point xstash to another file; xstash starts a new one"
        )
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise HistoryError(
            f"the results history {path} has no valid schema_version in its 'meta' table: "
            "move it aside; xstash starts a new one"
        ) from None


def _newer(path: Path, version: int) -> HistoryError:
    return HistoryError(
        f"the results history {path} was written by a newer xstash (schema version {version}; "
        f"this xstash knows up to {SCHEMA_VERSION}): upgrade xstash, or move the file aside to "
        "start a new history"
    )


def _create_or_migrate(db: sqlite3.Connection, path: Path, version: int | None) -> None:
    if version is None:
        for statement in _SESSIONS + _RUNS:
            db.execute(statement)
    elif version > SCHEMA_VERSION:
        raise _newer(path, version)
    else:
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](db)
        for statement in _SESSIONS:
            db.execute(statement)
    db.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )


def ensure_schema(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables of an empty database, migrate an older one (one transaction), refuse a
    newer one. A database already at this version is only read (no write lock taken)."""
    version = _version(db, path)
    if version == SCHEMA_VERSION:
        return
    if version is not None and version > SCHEMA_VERSION:
        raise _newer(path, version)
    db.execute("BEGIN IMMEDIATE")
    try:
        _create_or_migrate(db, path, _version(db, path))  # again: another process may have
        db.execute("COMMIT")
    finally:
        rollback(db)


def rollback(db: sqlite3.Connection) -> None:
    """Roll back what is still open (after an error); never raises."""
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def check_file(path: Path) -> None:
    """Refuse early, with a clear message, what SQLite would only call "not a database"."""
    if path.is_dir():
        raise HistoryError(
            f"the results history {path} is a folder, not a file: move it aside, or point xstash "
            "to another file"
        )
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_MAGIC))
    except OSError:  # missing (a new history), or in a folder open_db reports on
        return
    if head and head != SQLITE_MAGIC:
        raise HistoryError(
            f"the results history {path} is not an SQLite database (it starts with {head[:8]!r}):"
            f" move it aside (e.g. rename it to {path.name}.broken); xstash starts a new one"
        )


def open_db(path: Path, timeout: float) -> sqlite3.Connection:
    """Connect (WAL, busy timeout, foreign keys, full sync) and bring the schema up to date."""
    check_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HistoryError(
            f"cannot create the folder of the results history {path} ({exc.strerror or exc}): "
            "make it writable, or point xstash to another output root"
        ) from None
    db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {max(0, int(timeout * 1000))}")
        db.execute("PRAGMA foreign_keys = ON")
        _while_busy(lambda: _prepare(db, path), timeout)
    except BaseException:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    db.execute("PRAGMA journal_mode = WAL")  # falls back on its own where WAL is impossible
    db.execute("PRAGMA synchronous = FULL")  # a recorded session survives a power cut
    ensure_schema(db, path)


def _while_busy(step: Callable[[], None], timeout: float) -> None:
    """Run ``step`` again while SQLite reports the file busy, for up to ``timeout`` seconds.

    Switching a new file to WAL while another connection writes it (two sessions creating the
    history at once) fails at once with "database is locked": SQLite does not call the busy
    handler there, so ``busy_timeout`` does not wait."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if _kind(exc) != "locked" or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


_KINDS = (  # (sqlite error names, words of the message, kind)
    (("SQLITE_BUSY", "SQLITE_LOCKED"), ("locked", "busy"), "locked"),
    (("SQLITE_NOTADB",), ("not a database",), "notadb"),
    (("SQLITE_CORRUPT",), ("malformed", "corrupt"), "corrupt"),
    (("SQLITE_FULL",), ("disk is full", "database or disk is full"), "full"),
    (
        ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH"),
        ("unable to open", "readonly", "permission", "read-only"),
        "unwritable",
    ),
)


def _kind(exc: BaseException) -> str:
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    if isinstance(exc, OSError):
        return "unwritable"
    for names, words, kind in _KINDS:
        if name.startswith(names) or any(word in text for word in words):
            return kind
    return "other"


def history_error(exc: BaseException, path: Path, timeout: float, action: str) -> HistoryError:
    """``exc`` (an sqlite3 or OS error) as a HistoryError saying what, which file, what to do."""
    kind = _kind(exc)
    aside = f"move it aside (e.g. rename it to {path.name}.broken); xstash starts a new one"
    messages = {
        "locked": f"the results history {path} stayed locked for more than {timeout:g} s while "
        f"{action} (another xstash session writing to it?): try again when it is done",
        "notadb": f"the results history {path} is not an SQLite database ({exc}): {aside}",
        "corrupt": f"the results history {path} is damaged ({exc}): {aside}; the runs are still "
        "in their run directories (`xstash history import` reads them back)",
        "full": f"the disk holding the results history {path} is full ({exc}): free some space",
        "unwritable": f"cannot open or write the results history {path} ({exc}) while {action}: "
        "make its folder writable, or point xstash to another output root",
        "other": f"the results history {path} failed while {action} ({exc}): if this persists, "
        f"{aside}",
    }
    return HistoryError(messages[kind])


# --- values of records and rows (for store.py) ---------------------------------------------


def point_text(point: dict[str, Any]) -> str:
    """The canonical JSON of a point: equal points, equal text (series groups by it)."""
    return json.dumps(point, sort_keys=True, separators=(",", ":"), default=str)


def newest_per_commit(
    rows: list[tuple[Any, ...]], commits: int
) -> tuple[list[tuple[Any, ...]], dict[Any, int]]:
    """Of the experiment's runs (``id, config, point, seed, nodeid, session, commit, started,
    ended``): those of the newest session per (commit, config, point), and the newest
    ``commits`` commits' places (commit key -> 0, 1, ... oldest first)."""
    first_seen: dict[Any, tuple[float, float]] = {}
    newest: dict[tuple[Any, str, str], tuple[float, float, str]] = {}
    for _, config, point, _, _, session, commit, started, ended in rows:
        key = commit if commit is not None else (None, session)
        when = (ended, started)
        first_seen[key] = min(first_seen.get(key, when), when)
        mine = (ended, started, session)
        newest[key, config, point] = max(newest.get((key, config, point), mine), mine)
    kept = sorted(first_seen, key=lambda k: first_seen[k])[-commits:]
    order = {key: place for place, key in enumerate(kept)}
    chosen = []
    for row in rows:
        key = row[6] if row[6] is not None else (None, row[5])
        if key in order and newest[key, row[1], row[2]][2] == row[5]:
            chosen.append(row)
    return chosen, order


def metric_values(
    db: sqlite3.Connection, run_ids: list[int], metric: str | None
) -> dict[int, list[tuple[str, float]]]:
    found: dict[int, list[tuple[str, float]]] = defaultdict(list)
    for start in range(0, len(run_ids), _CHUNK):
        chunk = run_ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT run_id, name, value FROM metrics WHERE run_id IN ({marks})"
        args: list[Any] = list(chunk)
        if metric is not None:
            query += " AND name = ?"
            args.append(metric)
        for run_id, name, value in db.execute(query, args):
            found[run_id].append((name, value))
    return found


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def number_or_none(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        with suppress(OverflowError):  # an int too large for a float
            return float(value)
    return None


def seed_of(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


def split_seed(point: dict[str, Any], seed_key: str | None) -> tuple[dict[str, Any], int | None]:
    """``point`` without its seed key (``+seed`` and ``seed`` are the same key) and the seed; a
    value that is not an integer stays in the point."""
    if seed_key is None:
        return point, None
    bare = seed_key.lstrip("+")
    for key, value in point.items():
        if key.lstrip("+") == bare and seed_of(value) is not None:
            return {k: v for k, v in point.items() if k != key}, seed_of(value)
    return point, None
