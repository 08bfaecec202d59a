"""B4: an N-point sweep of one trivial Hydra tool through xstash with ``-n 2``, against Hydra's
own ``-m`` multirun (basic launcher) of the same N points in the same tool.

One config sweeps ``params.index`` over N values (``xstash.sweep``: N test items, N processes,
two at a time). Hydra's side runs the same tool with the very config xstash sends it (the
``--config-dir`` of a warm-up run's record) and ``-m params.index=0,1,...``: all N jobs one after
another inside one process. Both sides alternate, each into a fresh output folder.

xstash runs twice per round: as registered, and with ``preload: true`` in the tool's meta.yaml
entry (a forked, pre-imported tool process). When the registry does not know ``preload`` yet
(or with ``--no-preload``) that row is skipped with a message.

    python bench/sweep_vs_multirun.py [--points 50] [--repeat 3] [--no-preload]
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
    register_tool,
    run,
    spread,
    tool_environ,
    workdir,
    write,
)

GOAL = 0.6


def sweep_config(tool: str, n: int) -> str:
    values = ", ".join(str(i) for i in range(n))
    return (
        f"tool: {tool}\nexperiment: sweep\nmessage: hello\n"
        "params:\n  index: 0\n  learning_rate: 0.001\n"
        f"xstash:\n  sweep:\n    params.index: [{values}]\n"
    )


def build(root: Path, n: int) -> None:
    make_repo(root, {"t": TRIVIAL_TOOL})
    # The same tool folder (same code, same environment) registered with preload: true.
    register_tool(root, "t_preload", "t", "preload: true")
    write(root / "configs" / "sweep.yaml", sweep_config("t", n))
    write(root / "configs" / "sweep_preload.yaml", sweep_config("t_preload", n))


def xstash(root: Path, config: str, out: Path) -> float:
    return run(
        pytest_argv(f"configs/{config}", "-q", "-n", "2", "--xstash-output-root", str(out)), root
    )[0]


def preload_problem(root: Path) -> str | None:
    """Why the ``preload: true`` registration cannot run (None when it can)."""
    _, proc = run(
        pytest_argv("configs/sweep_preload.yaml", "--collect-only", "-q"), root, ok=(0, 1, 2, 3, 4)
    )
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in proc.stdout.splitlines()]
    found = [line for line in lines if "unknown key" in line or "preload" in line.lower()]
    found = [line for line in found if not line.startswith(("_", "ERROR"))]
    return " ".join(found) or "collecting it failed:\n" + proc.stdout[-2000:]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--points", type=int, default=50, help="sweep points (default 50)")
    p.add_argument(
        "--preload",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the tool registered with 'preload: true' (default: yes)",
    )
    args = p.parse_args()
    n = args.points
    rows: list[Row] = []
    with workdir(args.keep, "sweep") as tmp:
        root = tmp / "repo"
        build(root, n)
        print(f"B4: warm-up (builds the tool's uv environment) in {tmp}", flush=True)
        xstash(root, "sweep.yaml", tmp / "out-warm")
        recs = records(tmp / "out-warm")
        if len(recs) != n or any(r.get("status") != "passed" for r in recs):
            raise Failed(f"expected {n} passed records, got {len(recs)}")
        argv, cwd = recs[0]["argv"], recs[0]["cwd"]
        # Hydra's side: the same interpreter, entrypoint, config dir, config, job name and
        # search path as xstash's first point; the sweep as -m; no hydra.run.dir.
        base = [a for a in argv if not a.startswith(("hydra.run.dir=", "params.index="))]
        at = base.index("--config-name") + 2
        base[at:at] = ["-m"]  # before the overrides: argparse takes them in one run
        points = "params.index=" + ",".join(str(i) for i in range(n))
        env = tool_environ(cwd)

        def hydra(i: int) -> float:
            sweep_dir = f"hydra.sweep.dir={tmp / f'out-h{i}'}"
            return run([*base, points, sweep_dir], Path(cwd), env)[0]

        sides = {
            "xstash": lambda i: xstash(root, "sweep.yaml", tmp / f"out-x{i}"),
            "hydra -m": hydra,
        }
        problem = preload_problem(root) if args.preload else "--no-preload given"
        if problem is None:
            xstash(root, "sweep_preload.yaml", tmp / "out-warm-preload")
            sides["xstash preload"] = lambda i: xstash(
                root, "sweep_preload.yaml", tmp / f"out-p{i}"
            )
        else:
            print(f"B4: skipping the 'preload: true' row: {problem}")
        hydra(-1)  # warm-up of Hydra's side too
        times = alternate(sides, args.repeat)
    h = median(times["hydra -m"])
    print(f"hydra -m multirun (basic launcher): {spread(times['hydra -m'])} s")
    command = command_line("sweep_vs_multirun.py", args, "--points", str(n))
    lines = []
    for name, label in (("xstash", "xstash -n 2"), ("xstash preload", "xstash -n 2, preload")):
        if name not in times:
            rows.append(
                Row(
                    id="B4",
                    what=f"{n}-point sweep: {label} vs hydra -m (basic launcher)",
                    goal=f"<= {GOAL}",
                    measured="skipped",
                    met=None,
                    command=command,
                    note=str(problem),
                )
            )
            continue
        x = median(times[name])
        ratio = x / h
        print(f"{label}: {spread(times[name])} s")
        lines.append(
            f"B4 sweep ({n} points, {label} vs hydra -m): xstash {x:.2f} s, hydra {h:.2f} s, "
            f"ratio {ratio:.2f} (goal <= {GOAL}) - median of {args.repeat}"
        )
        rows.append(
            Row(
                id="B4",
                what=f"{n}-point sweep: {label} vs hydra -m (basic launcher)",
                goal=f"<= {GOAL}",
                measured=f"{ratio:.2f} ({x:.2f} s vs {h:.2f} s)",
                met=ratio <= GOAL,
                command=command,
            )
        )
    for line in lines:
        print(line)
    finish(rows, args.json)


if __name__ == "__main__":
    main()
