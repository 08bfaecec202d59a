"""B8: what the results history (``xstash_plugin/history/store.py``, SQLite) costs.

Two measurements, each the median of ``--repeat`` runs:

  * recording: what the end of a 10,000-item session does, on 10,000 real run directories
    (written outside the timing): read every run's ``xstash.json`` and record them all in one
    ``HistoryStore.record()`` (3 metrics each) into a new history file. The goal is <= 5% of the
    session that ran them. That session is not run here: it is ASSUMED to take 10,000 x 0.2 s =
    2,000 s (0.2 s per trivial experiment: less than B1 and B2 measure, 0.46 s serially and
    0.24 s with -n 2), so the goal is <= 100 s; the absolute time is printed too;
  * querying: ``series()`` of one experiment over a history of 100 commits x 1,000 experiments
    (100 sessions of 1,000 runs, 3 metrics each: 100,000 runs, built with ``record()`` outside
    the timing), each time by a new ``HistoryStore`` (opening the file is part of it). The goal
    is < 1 s. The time of ``series()`` for every one of the 1,000 experiments (what a report of
    the whole suite would ask) is printed for information.

    python bench/history.py [--runs 10000] [--commits 100] [--experiments 1000] [--repeat 3]
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    Row,
    command_line,
    finish,
    median,
    parser,
    size_text,
    spread,
    verdict,
    workdir,
)

from xstash_plugin.history.recorder import stored_runs
from xstash_plugin.history.store import HistoryStore, Session, StoredRun
from xstash_plugin.run.record import RunRecord, Status

PER_RUN = 0.2  # assumed wall time of one trivial run, seconds
RECORD_GOAL = 0.05  # record() <= 5% of the session
SERIES_GOAL = 1.0  # seconds


def runs_of(session: str, commit: str, experiments: int, rng: random.Random) -> list[StoredRun]:
    """One session's runs: one per experiment, 3 metrics each, shaped like real ones."""
    return [
        StoredRun(
            nodeid=f"configs/group{i % 20}/exp{i}.yaml::exp{i}[lr=0.1-model=mlp]",
            experiment=f"exp{i}",
            config=f"configs/group{i % 20}/exp{i}.yaml",
            point={"lr": 0.1, "model": "mlp"},
            seed=None,
            status="passed",
            metrics={
                "accuracy": 0.9 + rng.gauss(0, 0.01),
                "loss.train": rng.random(),
                "loss.val": rng.random(),
            },
            run_key=f"{i:032x}",
            tool_commit=commit,
            tool_dirty=False,
            repo_commit=commit,
            branch="main",
            dependency_hash="d49e9a444f3d48f9",
            host="bench",
            launcher="local",
            started=1.0e9 + i,
            ended=1.0e9 + i + 0.2,
            run_dir=f"/outputs/configs/group{i % 20}/exp{i}/20261203-064250-{i:010x}",
            session=session,
        )
        for i in range(experiments)
    ]


def session_of(n: int, commit: str) -> Session:
    return Session(f"session{n:04d}", commit, "main", 1.0e9 + n * 1000, 1.0e9 + n * 1000 + 900, "h")


def write_records(folder: Path, runs: list[StoredRun]) -> list[dict[str, object]]:
    """Each run as a real run directory with its ``xstash.json``; the session's result rows."""
    rows: list[dict[str, object]] = []
    for i, run in enumerate(runs):
        run_dir = folder / f"run{i:05d}"
        run_dir.mkdir(parents=True)
        record = RunRecord(
            status=Status.PASSED,
            experiment=run.experiment,
            config=run.config,
            nodeid=run.nodeid,
            tool="t",
            tool_path="/tools/t",
            started=run.started or 0.0,
            ended=run.ended,
            point=run.point,
            metrics={"accuracy": run.metrics["accuracy"], "loss": {"train": 0.1, "val": 0.2}},
            run_key=run.run_key,
            git={"commit": run.tool_commit, "dirty": False},
        )
        record.save(run_dir)
        rows.append({"id": run.nodeid, "status": "passed", "run_dir": str(run_dir)})
    return rows


def time_record(tmp: Path, runs: int, repeat: int) -> list[float]:
    """What the end of a session does: read every run's record, one record() of them all."""
    rng = random.Random(0)
    rows = write_records(tmp / "outputs", runs_of("big", "f" * 40, runs, rng))
    times = []
    for i in range(repeat):
        store = HistoryStore(tmp / f"record{i}" / "history.sqlite")
        started = time.perf_counter()
        batch = stored_runs(rows, "big", "f" * 40, "main")
        store.record(session_of(0, "f" * 40), batch)
        times.append(time.perf_counter() - started)
        store.close()
        print(f"  round {i + 1}/{repeat}: {runs:,} records read and recorded in {times[-1]:.3f} s")
    return times


def build_history(path: Path, commits: int, experiments: int) -> None:
    rng = random.Random(1)
    with HistoryStore(path) as store:
        for n in range(commits):
            commit = f"{n:040x}"
            store.record(
                session_of(n, commit), runs_of(f"session{n:04d}", commit, experiments, rng)
            )


def time_series(path: Path, experiments: int, repeat: int) -> tuple[list[float], float, int]:
    times = []
    points = 0
    for i in range(repeat):
        experiment = f"exp{(i * 397) % experiments}"
        started = time.perf_counter()
        with HistoryStore(path) as store:
            points = len(store.series(experiment))
        times.append(time.perf_counter() - started)
        print(f"  round {i + 1}/{repeat}: series({experiment}) {times[-1] * 1000:.1f} ms")
    started = time.perf_counter()
    with HistoryStore(path) as store:
        for e in range(experiments):
            store.series(f"exp{e}")
    return times, time.perf_counter() - started, points


def time_cli(path: Path, repeat: int) -> list[float]:
    """The ``xstash history exp0`` command, a process of its own (start-up and import included)."""
    xstash = Path(sys.executable).parent / "xstash"
    argv = [str(xstash), "history", "exp0", "--history", str(path)]
    times = []
    for i in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
        print(f"  round {i + 1}/{repeat}: xstash history exp0 {times[-1]:.2f} s", flush=True)
    return times


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=10_000, help="runs in one record() (10,000)")
    p.add_argument("--commits", type=int, default=100, help="commits in the history (100)")
    p.add_argument("--experiments", type=int, default=1000, help="experiments per commit")
    args = p.parse_args()
    with workdir(args.keep, "history") as tmp:
        print(f"B8: record() of {args.runs:,} runs, {args.repeat} times, in {tmp}", flush=True)
        record_times = time_record(tmp, args.runs, args.repeat)
        history = tmp / "series" / "history.sqlite"
        print(f"B8: building {args.commits} commits x {args.experiments:,} experiments", flush=True)
        started = time.perf_counter()
        build_history(history, args.commits, args.experiments)
        built = time.perf_counter() - started
        size = history.stat().st_size
        series_times, every, points = time_series(history, args.experiments, args.repeat)
        cli_times = time_cli(history, args.repeat)
    recorded, series = median(record_times), median(series_times)
    session = args.runs * PER_RUN
    share = recorded / session
    cli = median(cli_times)
    met = share <= RECORD_GOAL and series < SERIES_GOAL and cli < SERIES_GOAL
    print(
        f"record(): {spread(record_times)} s; "
        f"series(): {spread([t * 1000 for t in series_times])} ms"
    )
    print(
        f"history built in {built:.1f} s ({args.commits * args.experiments:,} runs, "
        f"{size_text(size)}); series() of all {args.experiments:,} experiments: {every:.2f} s; "
        f"one series(): {points} points"
    )
    recorded_text = (
        f"{args.runs:,} records read and recorded (3 metrics each) {recorded:.3f} s = "
        f"{share:.4%} of the session (assumed {args.runs:,} x {PER_RUN} s = {session:,.0f} s; "
        f"goal <= {RECORD_GOAL:.0%})"
    )
    series_text = (
        f"series() over {args.commits} commits x {args.experiments:,} experiments "
        f"{series * 1000:.1f} ms, the command xstash history {cli:.2f} s (goal < "
        f"{SERIES_GOAL:g} s)"
    )
    print(f"B8 history: {recorded_text}; {series_text} - median of {args.repeat}: {verdict(met)}")
    finish(
        [
            Row(
                id="B8",
                what=(
                    f"results history (SQLite): the session end of {args.runs:,} runs (read each "
                    "record, one record() of them all), "
                    f"and series() of one experiment over {args.commits} commits x "
                    f"{args.experiments:,} experiments"
                ),
                goal=f"<= {RECORD_GOAL:.0%} of the session; history < {SERIES_GOAL:g} s",
                measured=(
                    f"{share:.4%} of the session ({recorded:.3f} s); series "
                    f"{series * 1000:.1f} ms; xstash history {cli:.2f} s"
                ),
                met=met,
                command=command_line(
                    "history.py",
                    args,
                    *("--runs", str(args.runs), "--commits", str(args.commits)),
                    *("--experiments", str(args.experiments)),
                ),
                note=f"session assumed {args.runs:,} x {PER_RUN} s; series of all experiments "
                f"{every:.2f} s",
            )
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
