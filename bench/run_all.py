"""Run the benchmarks of BENCHMARKS.md (B1-B11) and print the machine and the results table
in Markdown, ready to paste.

    python bench/run_all.py [--repeat 3] [--only B1,B3] [--smoke] [--profile] [--out table.md]

``--smoke`` uses small sizes (4 experiments, 1,000 configs, a 4-point sweep, sleeps x 0.1,
6 experiments and 100 MiB of output, a 20-point compose sweep of a tool importing in 0.5 s, 6
experiments on SLURM) to check that everything works, not to measure.
Run it on a quiet machine: every script times wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PYTHON, machine, verdict

HERE = Path(__file__).resolve().parent

# id -> (script, its arguments at full size, at smoke size)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "B1": ("overhead.py", ["--workers", "1", "--n", "50"], ["--workers", "1", "--n", "4"]),
    "B2": ("overhead.py", ["--workers", "2", "--n", "50"], ["--workers", "2", "--n", "4"]),
    "B3": ("collection.py", ["--n", "10000"], ["--n", "1000"]),
    "B4": ("sweep_vs_multirun.py", ["--points", "50"], ["--points", "4"]),
    "B5": ("scheduling.py", ["--scale", "1.0"], ["--scale", "0.1", "--shorts", "3"]),
    "B6": ("memory.py", ["--n", "200"], ["--n", "6", "--bytes", str(100 << 20)]),
    "B7": (
        "compose.py",
        ["--points", "200", "--plain", "20", "--import-seconds", "2"],
        ["--points", "20", "--plain", "2", "--import-seconds", "0.5"],
    ),
    "B8": (
        "history.py",
        ["--runs", "10000", "--commits", "100", "--experiments", "1000"],
        ["--runs", "1000", "--commits", "10", "--experiments", "100"],
    ),
    "B9": ("slots.py", ["--scale", "1.0"], ["--scale", "0.1"]),
    "B10": ("slurm_scale.py", ["--count", "200"], ["--count", "6"]),
    "B11": ("seeds.py", [], ["--seeds", "2"]),
}


def table(rows: list[dict[str, object]]) -> list[str]:
    out = [
        "| | benchmark | goal | measured | met | reproduce |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        met = row["met"]
        measured = str(row["measured"])
        if row.get("note"):
            measured += f" ({row['note']})"
        out.append(
            f"| {row['id']} | {row['what']} | {row['goal']} | {measured} | "
            f"{verdict(met if isinstance(met, bool) else None)} | `{row['command']}` |"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each side (default 3)")
    p.add_argument("--only", default="", help="comma-separated ids, e.g. B1,B3 (default: all)")
    p.add_argument("--smoke", action="store_true", help="small sizes: check, do not measure")
    p.add_argument("--profile", action="store_true", help="B3 also profiles xstash's collection")
    p.add_argument("--out", default=None, metavar="PATH", help="also write the Markdown here")
    args = p.parse_args()
    chosen = [b.strip().upper() for b in args.only.split(",") if b.strip()] or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    rows: list[dict[str, object]] = []
    failed = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for bid in chosen:
            script, full, smoke = BENCHMARKS[bid]
            extra = list(smoke if args.smoke else full)
            if bid == "B3" and args.profile:
                extra.append("--profile")
            result = Path(tmp) / f"{bid}.json"
            argv = [PYTHON, str(HERE / script), *extra, "--repeat", str(args.repeat)]
            argv += ["--json", str(result)]
            print(f"\n=== {bid}: {' '.join(argv[1:])}", flush=True)
            proc = subprocess.run(argv, cwd=HERE.parent, check=False)
            if proc.returncode != 0 or not result.exists():
                failed.append(bid)
                rows.append(
                    {
                        "id": bid,
                        "what": script,
                        "goal": "",
                        "measured": f"script failed (exit {proc.returncode})",
                        "met": None,
                        "command": f"python bench/{script} {' '.join(extra)}",
                    }
                )
                continue
            rows.extend(json.loads(result.read_text()))
    lines = [
        "| machine | |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in machine().items()),
        "",
        *table(rows),
        "",
        f"{'Smoke sizes (not measurements)' if args.smoke else 'Full sizes'}, median of "
        f"{args.repeat}; {time.perf_counter() - started:.0f} s in all.",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
