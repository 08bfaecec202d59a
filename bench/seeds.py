"""B11: what the aggregates of ``xstash.seeds`` cost: the same 15 runs of one trivial Hydra tool
(3 learning rates x 5 seeds), under ``-n 2``, as a plain 15-point sweep (the seed a swept key)
and as a 3-point sweep with ``seeds: 5`` (15 seed items and 3 aggregate items that compute the
statistics and judge them: here with ``ci: bootstrap``, the costlier interval).

Both configs send the tool the same 15 override sets. Both sides alternate, each into a fresh
output folder; the script prints the medians and the ratio seeds/sweep.

    python bench/seeds.py [--repeat 3] [--seeds 5]
"""

from __future__ import annotations

from pathlib import Path

from _common import (
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
    workdir,
    write,
)

GOAL = 1.10
RATES = "[0.1, 0.01, 0.001]"
HEAD = "tool: t\nexperiment: {name}\nseed: 0\nparams:\n  learning_rate: 0.001\n"
# A trivial Hydra tool that writes two metrics, a function of the seed and learning rate.
METRIC_TOOL = """\
import json, os, random

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    rng = random.Random(cfg.seed)
    metrics = {"accuracy": 0.9 + rng.gauss(0, 0.01), "loss": cfg.params.learning_rate}
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f)


if __name__ == "__main__":
    main()
"""
EXPECT = "  expect:\n    accuracy: '>= 0.5'\n"


def build(root: Path, seeds: int) -> None:
    make_repo(root, {"t": METRIC_TOOL})
    listed = ", ".join(str(seed) for seed in range(seeds))
    write(
        root / "configs" / "swept.yaml",
        HEAD.format(name="swept")
        + f"xstash:\n  sweep:\n    params.learning_rate: {RATES}\n    seed: [{listed}]\n"
        + EXPECT,
    )
    write(
        root / "configs" / "seeded.yaml",
        HEAD.format(name="seeded")
        + f"xstash:\n  sweep:\n    params.learning_rate: {RATES}\n  seeds: {seeds}\n"
        + "  ci: bootstrap\n"
        + EXPECT,
    )


def xstash(root: Path, config: str, out: Path) -> float:
    argv = pytest_argv(f"configs/{config}", "-q", "-n", "2", "--xstash-output-root", str(out))
    return run(argv, root)[0]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=5, help="seeds per learning rate (default 5)")
    args = p.parse_args()
    runs = 3 * args.seeds
    with workdir(args.keep, "seeds") as tmp:
        root = tmp / "repo"
        build(root, args.seeds)
        print(f"B11: warm-up (builds the tool's uv environment) in {tmp}", flush=True)
        for config in ("swept.yaml", "seeded.yaml"):
            out = tmp / f"out-warm-{config}"
            xstash(root, config, out)
            recs = records(out)
            if len(recs) != runs or any(r.get("status") != "passed" for r in recs):
                raise Failed(f"{config}: expected {runs} passed records, got {len(recs)}")
        times = alternate(
            {
                "sweep": lambda i: xstash(root, "swept.yaml", tmp / f"out-s{i}"),
                "seeds": lambda i: xstash(root, "seeded.yaml", tmp / f"out-a{i}"),
            },
            args.repeat,
        )
    plain, seeded = median(times["sweep"]), median(times["seeds"])
    ratio = seeded / plain
    print(f"{runs}-point sweep: {spread(times['sweep'])} s")
    print(
        f"3 points x seeds: {args.seeds} ({runs} seed items + 3 aggregates): "
        f"{spread(times['seeds'])} s"
    )
    print(
        f"B11 seeds ({runs} runs, -n 2): seeds {seeded:.2f} s, sweep {plain:.2f} s, "
        f"ratio {ratio:.2f} (goal <= {GOAL}) - median of {args.repeat}"
    )
    finish(
        [
            Row(
                id="B11",
                what=f"{runs} runs as 3 points x seeds: {args.seeds} (+3 aggregates) vs a "
                f"{runs}-point sweep, -n 2",
                goal=f"<= {GOAL}",
                measured=f"{ratio:.2f} ({seeded:.2f} s vs {plain:.2f} s)",
                met=ratio <= GOAL,
                command=command_line("seeds.py", args, "--seeds", str(args.seeds)),
            )
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
