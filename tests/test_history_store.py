"""The results history (xstash_plugin/history/store.py): what goes in comes back, sessions are
never duplicated nor lost (two writers at once), every problem with the file is a HistoryError
that says what to do, an older database is migrated, run directories can be imported."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin.history.store import (
    DEFAULT_NAME,
    SCHEMA_VERSION,
    HistoryError,
    HistoryStore,
    Session,
    StoredRun,
    from_record,
    import_outputs,
)
from xstash_plugin.history.store_schema import MIGRATIONS, _while_busy
from xstash_plugin.run.record import RunRecord, Status

ROOT = Path(__file__).resolve().parent.parent
C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40


def run_of(nodeid: str = "configs/a.yaml::a", **fields: Any) -> StoredRun:
    values: dict[str, Any] = {
        "nodeid": nodeid,
        "experiment": "a",
        "config": "configs/a.yaml",
        "point": {},
        "seed": None,
        "status": "passed",
        "metrics": {"accuracy": 0.9},
        "run_key": None,
        "tool_commit": None,
        "tool_dirty": None,
        "repo_commit": None,
        "branch": None,
        "dependency_hash": None,
        "host": None,
        "launcher": None,
        "started": None,
        "ended": None,
        "run_dir": None,
        "session": None,
    }
    values.update(fields)
    return StoredRun(**values)


def session_of(sid: str, commit: str | None = C1, branch: str | None = "main", at: float = 100.0):
    return Session(id=sid, repo_commit=commit, branch=branch, started=at - 10, ended=at, host="h")


@pytest.fixture
def store(tmp_path: Path) -> Any:
    found = HistoryStore(tmp_path / ".xstash" / DEFAULT_NAME)
    yield found
    found.close()


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# --- what goes in comes back ------------------------------------------------------------------


def test_every_field_round_trips(store: HistoryStore) -> None:
    full = run_of(
        "configs/deep/b.yaml::b[lr=0.1-seed=3]",
        experiment="b",
        config="configs/deep/b.yaml",
        point={"lr": 0.1, "model": "mlp", "layers": [1, 2], "+extra.flag": True},
        seed=3,
        status="failed",
        metrics={"accuracy": 0.93, "loss.train": 0.25, "loss.val": -1.5e-9, "n": 75.0},
        run_key="473e8d3f",
        tool_commit="a" * 40,
        tool_dirty=True,
        repo_commit=C1,
        branch="feature/x",
        dependency_hash="d49e9a44",
        host="gpu-7",
        launcher="slurm",
        started=1796280170.5987318,
        ended=1796280171.25,
        run_dir="/out/configs/deep/b/20261203-064250-d374bc4676",
        session="s1",
    )
    assert all(getattr(full, f.name) is not None for f in dataclasses.fields(StoredRun))
    bare = run_of("configs/a.yaml::a", metrics={}, tool_dirty=False)
    store.record(session_of("s1"), [full, bare])
    assert store.runs_at_commit(C1) == [full, bare]
    assert store.last_session("main") == [full, bare]
    assert store.sessions() == [session_of("s1")]
    reopened = HistoryStore(store.path)
    assert reopened.runs_at_commit(C1) == [full, bare]
    reopened.close()


def test_reads_of_a_missing_history_find_nothing_and_create_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none" / DEFAULT_NAME
    with HistoryStore(path) as store:
        assert store.runs_at_commit(C1) == []
        assert store.last_session("main") == []
        assert store.series("a") == []
        assert store.sessions() == []
    assert not path.parent.exists()


def test_recording_a_session_again_replaces_its_runs(store: HistoryStore) -> None:
    first = [run_of(f"configs/a.yaml::a[{i}]", metrics={"accuracy": 0.5}) for i in range(3)]
    store.record(session_of("s1"), first)
    store.record(session_of("s1"), first)
    again = [run_of("configs/a.yaml::a[0]", metrics={"accuracy": 0.7, "loss": 1.0})]
    store.record(session_of("s1", at=200.0), again + again)  # the same nodeid twice: once
    assert count(store.path, "sessions") == 1
    assert count(store.path, "runs") == 3
    assert count(store.path, "metrics") == 4  # 0.5, 0.5 and the replaced run's two
    runs = {run.nodeid: run for run in store.last_session("main")}
    assert runs["configs/a.yaml::a[0]"].metrics == {"accuracy": 0.7, "loss": 1.0}
    assert runs["configs/a.yaml::a[1]"].metrics == {"accuracy": 0.5}
    assert store.sessions() == [session_of("s1", at=200.0)]


def test_runs_at_commit_takes_the_newest_session_of_a_prefix(store: HistoryStore) -> None:
    store.record(session_of("old", C1, at=100), [run_of(metrics={"accuracy": 0.1})])
    store.record(session_of("new", C1, at=300), [run_of(metrics={"accuracy": 0.3})])
    store.record(session_of("other", C2, at=400), [run_of(metrics={"accuracy": 0.4})])
    store.record(session_of("empty", C1, at=500), [])  # a session with no runs is no baseline
    assert [r.metrics["accuracy"] for r in store.runs_at_commit(C1)] == [0.3]
    assert [r.metrics["accuracy"] for r in store.runs_at_commit(C1[:7])] == [0.3]
    assert [r.metrics["accuracy"] for r in store.runs_at_commit("2222222")] == [0.4]
    assert store.runs_at_commit("ABCDEF1") == []
    with pytest.raises(ValueError, match="7 or more hex digits"):
        store.runs_at_commit("111")


def test_last_session_is_the_newest_on_the_branch_but_this_one(store: HistoryStore) -> None:
    store.record(session_of("m1", branch="main", at=100), [run_of(status="passed")])
    store.record(session_of("f1", branch="feature", at=200), [run_of(status="error")])
    store.record(session_of("m2", branch="main", at=300), [run_of(status="failed")])
    store.record(session_of("d1", branch=None, at=400), [run_of(status="timeout")])
    assert [r.status for r in store.last_session("main")] == ["failed"]
    assert [r.status for r in store.last_session("main", before="m2")] == ["passed"]
    assert [r.status for r in store.last_session("feature", before="m2")] == ["error"]
    assert [r.status for r in store.last_session(None)] == ["timeout"]
    assert store.last_session("main", before="m2") == store.last_session("main", "m2")
    assert store.last_session("gone") == []


def seeded(sid: str, values: dict[int, float], point: dict[str, Any]) -> list[StoredRun]:
    label = "-".join(f"{k}={v}" for k, v in point.items())
    return [
        run_of(
            f"configs/a.yaml::a[{label}-seed={seed}]",
            point=point,
            seed=seed,
            session=sid,
            metrics={"accuracy": value, "loss": 1 - value},
        )
        for seed, value in values.items()
    ]


def test_series_per_commit_in_session_order_with_every_seed(store: HistoryStore) -> None:
    lr1, lr2 = {"lr": 0.1}, {"lr": 0.01}
    store.record(session_of("s1", C1, at=100), seeded("s1", {1: 0.5, 0: 0.4}, lr1))
    store.record(session_of("s2", C2, at=200), seeded("s2", {0: 0.6, 1: 0.7}, lr1))
    store.record(
        session_of("s3", C3, at=300), seeded("s3", {0: 0.8}, lr1) + seeded("s3", {0: 0.1}, lr2)
    )
    # C1 again, later: the newest values at C1, C1 keeps its place (first seen first)
    store.record(session_of("s4", C1, at=400), seeded("s4", {0: 0.45, 1: 0.55}, lr1))
    store.record(session_of("s5", None, at=500), seeded("s5", {0: 0.9}, lr1))
    other = run_of("configs/z.yaml::z", experiment="z", metrics={"accuracy": 1.0})
    store.record(session_of("s6", C3, at=600), [other])

    found = store.series("a", "accuracy")
    assert [(p.commit, p.point, p.values) for p in found] == [
        (C1, lr1, (0.45, 0.55)),
        (C2, lr1, (0.6, 0.7)),
        (C3, lr2, (0.1,)),  # within a commit: by config, point (its JSON), metric
        (C3, lr1, (0.8,)),
        (None, lr1, (0.9,)),
    ]
    assert [p.ended for p in found] == [400, 200, 300, 300, 500]
    assert {p.metric for p in found} == {"accuracy"}
    assert {p.config for p in found} == {"configs/a.yaml"}
    both = store.series("a")
    assert [(p.commit, p.metric) for p in both][:2] == [(C1, "accuracy"), (C1, "loss")]
    assert both[1].values == pytest.approx((0.55, 0.45))
    assert [p.commit for p in store.series("a", "accuracy", commits=2)] == [C3, C3, None]
    assert store.series("a", "missing") == []
    assert store.series("nobody") == []
    assert store.series("a", commits=0) == []
    assert [p.values for p in store.series("z")] == [(1.0,)]


# --- from_record ------------------------------------------------------------------------------


def test_from_record_flattens_metrics_and_splits_the_seed() -> None:
    record = RunRecord(
        status=Status.PASSED,
        experiment="a",
        config="configs/a.yaml",
        nodeid="configs/a.yaml::a[lr=0.1-seed=4]",
        tool="t",
        tool_path="/t",
        started=10.0,
        ended=12.5,
        point={"lr": 0.1, "+seed": 4},
        session="s1",
        host="h",
        run_key="k",
        git={"commit": "c" * 40, "dirty": True},
        dependency_hash="d",
        metrics={
            "accuracy": 0.9,
            "n": 75,
            "ok": True,
            "name": "mlp",
            "nan": float("nan"),
            "inf": float("inf"),
            "huge": 10**400,
            "loss": {"train": 0.1, "val": {"last": 0.2}, "curve": [1, 2]},
        },
    ).to_json()
    run = from_record(record, "/out/run", C1, "main", seed_key="seed")
    assert run.metrics == {"accuracy": 0.9, "n": 75.0, "loss.train": 0.1, "loss.val.last": 0.2}
    assert (run.point, run.seed) == ({"lr": 0.1}, 4)
    assert (run.tool_commit, run.tool_dirty, run.repo_commit, run.branch) == (
        "c" * 40,
        True,
        C1,
        "main",
    )
    assert (run.run_dir, run.session, run.started, run.ended) == ("/out/run", "s1", 10.0, 12.5)
    assert (run.launcher, run.host, run.run_key, run.dependency_hash) == ("local", "h", "k", "d")
    assert from_record(record, None, None, None, seed_key="+seed").seed == 4
    unsplit = from_record(record, None, None, None)
    assert (unsplit.point, unsplit.seed) == ({"lr": 0.1, "+seed": 4}, None)
    odd = from_record(
        {"point": {"seed": "x"}, "git": "no", "metrics": [1]}, None, None, None, "seed"
    )
    assert (odd.point, odd.seed, odd.metrics, odd.tool_commit, odd.status) == (
        {"seed": "x"},
        None,
        {},
        None,
        "error",
    )


# --- two writers at once ----------------------------------------------------------------------

WRITER = """\
import sys, time
from pathlib import Path
from xstash_plugin.history.store import HistoryStore, Session, StoredRun
path, name, go, n = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
runs = [
    StoredRun(f"configs/e{i}.yaml::e{i}", f"e{i}", f"configs/e{i}.yaml", {"i": i}, None, "passed",
              {"accuracy": i / 2000, "loss": 1.0, "n": 3.0}, None, None, None, name, "main",
              None, "h", "local", 1.0, 2.0, None, name)
    for i in range(n)
]
while not go.exists():
    time.sleep(0.001)
store = HistoryStore(path)
store.record(Session(name, name, "main", time.time(), time.time(), "h"), runs)
store.close()
"""


def race(path: Path, go: Path, names: list[str], runs: int) -> None:
    """``names`` write ``runs`` runs each to ``path`` at once, in processes of their own."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(go), str(runs)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    time.sleep(1.0)  # all imported and waiting
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def test_two_sessions_recording_at_once_are_both_kept_whole(tmp_path: Path) -> None:
    for round_ in range(2):  # a fresh file each time: both also race to create the tables
        path, go = tmp_path / f"r{round_}" / DEFAULT_NAME, tmp_path / f"go{round_}"
        names = [f"{round_}a" * 20, f"{round_}b" * 20]
        race(path, go, names, 2000)
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert count(path, "runs") == 4000
        assert count(path, "metrics") == 12000
        with HistoryStore(path) as store:
            assert sorted(s.id for s in store.sessions()) == sorted(names)
            for name in names:
                runs = store.runs_at_commit(name)
                assert len(runs) == 2000
                assert {r.session for r in runs} == {name}


# --- every problem is a HistoryError ----------------------------------------------------------


def make_store(path: Path) -> None:
    with HistoryStore(path) as store:
        store.record(session_of("s1"), [run_of(f"n{i}") for i in range(200)])


def all_methods(path: Path, timeout: float = 30.0) -> list[str]:
    """Call every method on ``path``; the messages of the HistoryErrors (one per method)."""
    outputs = path.parent / "outputs"
    if not outputs.exists():
        save(outputs, "r1", session="s9")
    calls = [
        lambda s: s.record(session_of("s2"), [run_of()]),
        lambda s: s.runs_at_commit(C1),
        lambda s: s.last_session("main"),
        lambda s: s.series("a"),
        lambda s: s.sessions(),
        lambda s: import_outputs(s, outputs),
    ]
    messages = []
    for call in calls:
        store = HistoryStore(path, timeout=timeout)
        with pytest.raises(HistoryError) as caught:
            call(store)
        store.close()
        messages.append(str(caught.value))
    return messages


def test_garbage_bytes_are_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / DEFAULT_NAME
    path.write_bytes(os.urandom(8192))
    for message in all_methods(path):
        assert str(path) in message
        assert "not an SQLite database" in message and "move it aside" in message


def test_a_text_file_is_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / DEFAULT_NAME
    path.write_text('{"not": "a database"}\n')
    for message in all_methods(path):
        assert "not an SQLite database" in message and str(path) in message


def test_damaged_pages_are_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / DEFAULT_NAME
    make_store(path)
    data = bytearray(path.read_bytes())
    data[100 : len(data)] = os.urandom(len(data) - 100)  # the header stays, the rest is noise
    path.write_bytes(bytes(data))
    for message in all_methods(path):
        assert str(path) in message and "move it aside" in message
        assert "damaged" in message or "not an SQLite database" in message


def test_an_sqlite_file_of_someone_else_is_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / DEFAULT_NAME
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE mine (x)")
    for message in all_methods(path):
        assert "not an xstash results history" in message
    assert count(path, "mine") == 0  # left as it was


def test_sessions_creating_the_history_at_once_all_get_in(tmp_path: Path) -> None:
    """Switching a new file to WAL while another session writes it fails at once ("database is
    locked", SQLite's busy timeout does not apply there): opening waits and tries again. Without
    that, about one writer in thirty failed here."""
    for round_ in range(8):
        path, go = tmp_path / f"r{round_}" / DEFAULT_NAME, tmp_path / f"go{round_}"
        names = [f"{round_}{c}" * 20 for c in "abc"]
        race(path, go, names, 20)
        with HistoryStore(path) as store:
            assert sorted(s.id for s in store.sessions()) == sorted(names)
        assert count(path, "runs") == 60


def test_opening_tries_again_only_while_the_file_is_busy() -> None:
    calls: list[int] = []

    def busy_twice() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")

    _while_busy(busy_twice, timeout=5)
    assert len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: runs")

    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        _while_busy(broken, timeout=5)
    assert len(calls) == 1

    def always_busy() -> None:
        raise sqlite3.OperationalError("database is locked")

    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _while_busy(always_busy, timeout=0.3)
    assert 0.1 < time.monotonic() - started < 5


def test_a_lock_held_past_the_timeout_is_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / DEFAULT_NAME
    make_store(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.perf_counter()
        with HistoryStore(path, timeout=0.1) as store, pytest.raises(HistoryError) as caught:
            store.record(session_of("s2"), [run_of()])
        assert time.perf_counter() - started < 5
        assert "locked for more than 0.1 s" in str(caught.value) and str(path) in str(caught.value)
        with HistoryStore(path, timeout=0.1) as store:  # readers still read (WAL)
            assert len(store.runs_at_commit(C1)) == 200
    finally:
        other.execute("ROLLBACK")
        other.close()
    with HistoryStore(path, timeout=0.1) as store:  # and once it is released, all is well
        store.record(session_of("s2"), [run_of()])
    assert count(path, "sessions") == 2


def test_a_folder_that_cannot_be_made_is_a_history_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    path = blocker / ".xstash" / DEFAULT_NAME
    with HistoryStore(path) as store, pytest.raises(HistoryError) as caught:
        store.record(session_of("s1"), [run_of()])
    assert "cannot create the folder" in str(caught.value) and str(path) in str(caught.value)


def test_a_folder_in_place_of_the_file_is_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / DEFAULT_NAME
    path.mkdir()
    for message in all_methods(path):
        assert "is a folder" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_a_history_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with HistoryStore(folder / DEFAULT_NAME) as store, pytest.raises(HistoryError) as caught:
            store.record(session_of("s1"), [run_of()])
        assert "make its folder writable" in str(caught.value)
    finally:
        folder.chmod(0o755)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / DEFAULT_NAME
    make_store(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    for message in all_methods(path):
        assert "written by a newer xstash" in message and "upgrade xstash" in message
    assert count(path, "runs") == 200  # untouched


# --- migrations -------------------------------------------------------------------------------

# The version-0 schema as it was (see store_schema's docstring): metrics as JSON in `runs`.
V0 = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, repo_commit TEXT, branch TEXT, "
    "started REAL NOT NULL, ended REAL NOT NULL, host TEXT)",
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL REFERENCES "
    "sessions (id), nodeid TEXT NOT NULL, experiment TEXT NOT NULL, config TEXT NOT NULL, "
    "point TEXT NOT NULL, status TEXT NOT NULL, metrics TEXT, run_key TEXT, tool_commit TEXT, "
    "tool_dirty INTEGER, repo_commit TEXT, branch TEXT, dependency_hash TEXT, host TEXT, "
    "launcher TEXT, started REAL, ended REAL, run_dir TEXT, session TEXT, "
    "UNIQUE (session_id, nodeid))",
    "INSERT INTO meta VALUES ('schema_version', '0')",
]


def test_a_version_0_history_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    assert sorted(MIGRATIONS) == list(range(SCHEMA_VERSION))
    path = tmp_path / DEFAULT_NAME
    with sqlite3.connect(path) as db:
        for statement in V0:
            db.execute(statement)
        db.execute("INSERT INTO sessions VALUES ('s0', ?, 'main', 1.0, 2.0, 'h')", (C1,))
        db.execute("INSERT INTO sessions VALUES ('s1', ?, 'main', 3.0, 4.0, 'h')", (C2,))
        metrics = {"accuracy": 0.8, "loss": {"val": 0.3}, "ok": True, "note": "x"}
        for sid, nodeid, status, text in [
            ("s0", "configs/a.yaml::a[lr=0.1]", "passed", json.dumps(metrics)),
            ("s0", "configs/a.yaml::a[lr=0.2]", "failed", None),
            ("s1", "configs/a.yaml::a[lr=0.1]", "passed", "{broken json"),
        ]:
            db.execute(
                "INSERT INTO runs (session_id, nodeid, experiment, config, point, status, "
                "metrics, tool_dirty, run_dir, session) VALUES (?, ?, 'a', 'configs/a.yaml', "
                "?, ?, ?, 1, '/out/x', ?)",
                (sid, nodeid, json.dumps({"lr": 0.1}), status, text, sid),
            )
    with HistoryStore(path) as store:
        runs = store.runs_at_commit(C1)
        assert [(r.nodeid, r.status, r.seed) for r in runs] == [
            ("configs/a.yaml::a[lr=0.1]", "passed", None),
            ("configs/a.yaml::a[lr=0.2]", "failed", None),
        ]
        assert runs[0].metrics == {"accuracy": 0.8, "loss.val": 0.3}
        assert (runs[0].point, runs[0].tool_dirty, runs[0].run_dir) == ({"lr": 0.1}, True, "/out/x")
        assert runs[1].metrics == {}
        assert [r.metrics for r in store.runs_at_commit(C2)] == [{}]
        assert [s.id for s in store.sessions()] == ["s0", "s1"]
        store.record(session_of("s2", C3), [run_of(seed=2)])  # the new schema is there to use
        assert store.runs_at_commit(C3)[0].seed == 2
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"meta", "sessions", "runs", "metrics"}
        columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
        assert "seed" in columns and "metrics" not in columns


# --- import_outputs ---------------------------------------------------------------------------


def save(root: Path, name: str, **fields: Any) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    values: dict[str, Any] = {
        "status": Status.PASSED,
        "experiment": "a",
        "config": "configs/a.yaml",
        "nodeid": f"configs/a.yaml::a[{name.replace('/', '-')}]",
        "tool": "t",
        "tool_path": "/tools/t",
        "started": 100.0,
        "ended": 101.0,
        "host": "h",
        "git": {"commit": C1, "dirty": False},
        "metrics": {"accuracy": 0.9, "loss": {"val": 0.2}},
        "point": {"lr": 0.1},
    }
    values.update(fields)
    RunRecord(**values).save(run_dir)
    return run_dir


def test_import_outputs_reads_every_record_once(tmp_path: Path, store: HistoryStore) -> None:
    out = tmp_path / "outputs"
    save(out, "configs/a/r1", session="s1", started=100.0, ended=110.0)
    save(out, "configs/a/r2", session="s1", started=105.0, ended=120.0, status=Status.FAILED)
    save(out, "configs/a/r3", session="s2", git={"commit": C2, "dirty": True}, ended=200.0)
    save(out, "configs/a/r4", session=None, git={"commit": C3}, ended=300.0)
    save(out, "configs/a/r5", session=None, git={"commit": C3}, ended=310.0)
    save(out, "configs/a/r6", session="s3", status=Status.RUNNING)  # no result yet
    save(out, ".xstash/cache/r7", session="s4")  # xstash's own folder
    (out / "configs" / "broken").mkdir()
    (out / "configs" / "broken" / "xstash.json").write_text("{not json")

    assert import_outputs(store, out) == 5
    sessions = {s.id: s for s in store.sessions()}
    assert set(sessions) == {
        "s1",
        "s2",
        f"run-dir:{out / 'configs/a/r4'}",
        f"run-dir:{out / 'configs/a/r5'}",
    }
    s1 = sessions["s1"]
    assert (s1.repo_commit, s1.branch, s1.started, s1.ended, s1.host) == (
        C1,
        None,
        100.0,
        120.0,
        "h",
    )
    assert sessions["s2"].repo_commit == C2
    runs = store.runs_at_commit(C1)
    assert sorted(r.status for r in runs) == ["failed", "passed"]
    assert runs[0].metrics == {"accuracy": 0.9, "loss.val": 0.2}
    assert runs[0].run_dir == str(out / "configs/a/r1") and runs[0].session == "s1"
    assert [r.tool_dirty for r in store.runs_at_commit(C2)] == [True]
    assert [r.run_dir for r in store.runs_at_commit(C3)] == [str(out / "configs/a/r5")]

    assert import_outputs(store, out) == 0  # idempotent
    assert count(store.path, "runs") == 5 and count(store.path, "sessions") == 4
    save(out, "configs/a/r8", session="s1")  # a new record of a known session: only it is added
    assert import_outputs(store, out) == 1
    assert count(store.path, "runs") == 6


def test_import_outputs_never_changes_a_recorded_session(
    tmp_path: Path, store: HistoryStore
) -> None:
    out = tmp_path / "outputs"
    save(out, "r1", session="live", metrics={"accuracy": 0.1})
    save(out, "r2", session="live", metrics={"accuracy": 0.2})
    live = session_of("live", C2, branch="main", at=500.0)
    recorded = from_record(RunRecord.load(out / "r1").to_json(), str(out / "r1"), C2, "main")
    store.record(live, [dataclasses.replace(recorded, metrics={"accuracy": 0.15})])
    assert import_outputs(store, out) == 1
    assert store.sessions() == [live]  # its branch and repo commit stay
    runs = {r.run_dir: r for r in store.last_session("main")}
    assert runs[str(out / "r1")].metrics == {"accuracy": 0.15}
    assert runs[str(out / "r2")].metrics == {"accuracy": 0.2}
    assert runs[str(out / "r2")].branch == "main"
