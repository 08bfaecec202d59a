"""B10: 200 trivial experiments on a SLURM cluster, three ways, against the same 200 run locally.

- ``one job each``: ``xstash_slurm_arrays = false``, one sbatch per experiment;
- ``arrays``: xstash's default, job arrays of equal resources (split by MaxArraySize);
- ``packed``: ``resources: {pack: true}``, the experiments run inside shared allocations of
  ``xstash_slurm_pack_cpus`` CPUs (2 here), several at a time;
- ``local -n 2``: the same 200 with the local launcher and as many workers as a pack's CPUs.

Each side is one pytest session without ``-n`` (SLURM) on the same repository; the tool is a
real Hydra app in its own uv environment, built once before timing. ``sbatch`` is counted by a
wrapper first on PATH that logs each call's start and end; the submission time is from the
first sbatch's start to the last one's end. Makespan is the whole pytest session's wall time.
Needs a running cluster (``.ci/slurm-ci-up.sh`` makes a one-node one).

    python bench/slurm_scale.py [--repeat 1] [--count 200]
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from _common import (
    TRIVIAL_TOOL,
    Failed,
    Row,
    command_line,
    finish,
    make_repo,
    median,
    parser,
    pytest_argv,
    records,
    run,
    workdir,
    write,
)

GOAL = 1.3
PACK_CPUS = 2
SIDES = ("one job each", "arrays", "packed", "local -n 2")


def build(root: Path, count: int) -> None:
    make_repo(root, {"t": TRIVIAL_TOOL})
    values = ", ".join(str(i) for i in range(count))
    for side, extra in (
        ("slurm", "  launcher: slurm\n"),
        ("packed", "  launcher: slurm\n  resources: {pack: true}\n"),
        ("local", "  launcher: local\n"),
    ):
        write(
            root / "configs" / side / "many.yaml",
            f"tool: t\nexperiment: many\nestimated_runtime: 1s\ni: 0\n"
            f"xstash:\n{extra}  sweep:\n    i: [{values}]\n",
        )


def shim(folder: Path) -> Path:
    """An ``sbatch`` that logs '<start> <end>' per call, then the real one's output."""
    real = shutil.which("sbatch")
    if real is None:
        raise Failed("no SLURM cluster (sbatch not found): run .ci/slurm-ci-up.sh first")
    log = folder / "sbatch.log"
    write(
        folder / "sbatch",
        "#!/bin/sh\nstart=$(date +%s.%N)\n"
        f'out=$({real} "$@"); code=$?\necho "$start $(date +%s.%N)" >> {log}\n'
        'echo "$out"\nexit $code\n',
    ).chmod(0o755)
    return log


def side(root: Path, tmp: Path, name: str, count: int, i: int) -> dict[str, float]:
    out = tmp / f"out-{name.replace(' ', '-')}-{i}"
    folder = tmp / f"shim-{name.replace(' ', '-')}-{i}"
    folder.mkdir()
    log = shim(folder)
    log.touch()
    env = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}
    ini = f"[pytest]\nxstash_compose = off\nxstash_slurm_pack_cpus = {PACK_CPUS}\n"
    if name == "one job each":
        ini += "xstash_slurm_arrays = false\n"
    write(root / "pytest.ini", ini)
    configs = {"local -n 2": "configs/local", "packed": "configs/packed"}.get(name, "configs/slurm")
    extra = ["-n", str(PACK_CPUS)] if name == "local -n 2" else []
    argv = pytest_argv(configs, "-q", "--xstash-output-root", str(out), *extra)
    wall, _ = run(argv, root, env=env)
    found = records(out)
    if len(found) != count or {r["status"] for r in found} != {"passed"}:
        raise Failed(f"{name}: expected {count} passed runs, found {len(found)}")
    calls = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    submit = max(e for _, e in calls) - min(s for s, _ in calls) if calls else 0.0
    print(
        f"  {name}: makespan {wall:.1f} s, {len(calls)} sbatch calls, submission {submit:.2f} s",
        flush=True,
    )
    return {"wall": wall, "calls": float(len(calls)), "submit": submit}


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(repeat=1)
    p.add_argument("--count", type=int, default=200, help="experiments (default 200)")
    args = p.parse_args()
    with workdir(args.keep, "slurm-scale") as tmp:
        root = tmp / "repo"
        build(root, args.count)
        print(f"B10: warm-up (the tool's uv environment, 4 local runs) in {tmp}", flush=True)
        write(root / "configs" / "warm.yaml", "tool: t\nexperiment: warm\n")
        run(pytest_argv("configs/warm.yaml", "-q"), root)
        (root / "configs" / "warm.yaml").unlink()
        results: dict[str, list[dict[str, float]]] = {name: [] for name in SIDES}
        for i in range(args.repeat):
            for name in SIDES:
                results[name].append(side(root, tmp, name, args.count, i))

    def med(name: str, key: str) -> float:
        return median([r[key] for r in results[name]])

    local = med("local -n 2", "wall")
    ratio = med("packed", "wall") / local
    summary = ", ".join(
        f"{name} {med(name, 'wall'):.1f} s / {med(name, 'calls'):.0f} sbatch / "
        f"{med(name, 'submit'):.2f} s to submit"
        for name in SIDES[:3]
    )
    print(f"B10 ({args.count} trivial experiments): {summary}; local -n 2 {local:.1f} s")
    print(f"packed / local -n {PACK_CPUS}: {ratio:.2f} (goal <= {GOAL})")
    finish(
        [
            Row(
                id="B10",
                what=f"{args.count} trivial experiments on SLURM: one job each vs arrays vs "
                f"packed (allocations of {PACK_CPUS} CPUs); makespan of packed / local -n "
                f"{PACK_CPUS}",
                goal=f"<= {GOAL}",
                measured=f"{ratio:.2f} (packed {med('packed', 'wall'):.1f} s vs local "
                f"{local:.1f} s; {summary})",
                met=ratio <= GOAL,
                command=command_line("slurm_scale.py", args, "--count", str(args.count)),
            )
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
