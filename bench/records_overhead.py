"""What run records, metrics, expectations and reports cost per experiment.

Builds 50 trivial experiments in a temp folder (by default of a plain-Python tool that only
writes metrics.json, so the tool's own start-up hides as little of the overhead as possible;
``--tool hydra`` uses a real Hydra tool instead), then runs
``pytest -p no:xdist`` over them alternately:
  * "full": everything on (xstash.json written at start and end, provenance, metrics read,
    expectations judged, JUnit properties, terminal table, ``--xstash-report results.md``);
  * "bare": the same session with record writing, provenance, metrics and reporting replaced by
    no-ops (a conftest.py patches them when XSTASH_BENCH_BARE=1).
Prints the median wall time of each and the ratio full/bare.

    python bench/records_overhead.py [--n 50] [--repeats 5] [--tool plain|hydra]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xstash_plugin.run.envs import find_uv, uv_environ

TOOL = """\
import json, os
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"accuracy": 0.9 + cfg.i / 1000, "loss": 0.1}, f)

if __name__ == "__main__":
    main()
"""

PLAIN_TOOL = """\
import json, os, sys
run_dir = next(a for a in sys.argv if a.startswith("hydra.run.dir=")).split("=", 1)[1]
with open(os.path.join(run_dir.strip("'"), "metrics.json"), "w") as f:
    json.dump({"accuracy": 0.95, "loss": 0.1}, f)
"""

BARE_CONFTEST = """\
import os
if os.environ.get("XSTASH_BENCH_BARE"):
    import xstash_plugin.plugin as plugin
    import xstash_plugin.run.record as record
    import xstash_plugin.run.run as run
    record.RunRecord.save = lambda self, run_dir: None
    run.Run._provenance = lambda self, python: {}
    run.Run.judge = lambda self, run_dir: (None, [], None)
    plugin.Results.pytest_runtest_logreport = lambda self, report: None
"""


def build(root: Path, n: int, tool: str = "plain") -> None:
    python = sys.executable
    if tool == "hydra":
        uv, env = find_uv(), uv_environ()
        venv = root / "hydra-venv"
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env
        )
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(venv / "bin/python"), "hydra-core==1.3.8"],
            check=True,
            env=env,
        )
        python = str(venv / "bin/python")
    (root / "tools/t/src").mkdir(parents=True)
    (root / "tools/t/src/main.py").write_text(TOOL if tool == "hydra" else PLAIN_TOOL)
    (root / "configs").mkdir()
    (root / "configs/meta.yaml").write_text(
        f"tools:\n  t:\n    path: tools/t\n    entrypoint: src/main.py\n    env: {python}\n"
    )
    for i in range(n):
        (root / f"configs/e{i:03d}.yaml").write_text(
            f"tool: t\nexperiment: e{i:03d}\nestimated_runtime: 1s\ni: {i}\n"
            "xstash:\n  expect:\n    accuracy: '>= 0.5'\n    loss: {ref: 0.1, tol: 0.01}\n"
        )
    (root / "conftest.py").write_text(BARE_CONFTEST)


def run(root: Path, bare: bool) -> float:
    env = dict(os.environ)
    env.pop("XSTASH_BENCH_BARE", None)
    args = [
        sys.executable,
        "-m",
        "pytest",
        "configs",
        "-q",
        "-p",
        "no:xdist",
        "-p",
        "no:cacheprovider",
    ]
    if bare:
        env["XSTASH_BENCH_BARE"] = "1"
    else:
        args += ["--xstash-report", "results.md", "--junitxml", "junit.xml"]
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"pytest failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tool", choices=["plain", "hydra"], default="plain")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, args.n, args.tool)
        run(root, bare=False)  # warm-up: imports, page cache
        full, bare = [], []
        for _ in range(args.repeats):
            full.append(run(root, bare=False))
            bare.append(run(root, bare=True))
    f, b = statistics.median(full), statistics.median(bare)
    print(
        f"{args.n} experiments of a {args.tool} tool, {args.repeats} alternating runs each "
        "(pytest -p no:xdist)"
    )
    print(
        f"full (records, metrics, expectations, report, junit): median {f:.2f}s "
        f"= {1000 * f / args.n:.1f} ms/experiment"
    )
    print(
        f"bare (records, metrics, reporting disabled):          median {b:.2f}s "
        f"= {1000 * b / args.n:.1f} ms/experiment"
    )
    print(f"added per experiment: {1000 * (f - b) / args.n:.1f} ms; ratio full/bare = {f / b:.3f}")


if __name__ == "__main__":
    main()
