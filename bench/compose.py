"""B7: deep validation at collection. ``pytest configs --collect-only`` of one N-point sweep
plus M plain configs of a tool shaped like a real Hydra app whose import takes seconds, with a
cold verdict cache, against the floor of doing the same work in one Python process by hand:
one import of the tool plus N single in-process composes (Hydra's compose API).

The tool: module-style entry (``-m app.main``), primary config ``main`` with config groups
``model/`` and ``dataset/`` instantiated from ``_target_``, no schema, and an import that
sleeps ``--import-seconds`` (torch, sklearn and friends take that long). The sweep goes over
``trainer.epochs`` x ``seed``; the plain configs set a few existing keys.

Both sides alternate in each round:
  * xstash: ``pytest configs --collect-only -q`` with the verdict cache removed (cold);
  * floor: ``<tool python> floor.py``: imports the tool's entry, then composes each sweep point
    with ``hydra.compose`` in one ``initialize_config_dir``; it reports its import time and
    each compose's time, and the floor is ``import + N x median compose``.
Then xstash once more with the cache kept (warm), which starts no tool at all.

    python bench/compose.py [--points 200] [--plain 20] [--import-seconds 2] [--repeat 3]
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from _common import (
    HYDRA,
    Failed,
    Row,
    alternate,
    command_line,
    finish,
    median,
    parser,
    pytest_argv,
    run,
    spread,
    workdir,
    write,
)

GOAL = 1.3

MAIN = """\
import json
import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

import app.heavy  # noqa: F401  (the app's heavy dependencies)

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="main")
def main(cfg):
    model = instantiate(cfg.model)
    log.info("model %s, %d epochs", model, cfg.trainer.epochs)
    with open(f"{HydraConfig.get().runtime.output_dir}/metrics.json", "w") as handle:
        json.dump({"accuracy": 0.9}, handle)


if __name__ == "__main__":
    main()
"""

FILES = {
    "app/__init__.py": "",
    "app/heavy.py": "import time\n\ntime.sleep({seconds})\n",
    "app/models.py": (
        "class Linear:\n    def __init__(self, lr=0.1, penalty='l2'):\n        self.lr = lr\n\n\n"
        "class Tree:\n    def __init__(self, depth=3, min_leaf=1):\n        self.depth = depth\n"
    ),
    "app/conf/main.yaml": (
        "defaults:\n  - model: linear\n  - dataset: iris\n  - _self_\n\n"
        "test_size: 0.2\nseed: 0\ntrainer:\n  epochs: 3\n  log_every: 1\n"
    ),
    "app/conf/model/linear.yaml": "_target_: app.models.Linear\nlr: 0.1\npenalty: l2\n",
    "app/conf/model/tree.yaml": "_target_: app.models.Tree\ndepth: 3\nmin_leaf: 1\n",
    "app/conf/dataset/iris.yaml": "name: iris\nn_samples: 150\nnoise: 0.1\n",
    "app/conf/dataset/digits.yaml": "name: digits\nn_samples: 1797\nnoise: 0.3\n",
}

# The floor: what one Python process composing the same configs by hand costs.
FLOOR = """\
import json
import os
import sys
import time

started = time.perf_counter()
import app.main  # noqa: E402,F401  (Hydra, the tool, its heavy import)
imported = time.perf_counter() - started
from hydra import compose, initialize_config_dir  # noqa: E402

points = json.loads(sys.argv[1])
times = []
conf = os.path.abspath(os.path.join("app", "conf"))
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    for overrides in points:
        t = time.perf_counter()
        compose(config_name="main", overrides=overrides)
        times.append(time.perf_counter() - t)
print(json.dumps({"import": imported, "composes": times}))
"""


def build(root: Path, points: int, plain: int, seconds: float) -> list[list[str]]:
    """The repository; the sweep's points as Hydra overrides."""
    tool = root / "tools" / "heavy"
    write(
        tool / "pyproject.toml",
        f'[project]\nname = "heavy"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
        f'dependencies = ["{HYDRA}"]\n\n[tool.uv]\npackage = false\n',
    )
    write(tool / "app" / "main.py", MAIN)
    for rel, text in FILES.items():
        write(tool / rel, text.format(seconds=seconds) if rel.endswith("heavy.py") else text)
    write(tool / "floor.py", FLOOR)
    write(
        root / "configs" / "meta.yaml",
        'tools:\n  heavy:\n    path: tools/heavy\n    entrypoint: "-m app.main"\n',
    )
    write(root / "pytest.ini", "[pytest]\n")
    epochs = list(range(1, (points + 9) // 10 + 1))
    seeds = list(range(10 if points >= 10 else points))
    grid = [(e, s) for e in epochs for s in seeds][:points]
    epochs = sorted({e for e, _ in grid})
    seeds = sorted({s for _, s in grid})
    if len(epochs) * len(seeds) != points:
        raise Failed(f"--points {points}: use a multiple of 10 (or fewer than 10)")
    write(
        root / "configs" / "sweep.yaml",
        "tool: heavy\nexperiment: sweep\ntest_size: 0.25\n"
        f"xstash:\n  sweep:\n    trainer.epochs: {epochs}\n    seed: {seeds}\n",
    )
    for i in range(plain):
        write(
            root / "configs" / "plain" / f"e{i:02d}.yaml",
            f"tool: heavy\nexperiment: e{i:02d}\nseed: {i}\ntrainer:\n  log_every: {i + 1}\n",
        )
    return [[f"trainer.epochs={e}", f"seed={s}"] for e, s in grid]


def collect(root: Path, expected: int) -> float:
    elapsed, proc = run(pytest_argv("configs", "--collect-only", "-q"), root)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if f"{expected} tests collected" not in last:
        raise Failed(f"expected {expected} tests collected, pytest says: {last}")
    return elapsed


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--points", type=int, default=200, help="sweep points (default 200)")
    p.add_argument("--plain", type=int, default=20, help="plain configs (default 20)")
    p.add_argument(
        "--import-seconds", type=float, default=2.0, help="the tool's import time (default 2)"
    )
    args = p.parse_args()
    n, m = args.points, args.plain
    total = n + m
    with workdir(args.keep, "compose") as tmp:
        root = tmp / "repo"
        points = build(root, n, m, args.import_seconds)
        cache = root / "outputs" / ".xstash" / "compose"
        print(f"B7: warm-up (builds the tool's uv environment) in {tmp}", flush=True)
        collect(root, total)
        python = str(root / "tools" / "heavy" / ".venv" / "bin" / "python")
        floors: list[dict[str, object]] = []

        def cold(_: int) -> float:
            shutil.rmtree(cache, ignore_errors=True)
            return collect(root, total)

        def floor(_: int) -> float:
            _, proc = run([python, "floor.py", json.dumps(points)], root / "tools" / "heavy")
            data = json.loads(proc.stdout.strip().splitlines()[-1])
            floors.append(data)
            composes = [float(t) for t in data["composes"]]  # type: ignore[union-attr]
            return float(data["import"]) + n * median(composes)  # type: ignore[arg-type]

        times = alternate({"xstash cold": cold, "floor": floor}, args.repeat)
        warm = [collect(root, total) for _ in range(args.repeat)]
    x, f, w = median(times["xstash cold"]), median(times["floor"]), median(warm)
    imports = median([float(d["import"]) for d in floors])  # type: ignore[arg-type]
    compose_ms = 1000 * median(
        [median([float(t) for t in d["composes"]]) for d in floors]  # type: ignore[union-attr]
    )
    ratio = x / f
    print(f"xstash --collect-only, cold cache: {spread(times['xstash cold'])} s")
    print(f"xstash --collect-only, warm cache: {spread(warm)} s")
    print(
        f"floor: import {imports:.2f} s + {n} x {compose_ms:.1f} ms (median single in-process "
        f"compose) = {spread(times['floor'])} s"
    )
    print(
        f"B7 compose at collection ({n}-point sweep + {m} configs, import {args.import_seconds:g}"
        f" s): xstash {x:.2f} s cold, {w:.2f} s warm; floor {f:.2f} s; ratio {ratio:.2f} "
        f"(goal <= {GOAL}) - median of {args.repeat}"
    )
    command = command_line(
        "compose.py",
        args,
        "--points",
        str(n),
        "--plain",
        str(m),
        "--import-seconds",
        f"{args.import_seconds:g}",
    )
    finish(
        [
            Row(
                id="B7",
                what=(
                    f"--collect-only of a {n}-point sweep + {m} configs, tool import "
                    f"{args.import_seconds:g} s, cold cache, vs import + {n} in-process composes"
                ),
                goal=f"<= {GOAL}",
                measured=f"{ratio:.2f} ({x:.2f} s vs {f:.2f} s; warm cache {w:.2f} s)",
                met=ratio <= GOAL,
                command=command,
            )
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
