"""B9: local resource slots on a faked 4-GPU machine (``xstash_gpus = 0,1,2,3``): 24 experiments
asking for 1 or 2 GPUs, with heavy-tailed (Pareto) sleep durations and their
``estimated_runtime``, run under ``-n 4``. Each tool records when it started and ended; the
makespan (first start to last end) is divided by its lower bound,
max(GPU-seconds / 4, longest run). Every run must also have had distinct GPUs of its own.

The tool is registered with ``preload: true``: each run is forked from a process that imported
Hydra once, so a run holds its GPUs for its own work plus Hydra's per-run start (composing the
config, the run directory, logging), not for an interpreter start (``--plain`` starts each run
as a new interpreter instead). The xdist controller plans the GPUs (xstash_plugin/dispatch.py):
runs start longest first, each as soon as its GPUs are free by the controller's model, and
each worker is handed the experiment that will fit when its current run ends.

    python bench/slots.py [--repeat 3] [--scale 1.0] [--plain]
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from _common import (
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
    spread,
    workdir,
    write,
)

GOAL = 1.10
GPUS = 4
RUNS = 24
SLOT_TOOL = """\
import json, os, time

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    start = time.time()
    time.sleep(float(cfg.seconds))
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, "slot.json"), "w") as f:
        cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
        json.dump({"cuda": cuda, "want": cfg.want, "name": cfg.name, "start": start,
                   "end": time.time()}, f)


if __name__ == "__main__":
    main()
"""


def workload(scale: float) -> list[tuple[int, float]]:
    """(GPUs, seconds) per experiment: Pareto(1.5) from 1 s, capped at 12 s, times ``scale``."""
    rng = random.Random(9)
    return [
        (rng.choice((1, 2)), round(scale * min(12.0, rng.paretovariate(1.5)), 2))
        for _ in range(RUNS)
    ]


def build(root: Path, jobs: list[tuple[int, float]], plain: bool) -> None:
    make_repo(root, {"t": SLOT_TOOL}, {} if plain else {"t": "preload: true"})  # see above
    write(root / "pytest.ini", "[pytest]\nxstash_compose = off\nxstash_gpus = 0,1,2,3\n")
    for i, (gpus, seconds) in enumerate(jobs):
        write(
            root / "configs" / f"e{i:02d}.yaml",
            f"tool: t\nexperiment: e{i:02d}\nestimated_runtime: {seconds}s\n"
            f"seconds: {seconds}\nwant: {gpus}\nname: e{i:02d}\n"
            f"xstash:\n  launcher: local\n  resources: {{gpus: {gpus}}}\n",
        )


def measure(root: Path, out: Path) -> tuple[float, float, float]:
    """Makespan and lower bound of one session, from the runs' own start/end; and the bound
    again with each run's whole process (its record's duration: fork and Hydra's start
    included, during which it holds its GPUs too)."""
    argv = pytest_argv("configs", "-q", "-n", str(GPUS), "--xstash-output-root", str(out))
    run(argv, root)
    runs = [json.loads(p.read_text()) for p in out.rglob("slot.json")]
    if len(runs) != RUNS:
        raise Failed(f"expected {RUNS} runs, found {len(runs)}")
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in runs:
        gpus = str(r["cuda"]).split(",")
        if len(set(gpus)) != len(gpus) or len(gpus) != r["want"]:
            raise Failed(f"a run got GPUs {r['cuda']!r} for {r['want']}")
        for gpu in gpus:
            spans.setdefault(gpu, []).append((r["start"], r["end"]))
    for gpu, held in spans.items():
        for (_, end), (start, _) in itertools.pairwise(sorted(held)):
            if start < end:
                raise Failed(f"GPU {gpu} was held by two runs at once")
    makespan = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    work = sum(r["want"] * (r["end"] - r["start"]) for r in runs)
    longest = max(r["end"] - r["start"] for r in runs)
    recs = {r["experiment"]: r for r in records(out)}
    held = [r["want"] * recs[r["name"]]["duration"] for r in runs]
    whole = max(sum(held) / GPUS, max(r["duration"] for r in recs.values()))
    return makespan, max(work / GPUS, longest), whole


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every sleep (default 1)")
    p.add_argument("--plain", action="store_true", help="start each run plainly, not preloaded")
    args = p.parse_args()
    jobs = workload(args.scale)
    with workdir(args.keep, "slots") as tmp:
        root = tmp / "repo"
        build(root, jobs, args.plain)
        print(f"B9: warm-up (builds the tool's uv environment) in {tmp}", flush=True)
        measure(root, tmp / "out-warm")
        ratios, spans, bounds, wholes = [], [], [], []
        for i in range(args.repeat):
            makespan, bound, whole = measure(root, tmp / f"out-{i}")
            ratios.append(makespan / bound)
            spans.append(makespan)
            bounds.append(bound)
            wholes.append(makespan / whole)
            print(
                f"  round {i + 1}/{args.repeat}: makespan {makespan:.2f} s, bound {bound:.2f} s, "
                f"bound with process start {whole:.2f} s"
            )
    ratio = median(ratios)
    plain = ["--plain"] if args.plain else []
    print(f"makespan / bound: {spread(ratios)}")
    print(f"makespan / bound counting each run's process start: {spread(wholes)}")
    print(
        f"B9 slots (24 runs of 1-2 GPUs on 4 faked GPUs, -n 4): makespan {median(spans):.2f} s, "
        f"lower bound {median(bounds):.2f} s, ratio {ratio:.2f} (goal <= {GOAL}) - median of "
        f"{args.repeat}"
    )
    finish(
        [
            Row(
                id="B9",
                what="24 runs of 1-2 GPUs, heavy-tailed durations, 4 faked GPUs, -n 4"
                + (", started plainly" if args.plain else "")
                + ": makespan / max(GPU-seconds / 4, longest)",
                goal=f"<= {GOAL}",
                measured=f"{ratio:.2f} ({median(spans):.2f} s vs {median(bounds):.2f} s)",
                met=ratio <= GOAL,
                command=command_line("slots.py", args, "--scale", str(args.scale), *plain),
                note=f"{median(wholes):.2f} against the bound counting each run's whole process "
                "(fork + Hydra's start, GPUs held)",
            )
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
