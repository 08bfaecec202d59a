"""The xdist scheduler's side of seeds: an aggregate goes to a worker only once its seeds are
done or queued ahead of it on that worker, and no worker is ever left waiting for good.

xdist's real worker loop is modelled exactly where it matters: a worker runs the first item of
its queue only once it holds a second one (pytest must know the next item for teardown) or has
been told to shut down. The model drives the real :class:`LongestFirstScheduling` through the
calls DSession makes (``add_node``, ``add_node_collection``, ``schedule``,
``mark_test_complete``, ``remove_node``) over many random suites, orders of completion and
worker counts; real pytest-xdist sessions with seeds are in test_seeds.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from xstash_plugin.scheduling import LongestFirstScheduling, aggregate_dependencies


class FakeNode:
    """A WorkerController as the scheduler sees it."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.received: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.received.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True

    def __repr__(self) -> str:
        return f"<{self.gateway.id}>"


def fake_config(workers: int) -> Any:
    option = SimpleNamespace(
        numprocesses=workers, maxschedchunk=None, tx=[f"{workers}*popen"], dist="load"
    )

    def value(name: str) -> Any:
        return getattr(option, name, None)

    return SimpleNamespace(option=option, getvalue=value, getoption=value)


AGGREGATE = "configs/s.yaml::exp::mean"


def seeded_collection(points: int, seeds: int, plain: int, sweep: bool = True) -> list[str]:
    """Items as xstash collects them: per point its seeds, then the aggregates; and plain
    experiments."""
    ids = []
    for p in range(points):
        label = f"lr=0.{p + 1}-" if sweep else ""
        ids += [f"configs/s.yaml::exp[{label}seed={s}]" for s in range(seeds)]
    for p in range(points):
        ids.append(
            f"configs/s.yaml::exp::mean[lr=0.{p + 1}]" if sweep else "configs/s.yaml::exp::mean"
        )
    ids += [f"configs/p{i}.yaml::plain{i}" for i in range(plain)]
    return ids


def simulate(collection: list[str], workers: int, rng: random.Random) -> list[int]:
    """Run the scheduler to the end; return the order items finished in. Fails on a stall."""
    return run_to_end(LongestFirstScheduling(fake_config(workers)), collection, workers, rng)


def run_to_end(
    sched: Any,
    collection: list[str],
    workers: int,
    rng: random.Random,
    check: Callable[[Any, list[FakeNode]], None] | None = None,
) -> list[int]:
    """Drive ``sched`` as DSession does, a random running worker finishing at each step
    (``check`` sees the running workers before each); the order items finished in."""
    nodes = [FakeNode(f"gw{i}") for i in range(workers)]
    for node in nodes:
        sched.add_node(node)
    for node in nodes:
        sched.add_node_collection(node, list(collection))
    sched.schedule()
    finished: list[int] = []
    for _ in range(10 * len(collection) + 10):
        # Workers that can run their first item: they hold a next one, or were told to stop.
        runnable = [
            n
            for n in nodes
            if n in sched.node2pending
            and (len(sched.node2pending[n]) >= 2 or (n.shutting_down and sched.node2pending[n]))
        ]
        if check is not None:
            check(sched, runnable)
        if not runnable:
            break
        node = rng.choice(runnable)  # any running worker may finish first
        index = sched.node2pending[node][0]
        finished.append(index)
        sched.mark_test_complete(node, index)
        if sched.tests_finished:  # what DSession does then: every worker is told to stop
            for other in nodes:
                other.shutdown()
        for done in [n for n in nodes if n.shutting_down and n in sched.node2pending]:
            if not sched.node2pending[done]:
                sched.remove_node(done)
    assert len(finished) == len(collection), (
        f"stalled after {len(finished)} of {len(collection)} items: "
        f"queues {dict(sched.node2pending)}, held {sched.pending}"
    )
    return finished


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
@pytest.mark.parametrize(("points", "seeds", "plain"), [(3, 5, 0), (1, 2, 0), (4, 3, 5), (2, 7, 1)])
def test_every_aggregate_runs_after_its_seeds_and_nothing_stalls(
    workers: int, points: int, seeds: int, plain: int
) -> None:
    collection = seeded_collection(points, seeds, plain)
    deps = aggregate_dependencies(collection)
    assert len(deps) == points and all(len(d) == seeds for d in deps.values())
    for trial in range(60):
        finished = simulate(collection, workers, random.Random(trial))
        position = {index: place for place, index in enumerate(finished)}
        for aggregate, seed_indices in deps.items():
            assert all(position[s] < position[aggregate] for s in seed_indices), (
                f"trial {trial}: {collection[aggregate]} ran before one of its seeds"
            )


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_without_a_sweep_and_with_seeds_deselected(workers: int) -> None:
    """`-k` left two of five seeds: the aggregate waits for those two only."""
    full = seeded_collection(1, 5, 2, sweep=False)
    collection = [nodeid for nodeid in full if "seed=3" not in nodeid and "seed=4" not in nodeid]
    deps = aggregate_dependencies(collection)
    assert [sorted(collection[i] for i in d) for d in deps.values()] == [
        [
            "configs/s.yaml::exp[seed=0]",
            "configs/s.yaml::exp[seed=1]",
            "configs/s.yaml::exp[seed=2]",
        ]
    ]
    for trial in range(30):
        simulate(collection, workers, random.Random(trial))


def test_an_aggregate_without_seeds_in_the_session_runs_at_once() -> None:
    collection = ["configs/s.yaml::exp::mean[lr=0.1]", "configs/p.yaml::plain"]
    assert aggregate_dependencies(collection) == {0: set()}
    simulate(collection, 2, random.Random(0))


def test_dependencies_follow_the_id_contract() -> None:
    ids = [
        "c.yaml::x[lr=0.1-seed=0]",
        "c.yaml::x[lr=0.1-seed=-1]",
        "c.yaml::x[lr=0.1-wd=0-seed=0]",  # another point's seed, not lr=0.1's
        "c.yaml::x::mean[lr=0.1]",
        "c.yaml::x::mean[lr=0.1-wd=0]",
        "c.yaml::x[trainer.seed=4]",
        "c.yaml::y[trainer.seed=4]",
        "c.yaml::x::mean",
        "c.yaml::plain[lr=0.1]",
    ]
    assert aggregate_dependencies(ids) == {3: {0, 1}, 4: {2}, 7: {5}}


def test_a_crashed_worker_counts_its_item_done() -> None:
    """xdist reports a crashed worker's item as failed and starts a new worker: the aggregate
    does not wait for the crashed seed, and goes to whichever worker can take it."""
    collection = seeded_collection(1, 2, 0)
    sched = LongestFirstScheduling(fake_config(2))
    nodes = [FakeNode("gw0"), FakeNode("gw1")]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, list(collection))
    sched.schedule()
    victim = next(n for n in nodes if 0 in sched.node2pending[n])
    other = next(n for n in nodes if n is not victim)
    sched.remove_node(victim)  # crashed while running seed 0
    sched.mark_test_complete(other, 1)  # seed 1 done
    replacement = FakeNode("gw2")
    sched.add_node(replacement)
    sched.add_node_collection(replacement, list(collection))
    sched.schedule()
    takers = [n for n in (other, replacement) if 2 in n.received]
    assert len(takers) == 1, "the aggregate was not sent exactly once"
