"""pytest-xdist scheduling that keeps longest-first ordering intact (imported only under xdist).

xdist's ``load`` scheduler starts each worker with a chunk of *consecutive* items (a quarter of
its share), which keeps fixture setups together for unit tests, but with experiments ordered
longest first it gives all the long ones to the first worker. This scheduler deals the first
items out round-robin and then keeps every worker at two items (the one it runs and the next,
which pytest needs to know for teardown): each worker takes the longest experiment left
whenever it frees up, which is greedy longest-processing-time-first scheduling.
"""

from __future__ import annotations

from itertools import cycle
from typing import Any

from xdist.scheduler import LoadScheduling  # type: ignore[import-untyped]

# What every worker has queued: the item it runs and the next one.
PENDING_PER_WORKER = 2


class LongestFirstScheduling(LoadScheduling):  # type: ignore[misc]
    """``--dist load`` with round-robin start and a short queue per worker."""

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is not None:  # type: ignore[has-type]  # a new node joined later: top everyone up
            for node in self.nodes:
                self.check_schedule(node)
            return
        if not self._check_nodes_have_same_collection():
            self.log("**Different tests collected, aborting run**")
            return
        collection: list[str] = next(iter(self.node2collection.values()))
        self.collection = collection
        self.pending[:] = range(len(collection))
        if not collection:
            return
        nodes = cycle(self.nodes)
        for _ in range(min(len(self.pending), PENDING_PER_WORKER * len(self.nodes))):
            self._send_tests(next(nodes), 1)
        if not self.pending:
            for node in self.nodes:
                node.shutdown()

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        if node.shutting_down:
            return
        if not self.pending:
            node.shutdown()
            return
        missing = PENDING_PER_WORKER - len(self.node2pending[node])
        if missing > 0:
            self._send_tests(node, missing)
