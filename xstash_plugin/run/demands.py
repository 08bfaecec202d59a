"""What each collected experiment asks of this machine's GPUs, for the xdist controller's
GPU-aware dispatch (dispatch.py, scheduling.py). The controller has test ids, not items, so
it reads the configs itself, as it does for needs (run/needs_run.py)."""

from __future__ import annotations

from statistics import median
from typing import TYPE_CHECKING

from xstash_plugin.dispatch import Job
from xstash_plugin.launchers.slots import Want, inventory_of
from xstash_plugin.ordering import load_durations
from xstash_plugin.run.needs_run import load

if TYPE_CHECKING:
    from xstash_plugin.config.experiment import Experiment
    from xstash_plugin.session import State

# The estimate of an experiment with none (no estimated_runtime, never run) when no other
# experiment has one either.
UNKNOWN_SECONDS = 60.0


def gpu_jobs(state: State, collection: list[str]) -> tuple[int, dict[int, Job]] | None:
    """This machine's GPU count and, per index in ``collection``, the GPUs it holds and its
    estimated seconds; None when no experiment of the local launcher asks for a GPU (then
    there is nothing to plan)."""
    loaded: dict[str, Experiment | None] = {}
    asks: list[tuple[float, float | None]] = []
    learned: dict[str, float] | None = None
    known: list[float] = []  # the experiments' estimates
    for nodeid in collection:
        file, _, rest = nodeid.partition("::")
        if "::" in rest or not file.endswith((".yaml", ".yml")):  # an aggregate, a plain test
            asks.append((0.0, 0.0))
            continue
        if file not in loaded:
            loaded[file] = load(state, state.config.rootpath / file)
        experiment = loaded[file]
        if experiment is None:
            asks.append((0.0, None))
            continue
        estimate = experiment.estimated_seconds
        if estimate is None:
            if learned is None:
                learned = load_durations(state.output_root)
            estimate = learned.get(nodeid)
        asks.append((_gpus(state, experiment), estimate))
        if estimate is not None:
            known.append(estimate)
    if not any(gpus for gpus, _ in asks):
        return None
    count = len(inventory_of(state.settings).gpus)
    if not count:
        return None
    default = median(known) if known else UNKNOWN_SECONDS
    jobs = {
        index: Job(index, gpus, default if seconds is None else seconds)
        for index, (gpus, seconds) in enumerate(asks)
    }
    return count, jobs


def _gpus(state: State, experiment: Experiment) -> float:
    """The GPUs of this machine a run of ``experiment`` holds (none on another launcher)."""
    if experiment.launcher_or(state.settings.launcher) != "local":
        return 0.0
    want = Want.of(experiment.all_resources)
    return float(want.gpus or 0) if want is not None else 0.0
