"""pytest-xdist scheduling that keeps longest-first ordering intact, runs each seeded point's
aggregate after its seeds and each experiment after its needs (imported only under xdist).

xdist's ``load`` scheduler starts each worker with a chunk of *consecutive* items (a quarter of
its share), which keeps fixture setups together for unit tests, but with experiments ordered
longest first it gives all the long ones to the first worker. This scheduler deals the first
items out round-robin and then keeps every worker at two items (the one it runs and the next,
which pytest needs to know for teardown): each worker takes the longest experiment left
whenever it frees up, which is greedy longest-processing-time-first scheduling.

An aggregate item (``name::mean[point]``, see :mod:`xstash_plugin.config.seeds`) reads its
seeds' results, so it is held back until every seed of it in this session has finished, or is
queued ahead of it on the same worker (a worker runs its queue in order). A worker runs an item
only once it has been given the next one (or told to stop), so holding items back can leave
every worker waiting with one item each, seeds of the same aggregate on different workers;
then all but one of those workers are told to stop (they run their last item and leave), and
the aggregates go to the one that stays. No worker ever waits on an aggregate, and no
aggregate waits on a worker.

An experiment with ``xstash.needs`` is held back the same way until its upstreams are done (or
queued ahead of it on the same worker): the controller reads the needs from the config files
of the collected ids (run/needs_run.py).

When experiments ask for this machine's GPUs (``resources: {gpus: N}``, the local launcher),
the controller also decides *when* each one starts, from a model of which GPUs are held and
until when by the estimates (dispatch.py): a worker's next experiment starts only when the
controller sends it the one after, so no worker sits on a 2-GPU run while a GPU it could use
idles.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from itertools import cycle
from typing import Any

from xdist.scheduler import LoadScheduling  # type: ignore[import-untyped]

from xstash_plugin.dispatch import Job, Plan, hand_next, place, start_now

# What every worker has queued: the item it runs and the next one.
PENDING_PER_WORKER = 2
# An aggregate's id: `<file>::<name>::mean[<group label>]`, or `<file>::<name>::mean`.
_AGGREGATE = re.compile(r"(.*)::mean(?:\[(.*)\])?")
# A seed run's id ends in `[<group label>-<key>=<seed>]` or `[<key>=<seed>]`.
_SEED_TAIL = re.compile(r"[^=\[\]]+=-?\d+\]")


def aggregate_dependencies(collection: Sequence[str]) -> dict[int, set[int]]:
    """For each aggregate's index in ``collection``, the indices of its seeds there.

    The aggregate ``<name>::mean[<label>]`` depends on the items ``<name>[<label>-<key>=<n>]``,
    and ``<name>::mean`` on ``<name>[<key>=<n>]`` (see
    :meth:`xstash_plugin.config.seeds.Seeding.labels`). Where a label could be read two ways
    (a swept value holding ``-``), a seed may count for two aggregates: that only makes one
    wait longer.
    """
    groups: dict[str, int] = {}
    for index, nodeid in enumerate(collection):
        match = _AGGREGATE.fullmatch(nodeid)
        if match is not None:
            name, label = match.groups()
            groups[f"{name}[{label}]" if label is not None else name] = index
    deps: dict[int, set[int]] = {index: set() for index in groups.values()}
    if not groups:
        return deps
    for index, nodeid in enumerate(collection):
        if not nodeid.endswith("]") or index in deps:
            continue
        for cut, char in enumerate(nodeid):
            if char not in "[-" or not _SEED_TAIL.fullmatch(nodeid, cut + 1):
                continue
            group = nodeid[:cut] if char == "[" else nodeid[:cut] + "]"
            if group in groups:
                deps[groups[group]].add(index)
    return deps


class LongestFirstScheduling(LoadScheduling):  # type: ignore[misc]
    """``--dist load`` with round-robin start, a short queue per worker, and aggregates held
    back until their seeds are done."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.deps: dict[int, set[int]] = {}
        self.done: set[int] = set()
        self.gpus = 0  # with GPU-aware dispatch: the machine's GPUs, and each item's job
        self.jobs: dict[int, Job] = {}
        self.started: dict[Any, tuple[int, float]] = {}  # node -> its running item, since
        self.parked_since: dict[Any, float] = {}  # node -> since its next item waits
        self.waiting: dict[int, float] = {}  # item -> when it is due (dispatch.Plan)
        self.warm: set[Any] = set()  # nodes that have run something

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is not None:  # type: ignore[has-type]  # a new node joined later: top everyone up
            self._top_up()
            return
        if not self._check_nodes_have_same_collection():
            self.log("**Different tests collected, aborting run**")
            return
        collection: list[str] = next(iter(self.node2collection.values()))
        self.collection = collection
        self.pending[:] = range(len(collection))
        self.deps = aggregate_dependencies(collection)
        for index, upstreams in self._needs(collection).items():
            self.deps.setdefault(index, set()).update(upstreams)
        if not collection:
            return
        self._plan_gpus(collection)
        if self.gpus:
            self._dispatch()
            return
        nodes = cycle(self.nodes)
        for _ in range(min(len(self.pending), PENDING_PER_WORKER * len(self.nodes))):
            self._send_next(next(nodes))
        self._top_up()

    def _needs(self, collection: list[str]) -> dict[int, set[int]]:
        """Downstream experiments wait for their upstreams (xstash.needs)."""
        from xstash_plugin.run.needs_run import needs_dependencies

        state = self._state()
        return needs_dependencies(state, collection) if state is not None else {}

    def _state(self) -> Any:
        from xstash_plugin.session import STATE_KEY

        stash = getattr(self.config, "stash", None)  # None: a bare config (the unit tests')
        return stash.get(STATE_KEY, None) if stash is not None else None

    def _plan_gpus(self, collection: list[str]) -> None:
        """GPU-aware dispatch when experiments ask for this machine's GPUs."""
        from xstash_plugin.run.demands import gpu_jobs

        state = self._state()
        planned = gpu_jobs(state, collection) if state is not None else None
        if planned is not None:
            self.gpus, self.jobs = planned

    def _ready(self, index: int, node: Any) -> bool:
        """Whether item ``index`` may go to ``node`` now: any item but an aggregate; an
        aggregate once each of its seeds is done or queued ahead of it on ``node``."""
        deps = self.deps.get(index)
        if deps is None:
            return True
        queued = self.node2pending[node]
        return all(dep in self.done or dep in queued for dep in deps)

    def _send_next(self, node: Any) -> bool:
        for position, index in enumerate(self.pending):
            if self._ready(index, node):
                del self.pending[position]
                self.node2pending[node].append(index)
                node.send_runtest_some([index])
                return True
        return False

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        self._top_up()

    def _top_up(self) -> None:
        """Fill every worker's queue; stop the workers once nothing is left to send."""
        if self.gpus:
            self._dispatch()
            return
        live = [node for node in self.nodes if not node.shutting_down]
        for node in live:
            while len(self.node2pending[node]) < PENDING_PER_WORKER and self._send_next(node):
                pass
        if not self.pending:
            for node in live:
                node.shutdown()
            return
        if live and all(len(self.node2pending[node]) < PENDING_PER_WORKER for node in live):
            # Every worker waits for a next item, and what is left are aggregates whose seeds
            # are queued on different workers: let all workers but one run their last item
            # and leave; the aggregates then go to the one that stays.
            keeper = max(live, key=lambda node: len(self.node2pending[node]))
            for node in live:
                if node is not keeper and self.node2pending[node]:
                    node.shutdown()

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        self.done.add(item_index)
        if self.started.get(node, (None,))[0] == item_index:
            del self.started[node]
            if len(self.node2pending[node]) > 1:  # its next one waits for the go
                self.parked_since[node] = time.monotonic()
        super().mark_test_complete(node, item_index, duration)

    def remove_node(self, node: Any) -> str | None:
        pending = self.node2pending.get(node) or []
        if pending:
            self.done.add(pending[0])  # the item its crash ended: it is reported as failed
        self.started.pop(node, None)
        self.parked_since.pop(node, None)
        crashed: str | None = super().remove_node(node)
        return crashed

    # --- GPU-aware dispatch (dispatch.py) -------------------------------------------------

    @property
    def tests_finished(self) -> bool:
        """Not while a worker still waits with an experiment for its GPUs: xdist would tell
        every worker to stop, which starts all those at once, each then waiting in the slot
        table in arrival order instead of going when the model says it fits."""
        if self.gpus and any(
            len(pending) == 1 and node not in self.started and not node.shutting_down
            for node, pending in self.node2pending.items()
        ):
            return False
        finished: bool = super().tests_finished
        return finished

    def _model(self, now: float) -> Plan:
        """The controller's picture of the machine, from what each worker was sent."""
        plan = Plan(self.gpus, waiting=self.waiting)
        for node, (index, since) in sorted(self.started.items(), key=lambda kv: kv[1][1]):
            job = self.jobs[index]
            plan.start(node, job, since, place(plan.room, job.gpus) or (), ends=now)
            if len(self.node2pending[node]) > 1:
                plan.after[node] = self.jobs[self.node2pending[node][1]]
        for node in self.nodes:
            pending = self.node2pending[node]
            if node in self.started or node.shutting_down:
                continue
            if pending:
                plan.parked[node] = (self.jobs[pending[0]], self.parked_since.get(node, now))
            else:
                plan.idle.append(node)
        # Workers that have run something first: their tools' preload servers are warm.
        plan.idle.sort(key=lambda node: node not in self.warm)
        return plan

    def _dispatch(self) -> None:
        """Start what fits now; hand each started worker the experiment to run after."""
        now = time.monotonic()
        plan = self._model(now)
        queue = [self.jobs[i] for i in self.pending if self.deps.get(i, set()) <= self.done]
        started: list[tuple[Any, Job]] = start_now(plan, now, queue)
        for node, job in started:
            if not self.node2pending[node]:
                self._hand(node, job.index)
            self.started[node] = (job.index, now)
            self.parked_since.pop(node, None)
            self.warm.add(node)
        for node, _job in started:
            after = hand_next(plan, now, node, queue)
            index = after.index if after is not None else self._fallback(node)
            if index is None and self.pending and not self._others_stay(node):
                # The last worker that stays: what is left waits for what it runs. Its own
                # experiment waits too, until it can be handed one of those.
                del self.started[node]
                self.parked_since[node] = now
                continue
            if index is None:
                node.shutdown()  # nothing it could take: it runs its experiment and leaves
                continue
            self._hand(node, index)
            if after is None:  # a fallback: the plan must know it, and no other worker get it
                plan.after[node] = self.jobs[index]
                if self.jobs[index] in queue:
                    queue.remove(self.jobs[index])
        if not self.pending:
            for node in self.nodes:
                if not self.node2pending[node] and not node.shutting_down:
                    node.shutdown()

    def _others_stay(self, node: Any) -> bool:
        return any(other is not node and not other.shutting_down for other in self.nodes)

    def _hand(self, node: Any, index: int) -> None:
        self.pending.remove(index)
        self.node2pending[node].append(index)
        node.send_runtest_some([index])

    def _fallback(self, node: Any) -> int | None:
        """A next item for ``node`` when the model gives it none: the shortest it may take."""
        ready = [index for index in self.pending if self._ready(index, node)]
        return ready[-1] if ready else None
