"""B6: pytest's own peak memory (RSS) when xstash runs many experiments, and when a tool
prints a gigabyte.

What is measured is the pytest process itself, not the tools: a conftest.py in the fixture
writes ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at ``pytest_unconfigure``. (``/usr/bin/time
-v`` or ``RUSAGE_CHILDREN`` would not do: Linux folds the peak of every waited-for descendant,
here the Hydra tools, into a child's maxrss.) Sessions, ``-p no:xdist``, run alternately:

  * one:   1 trivial experiment (the baseline: pytest + xstash + one run);
  * many:  N (200) trivial experiments;
  * flood: 1 experiment whose tool streams ``--bytes`` (1 GiB) to stdout in 1 MiB chunks
    (xstash sends it to ``stdout.log``; the test keeps its last 200 lines);
  * flood -s: the same with ``-s`` (xstash also copies it to pytest's stdout, here /dev/null);
    ``--no-live`` leaves this one out.

Prints the median peak of each and its growth over "one". The goals are proposed here (the
issue names none): many <= one + 25 MiB, flood <= one + 10 MiB.

    python bench/memory.py [--n 200] [--bytes 1073741824] [--repeat 3] [--no-live]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

from _common import (
    PRINT_TOOL,
    TRIVIAL_TOOL,
    Row,
    alternate,
    command_line,
    finish,
    make_repo,
    median,
    parser,
    pytest_argv,
    run,
    size_text,
    workdir,
    write,
)

MANY_GOAL_MIB = 25
FLOOD_GOAL_MIB = 10

RSS_CONFTEST = """\
import os
import resource


def pytest_unconfigure(config):
    path = os.environ.get("XSTASH_BENCH_RSS")
    if path and not hasattr(config, "workerinput"):
        with open(path, "w") as handle:
            handle.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def build(root: Path, n: int, size: int) -> None:
    make_repo(root, {"t": TRIVIAL_TOOL, "p": PRINT_TOOL})
    write(root / "conftest.py", RSS_CONFTEST)
    write(root / "configs" / "one" / "e000.yaml", "tool: t\nexperiment: e000\nmessage: hi\n")
    for i in range(n):
        write(
            root / "configs" / "many" / f"e{i:03d}.yaml",
            f"tool: t\nexperiment: e{i:03d}\nmessage: hello {i}\nparams:\n  index: {i}\n",
        )
    write(root / "configs" / "flood" / "flood.yaml", f"tool: p\nexperiment: flood\nbytes: {size}\n")


def peak(root: Path, tmp: Path, target: str, *extra: str) -> float:
    """Peak RSS in MiB of one pytest session over ``configs/<target>``."""
    out = tmp / "out"
    rss = tmp / "rss.txt"
    env = dict(os.environ, XSTASH_BENCH_RSS=str(rss))
    argv = pytest_argv(f"configs/{target}", "-q", "-p", "no:xdist", *extra)
    live = "-s" in extra
    run(
        [*argv, "--xstash-output-root", str(out)],
        root,
        env,
        stdout=subprocess.DEVNULL if live else subprocess.PIPE,
    )
    mib = int(rss.read_text()) / 1024  # ru_maxrss is in KiB on Linux
    shutil.rmtree(out, ignore_errors=True)  # the flood leaves a 1 GiB stdout.log
    return mib


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=200, help="experiments of 'many' (default 200)")
    p.add_argument("--bytes", type=int, default=1 << 30, help="the flood's output (1 GiB)")
    p.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the flood with -s (default: yes)",
    )
    args = p.parse_args()
    size = size_text(args.bytes)
    with workdir(args.keep, "memory") as tmp:
        root = tmp / "repo"
        build(root, args.n, args.bytes)
        print(f"B6: warm-up (builds the tools' uv environments) in {tmp}", flush=True)
        peak(root, tmp, "one")
        peak(root, tmp, "flood")
        sides = {
            "one": lambda i: peak(root, tmp, "one"),
            f"many ({args.n})": lambda i: peak(root, tmp, "many"),
            f"flood ({size})": lambda i: peak(root, tmp, "flood"),
        }
        if args.live:
            sides[f"flood ({size}) -s"] = lambda i: peak(root, tmp, "flood", "-s")
        peaks = alternate(sides, args.repeat, unit="MiB peak RSS")
    base = median(peaks["one"])
    command = command_line(
        "memory.py", args, "--n", str(args.n), "--bytes", str(args.bytes),
        *(() if args.live else ("--no-live",)),
    )  # fmt: skip
    rows = []
    lines = [f"B6 memory: one experiment: pytest peak RSS {base:.1f} MiB - median of {args.repeat}"]
    for name, values in peaks.items():
        if name == "one":
            continue
        value = median(values)
        goal = MANY_GOAL_MIB if name.startswith("many") else FLOOD_GOAL_MIB
        growth = value - base
        what = (
            f"pytest peak RSS, {args.n} experiments"
            if name.startswith("many")
            else f"pytest peak RSS, a tool printing {size}"
            + (", with -s" if name.endswith("-s") else ", without -s")
        )
        lines.append(
            f"B6 memory ({name}): pytest peak RSS {value:.1f} MiB, one experiment {base:.1f} MiB, "
            f"{growth:+.1f} MiB (goal <= +{goal} MiB) - median of {args.repeat}"
        )
        rows.append(
            Row(
                id="B6",
                what=what + " (vs one experiment)",
                goal=f"<= +{goal} MiB (proposed)",
                measured=f"{growth:+.1f} MiB ({value:.1f} vs {base:.1f} MiB)",
                met=growth <= goal,
                command=command,
            )
        )
    print()
    for line in lines:
        print(line)
    finish(rows, args.json)


if __name__ == "__main__":
    main()
