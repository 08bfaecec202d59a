"""B5: how close ``pytest -n 2`` gets to the best possible makespan on a heavy-tailed suite.

24 experiments of a Hydra tool that sleeps ``cfg.seconds``, each with that duration as its
``estimated_runtime``: 3 long (7 s), 4 medium (2 s), 17 short (0.5 s), 37.5 s of sleep in all;
``--scale`` multiplies them, ``--shorts`` sets how many short ones there are. The files are
named so that pytest's file order is the bad one: the short ones first, the long ones last.
(Three long ones, not two: two equal long ones at the end go to the two workers and run side by
side, which is no worse than longest-first; a third one runs alone while the other worker
idles.)

Each round runs ``pytest configs -n 2`` twice: with ``--xstash-order=file`` (collection order;
skipped when this xstash does not know the option) and with the default order (longest
``estimated_runtime`` first). From the run records: makespan = last tool end - first tool start;
total = the sum of the tools' durations; lower bound = max(total / 2, longest). Prints the
medians of makespan / bound (goal: within 10%, <= 1.10) and pytest's wall time.

    python bench/scheduling.py [--repeat 3] [--scale 1.0] [--shorts 17]
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import (
    SLEEP_TOOL,
    Failed,
    Row,
    alternate,
    command_line,
    finish,
    make_repo,
    median,
    option_known,
    parser,
    pytest_argv,
    records,
    run,
    spread,
    workdir,
    write,
)

GOAL = 1.10
WORKERS = 2
# (how many, seconds) in file order: the longest last.
SUITE = ((17, 0.5), (4, 2.0), (3, 7.0))


def build(root: Path, scale: float, shorts: int) -> list[float]:
    make_repo(root, {"sleep": SLEEP_TOOL})
    sleeps = []
    index = 0
    for count, seconds in SUITE:
        for _ in range(shorts if seconds == SUITE[0][1] else count):
            index += 1
            s = round(seconds * scale, 3)
            sleeps.append(s)
            write(
                root / "configs" / f"e{index:02d}.yaml",
                f"tool: sleep\nexperiment: e{index:02d}\nestimated_runtime: {s}s\nseconds: {s}\n",
            )
    return sleeps


def measure(recs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    if len(recs) != n or any(r.get("status") != "passed" for r in recs):
        raise Failed(f"expected {n} passed records, got {[r.get('status') for r in recs]}")
    starts = [r["ended"] - r["duration"] for r in recs]
    ends = [r["ended"] for r in recs]
    durations = [r["duration"] for r in recs]
    total = sum(durations)
    bound = max(total / WORKERS, max(durations))
    makespan = max(ends) - min(starts)
    workers: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(recs, key=lambda r: r["ended"] - r["duration"]):
        workers[r.get("worker_pid")].append(r)
    schedule = []
    for number, runs in enumerate(workers.values()):
        busy = sum(r["duration"] for r in runs)
        names = " ".join(r["experiment"] for r in runs)
        schedule.append(f"    worker {number}: busy {busy:.1f} s: {names}")
    return {
        "makespan": makespan,
        "total": total,
        "bound": bound,
        "ratio": makespan / bound,
        "schedule": schedule,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every sleep (default 1)")
    p.add_argument("--shorts", type=int, default=SUITE[0][0], help="short experiments (17)")
    args = p.parse_args()
    n = args.shorts + sum(count for count, _ in SUITE[1:])
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with workdir(args.keep, "scheduling") as tmp:
        root = tmp / "repo"
        sleeps = build(root, args.scale, args.shorts)
        print(
            f"B5: {n} sleep experiments, {sum(sleeps):.1f} s of sleep, -n {WORKERS}, in {tmp}",
            flush=True,
        )
        modes: dict[str, list[str]] = {"default (longest first)": []}
        if option_known(root, "--xstash-order"):
            modes = {"--xstash-order=file": ["--xstash-order=file"], **modes}
        else:
            print("B5: this xstash has no --xstash-order option: the file-order row is skipped")
        warm = pytest_argv("configs", "-q", "-n", str(WORKERS), "--xstash-output-root")
        run([*warm, str(tmp / "out-warm")], root)  # builds the tool's uv environment

        def side(mode: str, extra: list[str]) -> Any:
            def once(i: int) -> float:
                out = tmp / f"out-{'file' if extra else 'default'}-{i}"
                argv = pytest_argv("configs", "-q", "-n", str(WORKERS), *extra)
                wall, _ = run([*argv, "--xstash-output-root", str(out)], root)
                found = measure(records(out), n)
                found["wall"] = wall
                results[mode].append(found)
                return wall

            return once

        alternate({mode: side(mode, extra) for mode, extra in modes.items()}, args.repeat)
    rows = []
    lines = []
    extra = ["--scale", str(args.scale)]
    if args.shorts != SUITE[0][0]:
        extra += ["--shorts", str(args.shorts)]
    for mode in modes:
        runs = results[mode]
        ratio = median([r["ratio"] for r in runs])
        makespan = median([r["makespan"] for r in runs])
        bound = median([r["bound"] for r in runs])
        wall = median([r["wall"] for r in runs])
        print(f"\n{mode}:")
        print(f"  makespan {spread([r['makespan'] for r in runs])} s")
        print(f"  bound    {spread([r['bound'] for r in runs])} s (total {runs[0]['total']:.1f} s)")
        print(f"  pytest wall time {spread([r['wall'] for r in runs])} s")
        print("  schedule of the last round (tool start order per worker):")
        print("\n".join(runs[-1]["schedule"]))
        lines.append(
            f"B5 scheduling ({n} experiments, -n {WORKERS}, {mode}): makespan {makespan:.2f} s, "
            f"bound {bound:.2f} s, ratio {ratio:.2f} (goal <= {GOAL}; pytest wall {wall:.2f} s)"
            f" - median of {args.repeat}"
        )
        rows.append(
            Row(
                id="B5",
                what=f"{n} sleep experiments (heavy tail), -n {WORKERS}, {mode}: makespan / "
                "max(total/2, longest)",
                goal=f"<= {GOAL}",
                measured=f"{ratio:.2f} ({makespan:.1f} s vs {bound:.1f} s; wall {wall:.1f} s)",
                met=ratio <= GOAL,
                command=command_line("scheduling.py", args, *extra),
            )
        )
    print()
    for line in lines:
        print(line)
    finish(rows, args.json)


if __name__ == "__main__":
    main()
