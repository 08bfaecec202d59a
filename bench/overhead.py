"""B1/B2: what xstash adds to running N trivial Hydra experiments, against the same commands
run by the shell.

Builds N configs of a trivial Hydra tool (prints three lines), runs them once with xstash
(which builds the tool's uv environment) and takes the N tool commands from the run records
(``argv`` and ``cwd`` of each ``xstash.json``; the environment is the one xstash gives a tool).
Then, alternately:

  * B1 (``--workers 1``): ``pytest configs -p no:xdist`` against a bash script running the same
    N commands one after another, each with stdout/stderr to files as xstash does;
  * B2 (``--workers 2``): ``pytest configs -n 2`` against ``xargs -P 2`` of the same commands.

Each side writes into fresh run directories every round (the loop's are made before its clock
starts; xstash makes its own). Prints the medians and the ratio xstash/shell.

For B1 both sides also time every tool run (xstash: the run records' ``duration``; the loop:
bash's ``$EPOCHREALTIME`` around each command), so each round splits into the tools' own time
and what the side adds around them. On these VMs the CPU's speed drifts by up to +-30 % within
minutes (the same bare Hydra run takes 0.35 s, then 0.5 s), so two 20 s sessions differ by more
than the 5 % under test. The script therefore also prints the ratio with the tools' time
equalised: (T + xstash's added time) / (T + the loop's added time), T the median of every
round's tool time on both sides, each added time a median over rounds. It also prints both
sides' median tool run, so a tool that ran slower under xstash would show there.

    python bench/overhead.py --workers 1 [--n 50] [--repeat 3]     # B1, goal <= 1.05
    python bench/overhead.py --workers 2 [--n 50] [--repeat 3]     # B2, goal <= 1.10
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from _common import (
    TRIVIAL_TOOL,
    Failed,
    Row,
    alternate,
    command_line,
    finish,
    make_repo,
    median,
    parser,
    pytest_argv,
    records,
    run,
    spread,
    tool_environ,
    workdir,
    write,
)

from xstash_plugin.config.overrides import hydra_quote

GOALS = {1: 1.05, 2: 1.10}


def build(root: Path, n: int) -> None:
    make_repo(root, {"t": TRIVIAL_TOOL})
    for i in range(n):
        write(
            root / "configs" / f"e{i:03d}.yaml",
            f"tool: t\nexperiment: e{i:03d}\nmessage: hello {i}\n"
            f"params:\n  index: {i}\n  learning_rate: 0.001\n",
        )


def xstash_argv(workers: int, out: Path) -> list[str]:
    dist = ["-p", "no:xdist"] if workers == 1 else ["-n", str(workers)]
    return pytest_argv("configs", "-q", *dist, "--xstash-output-root", str(out))


def shell_commands(recs: list[dict[str, Any]], base: Path) -> list[tuple[str, str]]:
    """(run dir, shell command) for every record, with a new run dir under ``base``: the
    record's argv with ``hydra.run.dir`` pointed there; stdin, stdout, stderr as xstash does."""
    commands = []
    for index, rec in enumerate(recs):
        run_dir = base / f"{index:04d}"
        argv = [
            f"hydra.run.dir={hydra_quote(str(run_dir))}" if a.startswith("hydra.run.dir=") else a
            for a in rec["argv"]
        ]
        line = (
            f"{shlex.join(argv)} </dev/null >{shlex.quote(str(run_dir / 'stdout.log'))} "
            f"2>{shlex.quote(str(run_dir / 'stderr.log'))}"
        )
        commands.append((str(run_dir), line))
    return commands


def timed_loop(commands: list[tuple[str, str]], times: Path) -> str:
    """The bash loop of ``commands``, each between two reads of ``$EPOCHREALTIME`` (a bash
    variable: no process) written to ``times`` after it."""
    lines = ["set -e", f"exec 3>{shlex.quote(str(times))}"]
    for _, line in commands:
        lines.append(f's=$EPOCHREALTIME; {line}; echo "$s $EPOCHREALTIME" >&3')
    return "\n".join(lines) + "\n"


def tool_seconds(path: Path) -> list[float]:
    """The loop's per-command times from :func:`timed_loop`'s file."""
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip())
    return [float(end) - float(start) for start, end in pairs]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=50, help="experiments (default 50)")
    p.add_argument("--workers", type=int, choices=[1, 2], default=1, help="1: B1, 2: B2")
    args = p.parse_args()
    bid = f"B{args.workers}"
    name = "overhead" if args.workers == 1 else "parallel"
    with workdir(args.keep, name) as tmp:
        root = tmp / "repo"
        build(root, args.n)
        print(f"{bid}: warm-up run (builds the tool's uv environment) in {tmp}", flush=True)
        run(xstash_argv(args.workers, tmp / "out-warm"), root)
        recs = records(tmp / "out-warm")
        if len(recs) != args.n or any(r.get("status") != "passed" for r in recs):
            raise Failed(f"expected {args.n} passed records, got {len(recs)}")
        cwds = {r["cwd"] for r in recs}
        if len(cwds) != 1:
            raise Failed(f"expected one tool folder, got {cwds}")
        cwd = cwds.pop()
        env = tool_environ(cwd)

        tools: dict[str, list[list[float]]] = {"xstash": [], "loop": []}

        def xstash(i: int) -> float:
            out = tmp / f"out-x{i}"
            elapsed = run(xstash_argv(args.workers, out), root)[0]
            tools["xstash"].append([float(r["duration"]) for r in records(out)])
            return elapsed

        def shell(i: int) -> float:
            base = tmp / f"out-shell{i}"
            commands = shell_commands(recs, base)
            for run_dir, _ in commands:
                Path(run_dir).mkdir(parents=True)
            if args.workers == 1:
                path = write(base / "loop.sh", timed_loop(commands, base / "times.txt"))
                elapsed = run(["bash", str(path)], Path(cwd), env)[0]
                tools["loop"].append(tool_seconds(base / "times.txt"))
                return elapsed
            listing = []
            for index, (_, line) in enumerate(commands):
                listing.append(str(write(base / f"cmd{index:04d}.sh", f"exec {line}\n")))
            path = write(base / "commands.txt", "\n".join(listing) + "\n")
            argv = ["xargs", "-P", str(args.workers), "-n", "1", "-a", str(path), "bash"]
            return run(argv, Path(cwd), env)[0]

        shell_name = "loop" if args.workers == 1 else f"xargs -P {args.workers}"
        times = alternate({"xstash": xstash, shell_name: shell}, args.repeat)
        # Where the difference goes: the same session with every experiment deselected
        # (pytest and worker start-up, collection; no tool runs, no uv check).
        fixed = [
            run(
                [*xstash_argv(args.workers, tmp / f"out-k{i}"), "-k", "no_such_name"], root, ok=(5,)
            )[0]
            for i in range(args.repeat)
        ]
    x, s = median(times["xstash"]), median(times[shell_name])
    ratio = x / s
    goal = GOALS[args.workers]
    dist = "pytest -p no:xdist" if args.workers == 1 else f"pytest -n {args.workers}"
    print(f"xstash ({dist}): {spread(times['xstash'])} s")
    print(f"{shell_name} of the same {args.n} commands: {spread(times[shell_name])} s")
    print(
        f"per experiment: xstash {1000 * x / args.n:.0f} ms, {shell_name} {1000 * s / args.n:.0f}"
        f" ms, added {1000 * (x - s) / args.n:.1f} ms"
    )
    k = median(fixed)
    print(
        f"xstash session with every experiment deselected (-k): {spread(fixed)} s; beyond that, "
        f"xstash takes {1000 * (x - k) / args.n:.0f} ms per experiment, {shell_name} "
        f"{1000 * s / args.n:.0f} ms"
    )
    measured = f"{ratio:.3f} ({x:.2f} s vs {s:.2f} s)"
    met = ratio <= goal
    if args.workers == 1:
        equalised, text = equalise(times["xstash"], times[shell_name], tools, args.n)
        print(text)
        measured += f"; {equalised:.3f} with the tools' own time equalised"
        met = met and equalised <= goal
    line = (
        f"{bid} {name} ({args.n} experiments, {dist} vs {shell_name}): xstash {x:.2f} s, "
        f"{shell_name} {s:.2f} s, ratio {ratio:.3f} (goal <= {goal}) - median of {args.repeat}"
    )
    print(line)
    finish(
        [
            Row(
                id=bid,
                what=f"{args.n} trivial experiments, {dist} vs {shell_name} of the same commands",
                goal=f"<= {goal}",
                measured=measured,
                met=met,
                command=command_line(
                    "overhead.py", args, "--workers", str(args.workers), "--n", str(args.n)
                ),
            )
        ],
        args.json,
    )


def equalise(
    xstash: list[float], loop: list[float], tools: dict[str, list[list[float]]], n: int
) -> tuple[float, str]:
    """The B1 ratio with the tools' own time the same on both sides, and what it is made of."""
    added_x = median([wall - sum(runs) for wall, runs in zip(xstash, tools["xstash"], strict=True)])
    added_l = median([wall - sum(runs) for wall, runs in zip(loop, tools["loop"], strict=True)])
    total = median([sum(runs) for runs in tools["xstash"] + tools["loop"]])
    per_run = {side: median([t for runs in tools[side] for t in runs]) for side in tools}
    ratio = (total + added_x) / (total + added_l)
    text = (
        f"tool runs: median {1000 * per_run['xstash']:.0f} ms under xstash, "
        f"{1000 * per_run['loop']:.0f} ms in the loop; the {n} runs' total, median of every "
        f"round of both sides: {total:.2f} s\n"
        f"added around the tools: xstash {added_x:.2f} s ({1000 * added_x / n:.1f} ms per run), "
        f"loop {added_l:.2f} s\n"
        f"ratio with the tools' own time equalised: ({total:.2f} + {added_x:.2f}) / "
        f"({total:.2f} + {added_l:.2f}) = {ratio:.3f}"
    )
    return ratio, text


if __name__ == "__main__":
    main()
