"""The shipped 12-point sweep through xstash with ``-n 2`` against Hydra's own ``-m`` multirun.

Same tool (tools/tiny-trainer), same 12 points (params.learning_rate x model), same epochs;
both sides run alternately, each into a fresh output folder. Hydra's basic launcher runs the
jobs one after another inside one process; xstash runs each point as its own process, two at a
time. Also times ``--collect-only`` of a 1,000-point sweep.

    python bench/sweep_vs_multirun.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "tiny-trainer"
LRS = "0.02,0.05,0.1,0.2"
MODELS = "small,medium,big"


def timed(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def xstash(out: Path) -> float:
    return timed(
        [
            sys.executable,
            "-m",
            "pytest",
            "configs/examples/lr_sweep.yaml",
            "-n",
            "2",
            "-q",
            "-p",
            "no:cacheprovider",
            "--xstash-output-root",
            str(out),
        ],
        ROOT,
    )


def hydra(out: Path) -> float:
    python = str(TOOL / ".venv" / "bin" / "python")
    return timed(
        [
            python,
            "-m",
            "trainer.main",
            "-m",
            f"params.learning_rate={LRS}",
            f"model={MODELS}",
            "params.epochs=10",
            f"hydra.sweep.dir={out}",
        ],
        TOOL,
    )


def collect_1000(tmp: Path) -> float:
    # A repository of its own: a copy of the tool (no environment needed to collect).
    root = tmp / "collect-repo"
    shutil.copytree(TOOL, root / "tools" / "tiny-trainer", ignore=shutil.ignore_patterns(".venv"))
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "meta.yaml").write_text(
        "tools:\n  tiny-trainer:\n    path: tools/tiny-trainer\n    entrypoint: -m trainer.main\n"
    )
    epochs = ", ".join(str(i) for i in range(1, 41))
    seeds = ", ".join(str(i) for i in range(25))
    (root / "configs" / "grid.yaml").write_text(
        "tool: tiny-trainer\nexperiment: grid\ndefaults: [config, _self_]\n"
        f"xstash:\n  sweep:\n    params.epochs: [{epochs}]\n    seed: [{seeds}]\n"
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "configs",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    count = proc.stdout.strip().splitlines()[-1]
    print(f"collect-only of one sweep config: {count} (wall {elapsed:.2f}s, pytest included)")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "configs/examples/lr_sweep.yaml",
            "-q",
            "-p",
            "no:cacheprovider",
            "--collect-only",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        xstash(tmp / "warm-x")  # builds the tool's env, warms caches
        hydra(tmp / "warm-h")
        xs, hs = [], []
        for i in range(args.repeats):
            xs.append(xstash(tmp / f"x{i}"))
            hs.append(hydra(tmp / f"h{i}"))
        collect_1000(tmp)
    x, h = statistics.median(xs), statistics.median(hs)
    print(f"12-point sweep, {args.repeats} alternating runs each:")
    print(f"  xstash, pytest -n 2 (12 isolated processes):  median {x:.2f}s  {xs}")
    print(f"  hydra -m multirun (basic launcher, 1 process): median {h:.2f}s  {hs}")
    print(f"  ratio xstash/hydra = {x / h:.2f}")


if __name__ == "__main__":
    main()
