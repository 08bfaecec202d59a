"""GPU-aware dispatch (xstash_plugin/dispatch.py) and the xdist controller that uses it.

The planner is tested on its own (which experiment starts, which is reserved for, which one a
worker is handed next), then the real :class:`LongestFirstScheduling` is driven through the
calls DSession makes, with xdist's worker rule modelled as in test_seed_scheduling.py (a
worker runs its first item only once it holds a second or was told to stop): over random
suites and completion orders, the runs it lets start never need more GPUs than the machine
has, every item runs, and aggregates still follow their seeds. Real sessions on a faked
4-GPU machine are in test_slots.py; the makespan is benchmark B9 (bench/slots.py).
"""

from __future__ import annotations

import heapq
import random
from typing import Any

import pytest
from test_seed_scheduling import FakeNode, fake_config, run_to_end, seeded_collection

from xstash_plugin.dispatch import Job, Plan, hand_next, place, start_now, successor
from xstash_plugin.scheduling import LongestFirstScheduling, aggregate_dependencies


def test_place_takes_free_gpus_and_gathers_shares() -> None:
    assert place([1.0, 0.0, 1.0, 1.0], 2) == (0, 2)
    assert place([1.0, 0.0, 0.5, 1.0], 3) is None
    assert place([1.0, 0.0, 0.5, 1.0], 0.5) == (2,)  # joins the GPU already shared
    assert place([0.25, 1.0], 0.5) == (1,)
    assert place([0.0, 0.0], 0) == ()


def running(plan: Plan, worker: str, job: Job, now: float = 0.0) -> None:
    plan.start(worker, job, now, place(plan.room, job.gpus) or ())


def test_a_one_gpu_run_starts_ahead_of_a_two_gpu_run_that_does_not_fit() -> None:
    plan = Plan(4, idle=["w3"])
    running(plan, "w0", Job(0, 2, 10.0))
    running(plan, "w1", Job(1, 1, 10.0))
    queue = [Job(2, 2, 8.0), Job(3, 1, 6.0)]
    started = start_now(plan, 0.0, queue)
    assert started == [("w3", Job(3, 1, 6.0))]
    assert queue == [Job(2, 2, 8.0)]
    assert plan.waiting == {2: 8.0}  # overtaken from now on: due after its own 8 s


def test_overtaken_longer_than_its_estimate_it_is_reserved_for() -> None:
    """From then on only runs that end before its GPUs are due may go ahead (backfill)."""
    plan = Plan(4, idle=["w2", "w3"], waiting={5: 3.0})  # overtaken at 0
    running(plan, "w0", Job(0, 2, 20.0))  # ends at 20
    running(plan, "w1", Job(1, 1, 12.0))  # ends at 12: then the 2-GPU run fits
    long_one, short_one, two = Job(2, 1, 9.0), Job(3, 1, 4.0), Job(5, 2, 3.0)
    queue = [two, long_one, short_one]
    started = start_now(plan, 5.0, queue)  # waited 5 s > its 3 s
    assert started == [("w2", short_one)]  # ends at 9 < 12; the 9 s one would end at 14
    assert queue == [two, long_one]
    # Not overtaken long enough yet: every run that fits starts.
    plan = Plan(4, idle=["w2", "w3"], waiting={5: 7.0})  # overtaken at 4
    running(plan, "w0", Job(0, 2, 20.0))
    running(plan, "w1", Job(1, 1, 12.0))
    queue = [two, long_one, short_one]
    assert start_now(plan, 5.0, queue) == [("w2", long_one)]


def test_parked_runs_start_first_longest_waiting_first() -> None:
    plan = Plan(2, parked={"w1": (Job(1, 1, 1.0), 3.0), "w2": (Job(2, 1, 5.0), 1.0)})
    plan.idle = ["w3"]
    queue = [Job(9, 1, 50.0)]
    assert start_now(plan, 4.0, queue) == [("w2", Job(2, 1, 5.0)), ("w1", Job(1, 1, 1.0))]
    assert queue == [Job(9, 1, 50.0)]


def test_the_successor_is_what_fits_when_the_worker_frees_up() -> None:
    """w0's 1-GPU run ends at 5 while the other three GPUs stay busy until 10: at 5 the
    2-GPU run would not fit, the 1-GPU one does; so w0 is handed that one."""
    plan = Plan(4)
    running(plan, "w0", Job(0, 1, 5.0))
    running(plan, "w1", Job(1, 3, 10.0))
    queue = [Job(2, 2, 8.0), Job(3, 1, 3.0)]
    assert successor(plan, 0.0, "w0", queue) == (Job(3, 1, 3.0), 5.0)
    # With two GPUs free (and no worker to use them), both fit at 5: w0 gets the longest.
    plan = Plan(4)
    running(plan, "w0", Job(0, 1, 5.0))
    running(plan, "w1", Job(1, 1, 10.0))
    assert successor(plan, 0.0, "w0", queue) == (Job(2, 2, 8.0), 5.0)


def test_no_successor_when_the_others_take_everything() -> None:
    plan = Plan(2)
    running(plan, "w0", Job(0, 1, 100.0))
    running(plan, "w1", Job(1, 1, 1.0))
    assert successor(plan, 0.0, "w0", [Job(2, 1, 1.0)]) is None


def play(jobs: list[Job], gpus: int, workers: int) -> dict[int, tuple[float, float]]:
    """The planner on an ideal machine (durations exactly the estimates): start, successor,
    park, as the controller does. Each job's (start, end)."""
    plan = Plan(gpus, idle=[f"w{i}" for i in range(workers)])
    queue = sorted(jobs, key=lambda j: -j.seconds)
    spans: dict[int, tuple[float, float]] = {}
    ends: list[tuple[float, str]] = []
    now = 0.0
    while True:
        started = start_now(plan, now, queue)
        for worker, job in started:
            spans[job.index] = (now, now + job.seconds)
            heapq.heappush(ends, (now + job.seconds, str(worker)))
        for worker, _ in started:
            hand_next(plan, now, worker, queue)
        if not ends:
            break
        now, worker = heapq.heappop(ends)
        plan.finish(worker, now)
    assert not queue and len(spans) == len(jobs), "the planner left jobs behind"
    return spans


@pytest.mark.parametrize("seed", range(12))
def test_no_gpu_is_overbooked_and_a_two_gpu_run_is_not_overtaken_forever(seed: int) -> None:
    rng = random.Random(seed)
    jobs = [
        Job(i, rng.choice((1, 1, 1, 2)), round(min(12.0, rng.paretovariate(1.5)), 2))
        for i in range(40)
    ]
    spans = play(jobs, gpus=4, workers=4)
    events = sorted((t, +job.gpus) for job in jobs for t in spans[job.index][:1])
    events += sorted((spans[job.index][1], -job.gpus) for job in jobs)
    held = 0.0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts
        held += change
        assert held <= 4 + 1e-9
    work = sum(job.gpus * job.seconds for job in jobs)
    makespan = max(end for _, end in spans.values())
    longest = max(job.seconds for job in jobs)
    assert makespan <= 1.25 * max(work / 4, longest)
    # Policy: overtaken for at most its own duration, then reserved for: it starts by then
    # plus the time the runs holding its GPUs need (at most the longest).
    for job in (j for j in jobs if j.gpus == 2):
        overtaken = [
            other
            for other in jobs
            if other.seconds < job.seconds and spans[other.index][0] < spans[job.index][0]
        ]
        if overtaken:
            since = min(spans[other.index][0] for other in overtaken)
            assert spans[job.index][0] <= since + job.seconds + 2 * longest + 1e-6


# --- the controller ---------------------------------------------------------------------------


class PlannedScheduling(LongestFirstScheduling):  # type: ignore[misc]
    """The controller with the GPUs each item asks for given (the real one reads them from
    the configs: run/demands.py); estimates fall from the first item to the last."""

    def __init__(self, workers: int, asks: dict[int, float]) -> None:
        super().__init__(fake_config(workers))
        self.asks = asks

    def _plan_gpus(self, collection: list[str]) -> None:
        self.gpus = 4
        count = len(collection)
        seconds = [1.0 + (count - i) * 0.1 for i in range(count)]
        self.jobs = {i: Job(i, self.asks.get(i, 0.0), seconds[i]) for i in range(count)}


def drive(collection: list[str], gpus: dict[int, float], workers: int, seed: int) -> list[int]:
    """Run the controller to the end with random completion order; check at every step that
    what runs fits on 4 GPUs. The order items finished in."""

    def fits(sched: Any, runnable: list[FakeNode]) -> None:
        room = [1.0] * 4
        for node in runnable:
            need = gpus.get(sched.node2pending[node][0], 0.0)
            held = place(room, need)
            assert held is not None, f"runs started beyond 4 GPUs: {sched.node2pending}"
            for g in held:
                room[g] -= min(1.0, need)

    sched = PlannedScheduling(workers, gpus)
    return run_to_end(sched, collection, workers, random.Random(seed), fits)


@pytest.mark.parametrize("workers", [1, 2, 4, 6])
def test_the_controller_starts_only_what_fits_and_runs_everything(workers: int) -> None:
    collection = [f"configs/e{i:02d}.yaml::e{i:02d}" for i in range(30)]
    for trial in range(40):
        rng = random.Random(trial)
        gpus = {i: rng.choice((0.5, 1, 1, 2, 4)) for i in range(30)}
        finished = drive(collection, gpus, workers, trial)
        assert sorted(finished) == list(range(30))


@pytest.mark.parametrize("workers", [2, 4])
def test_with_gpus_aggregates_still_follow_their_seeds(workers: int) -> None:
    collection = seeded_collection(points=3, seeds=4, plain=3)
    deps = aggregate_dependencies(collection)
    gpus = {i: 1.0 + (i % 2) for i in range(len(collection)) if i not in deps}
    for trial in range(40):
        finished = drive(collection, gpus, workers, trial)
        position = {index: place for place, index in enumerate(finished)}
        for aggregate, seeds in deps.items():
            assert all(position[s] < position[aggregate] for s in seeds)


def test_a_crashed_worker_gives_its_gpus_back() -> None:
    """The node running the 4-GPU item dies: were its GPUs still counted, nothing else could
    start."""
    collection = [f"configs/e{i}.yaml::e{i}" for i in range(6)]
    gpus = {0: 4.0, **{i: 2.0 for i in range(1, 6)}}
    sched = PlannedScheduling(2, gpus)
    nodes = [FakeNode("gw0"), FakeNode("gw1")]
    for node in nodes:
        sched.add_node(node)
    for node in nodes:
        sched.add_node_collection(node, list(collection))
    sched.schedule()
    victim = next(n for n in nodes if sched.node2pending[n][:1] == [0])
    assert len(sched.node2pending[victim]) == 2  # it runs the 4-GPU item
    other = next(n for n in nodes if n is not victim)
    assert len(sched.node2pending[other]) < 2  # nothing else fits meanwhile
    assert sched.remove_node(victim) == collection[0]
    assert len(sched.node2pending[other]) == 2 or other.shutting_down  # it may go now
