"""Reuse and resume: what a fully reused suite costs, and what keying a large tool costs.

1. 100 trivial experiments (a plain-Python tool): wall time of the first run, of a second run
   with --xstash-reuse (every run reused), and of --collect-only alone (the floor).
2. Keying a tool folder of 5,000 files, in a git work tree and outside one.

    python bench/reuse.py [--n 100] [--files 5000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xstash_plugin.run.provenance import tree_digest_git, tree_digest_plain

TOOL = """\
import json, os, sys
run_dir = next(a for a in sys.argv if a.startswith("hydra.run.dir=")).split("=", 1)[1]
with open(os.path.join(run_dir.strip("'"), "metrics.json"), "w") as f:
    json.dump({"score": 1.0}, f)
"""


def pytest(root: Path, *args: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "configs", "-q", "-p", "no:cacheprovider", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(proc.stdout[-2000:] + proc.stderr[-2000:])
    return elapsed


def suite(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "tools/t").mkdir(parents=True)
        (root / "tools/t/main.py").write_text(TOOL)
        (root / "configs").mkdir()
        (root / "configs/meta.yaml").write_text(
            "tools:\n  t: {path: tools/t, entrypoint: main.py, env: system}\n"
        )
        for i in range(n):
            (root / f"configs/e{i:03d}.yaml").write_text(
                f"tool: t\nexperiment: e{i:03d}\nvalue: {i}\nxstash:\n  expect: {{score: '>= 1'}}\n"
            )
        first = pytest(root, "--xstash-reuse")
        reused = [pytest(root, "--xstash-reuse") for _ in range(3)]
        collect = [pytest(root, "--collect-only") for _ in range(3)]
    r, c = min(reused), min(collect)
    print(f"{n} trivial experiments (plain-Python tool, no -n):")
    print(f"  first run:                    {first:.2f}s")
    print(f"  second run, all reused:       {r:.2f}s (best of 3)")
    print(f"  --collect-only alone:         {c:.2f}s (best of 3)")
    print(
        f"  reused / collect-only = {r / c:.2f}; reuse check per experiment: "
        f"{1000 * (r - c) / n:.1f} ms"
    )


def keys(files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tool = Path(tmp) / "tool"
        for i in range(files):
            path = tool / f"pkg{i % 50}" / f"m{i}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"X = {i}\n" * 20)
        started = time.perf_counter()
        tree_digest_plain(tool)
        plain = time.perf_counter() - started
        subprocess.run(["git", "init", "-q"], cwd=tool, check=True)
        subprocess.run(["git", "add", "-A"], cwd=tool, check=True)
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"],
            cwd=tool,
            check=True,
        )
        (tool / "pkg0" / "m0.py").write_text("changed\n")
        started = time.perf_counter()
        tree_digest_git(tool)
        git = time.perf_counter() - started
    print(
        f"keying a tool folder of {files} files: {git:.3f}s with git (1 file modified), "
        f"{plain:.3f}s reading every file (no git); once per tool per pytest process"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    keys(args.files)
    suite(args.n)


if __name__ == "__main__":
    main()
