"""SLURM launcher figures on the one-node cluster (.ci/slurm-ci-up.sh must have run).

1. Submit-to-result latency of one trivial experiment (pytest wall time, and the record's
   ended - started).
2. 20 trivial experiments (a plain-Python tool) on SLURM without -n (all submitted up front)
   against the same 20 with the local launcher and -n 2; alternating runs, medians.

    python bench/slurm_vs_local.py [--n 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOL = """\
import json, sys
run_dir = next(a for a in sys.argv if a.startswith("hydra.run.dir=")).split("=", 1)[1]
json.dump({"score": 1.0}, open(run_dir.strip("'") + "/metrics.json", "w"))
"""


def pytest(root: Path, *args: str, target: str = "configs") -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", target, "-q", "-p", "no:cacheprovider", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-2000:])
    return time.perf_counter() - started


def build(root: Path, n: int) -> None:
    (root / "tools/t").mkdir(parents=True)
    (root / "tools/t/main.py").write_text(TOOL)
    (root / "configs").mkdir()
    (root / "configs/meta.yaml").write_text(
        "tools:\n  t: {path: tools/t, entrypoint: main.py, env: system,\n"
        "      resources: {time: 5m, cpus: 1, mem: 200M}}\n"
    )
    for i in range(n):
        (root / f"configs/e{i:02d}.yaml").write_text(
            f"tool: t\nexperiment: e{i:02d}\nxstash:\n  expect: {{score: '>= 1'}}\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, args.n)
        one = pytest(root, "--xstash-launcher", "slurm", target="configs/e00.yaml")
        record = json.loads(next((root / "outputs").rglob("xstash.json")).read_text())
        latency = record["ended"] - record["started"]
        print(
            f"one trivial experiment on SLURM: pytest wall {one:.2f}s, "
            f"submit-to-result (record) {latency:.2f}s"
        )
        slurm, local = [], []
        for _ in range(args.repeats):
            slurm.append(pytest(root, "--xstash-launcher", "slurm"))
            local.append(pytest(root, "-n", "2"))
    s, lo = statistics.median(slurm), statistics.median(local)
    print(f"{args.n} trivial experiments, {args.repeats} alternating runs:")
    print(f"  SLURM launcher, no -n (all jobs submitted up front): median {s:.2f}s {slurm}")
    print(f"  local launcher, -n 2:                                median {lo:.2f}s {local}")
    print(f"  ratio slurm/local = {s / lo:.2f}")


if __name__ == "__main__":
    main()
