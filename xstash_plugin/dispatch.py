"""GPU-aware dispatch for the xdist controller: which experiment starts now, on which worker,
and which one each worker is handed to run next.

Why the controller has to plan: a pytest-xdist worker runs an item only once it has been
handed the next one (pytest needs it for teardown), so a worker's next experiment is fixed
while its current one still runs. Handed blindly (the longest left), a worker whose next
experiment asks for 2 GPUs while only 1 is free waits, holding nothing, and the free GPU idles
until some other worker frees up. Here the controller models the machine's GPUs (which run
holds which, each run's estimated end) and:

- **starts** an experiment only when its GPUs are free in that model. A worker's handed
  experiment starts when the controller sends the worker its successor, so until then it is
  *parked*, and a worker with nothing is *idle*;
- serves the waiting in order, *parked* ones first (by how long they have waited), then the
  queue longest first, and starts every one that fits: a 1-GPU run may start ahead of a 2-GPU
  run that does not fit yet. But once an experiment has been overtaken for longer than its own
  estimated duration, it is overtaken no more: it gets a reservation, the time at which, by the
  estimates, enough GPUs will be free for it, and later ones start ahead of it only when they
  end before then or use GPUs it will not need (EASY backfilling). So a 2-GPU run waits
  behind 1-GPU runs for at most about its own duration plus the longest running one;
- chooses each worker's successor by playing the model forward (same rule, estimated
  durations) to the moment that worker is next given something: the experiment that would
  start there then.

A GPU share (``gpus: 0.5``) is placed as the slot table places it (launchers/slots.py). The
workers' slot table stays the authority: should the model be wrong (a run outlives its
estimate, another session shares the GPUs), a run still waits there for its GPUs.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field

from xstash_plugin.launchers.slots import EPS

# How many events a look-ahead plays at most (a successor is usually found within a few).
LOOKAHEAD_EVENTS = 256
# How many waiting jobs that do not fit are looked at, at most, for one start (the rest of a
# long queue is not read: the cost of a decision does not grow with the suite).
SCAN_DEPTH = 64


@dataclass(frozen=True)
class Job:
    """One experiment to the planner: its collection index, GPUs held (a share below 1; 0 for
    none) and estimated seconds."""

    index: int
    gpus: float
    seconds: float


@dataclass
class Running:
    job: Job
    ends: float  # estimated
    held: tuple[int, ...]  # GPU positions


def place(room: list[float], need: float) -> tuple[int, ...] | None:
    """The GPUs ``need`` takes now (positions in ``room``, what is left of each GPU), or None.
    Whole GPUs: free ones, in order; a share: the GPU with the least room that has enough."""
    if need <= 0:
        return ()
    if need < 1:
        fitting = [g for g, left in enumerate(room) if left >= need - EPS]
        return (min(fitting, key=lambda g: room[g]),) if fitting else None
    free = [g for g, left in enumerate(room) if left >= 1 - EPS]
    return tuple(free[: int(need)]) if len(free) >= need else None


def _share(need: float) -> float:
    return need if need < 1 else 1.0


@dataclass
class Plan:
    """The controller's model of the machine: per worker what runs (until when), what it was
    handed next (``after``), what it waits to start (``parked``, since when), or nothing."""

    gpus: int
    running: dict[Hashable, Running] = field(default_factory=dict)
    after: dict[Hashable, Job] = field(default_factory=dict)
    parked: dict[Hashable, tuple[Job, float]] = field(default_factory=dict)
    idle: list[Hashable] = field(default_factory=list)
    # job index -> when it is due: first overtaken, plus its estimate (see start_now)
    waiting: dict[int, float] = field(default_factory=dict)
    room: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.room = [1.0] * self.gpus

    def copy(self) -> Plan:
        twin = Plan(self.gpus, dict(self.running), dict(self.after), dict(self.parked))
        twin.idle = list(self.idle)
        twin.waiting = dict(self.waiting)
        twin.room = list(self.room)
        return twin

    def start(
        self, worker: Hashable, job: Job, now: float, held: tuple[int, ...], ends: float = 0.0
    ) -> None:
        """``job`` starts on ``worker`` at ``now`` holding ``held``; it ends by its estimate
        (or at ``ends`` if later: a run that outlives its estimate ends any moment now)."""
        for g in held:
            self.room[g] -= _share(job.gpus)
        self.running[worker] = Running(job, max(now + job.seconds, ends), held)
        self.parked.pop(worker, None)
        if worker in self.idle:
            self.idle.remove(worker)

    def finish(self, worker: Hashable, now: float) -> None:
        """``worker``'s run ended: its GPUs are free; it is parked with what it was handed
        next, or idle."""
        done = self.running.pop(worker)
        for g in done.held:
            self.room[g] += _share(done.job.gpus)
        if worker in self.after:
            self.parked[worker] = (self.after.pop(worker), now)
        else:
            self.idle.append(worker)

    def reservation(self, now: float, need: float) -> tuple[float, float]:
        """When ``need`` will fit by the estimates, and how many GPUs beyond it will be
        free then (as a count; shares count as their size)."""
        room = list(self.room)
        for run in sorted(self.running.values(), key=lambda r: r.ends):
            if place(room, need) is not None:
                break
            for g in run.held:
                room[g] += _share(run.job.gpus)
            now = max(now, run.ends)
        return now, sum(room) - need


def start_now(plan: Plan, now: float, queue: list[Job]) -> list[tuple[Hashable, Job]]:
    """Start what the rule starts at ``now``: parked jobs (longest waiting first), then the
    queue (in its order) on idle workers, each that fits. Jobs overtaken for longer than their
    estimate come first, and the first of them that cannot start reserves: later ones only
    backfill. Updates ``plan`` and removes started jobs from ``queue``."""
    started: list[tuple[Hashable, Job]] = []
    shadow: tuple[float, float] | None = None
    passed: list[Job] = []  # did not fit: overtaken if a later one starts
    for worker, job in _candidates(plan, now, queue):
        due = _due(plan, job, now)
        if worker is None and not due and (not plan.idle or len(passed) >= SCAN_DEPTH):
            break
        held = place(plan.room, job.gpus) if worker is not None or plan.idle else None
        if held is None or (shadow is not None and not _backfills(job, now, shadow)):
            passed.append(job)
            if shadow is None and due:  # it keeps its GPUs' turn, worker or not
                shadow = plan.reservation(now, job.gpus)
            continue
        if shadow is not None and now + job.seconds > shadow[0]:
            shadow = (shadow[0], shadow[1] - job.gpus)  # it still holds them then
        target = worker if worker is not None else plan.idle[0]
        plan.start(target, job, now, held)
        plan.waiting.pop(job.index, None)
        for overtaken in passed:
            plan.waiting.setdefault(overtaken.index, now + overtaken.seconds)
        started.append((target, job))
    for _, job in started:
        if job in queue:
            queue.remove(job)
    return started


def _candidates(plan: Plan, now: float, queue: list[Job]) -> Iterator[tuple[Hashable | None, Job]]:
    """Parked jobs (longest waiting first), then the queue; those due first. Lazy: the
    queue is read only as far as it is looked at."""
    parked = [(w, job) for w, (job, _) in sorted(plan.parked.items(), key=lambda kv: kv[1][1])]
    due = {index for index, at in plan.waiting.items() if now >= at}
    if due:
        yield from ((w, job) for w, job in parked if job.index in due)
        yield from ((None, job) for job in queue if job.index in due)
    yield from ((w, job) for w, job in parked if job.index not in due)
    yield from ((None, job) for job in queue if job.index not in due)


def _due(plan: Plan, job: Job, now: float) -> bool:
    """Overtaken for longer than its own estimate: nothing may take its GPUs any more."""
    at = plan.waiting.get(job.index)
    return at is not None and now >= at


def _backfills(job: Job, now: float, shadow: tuple[float, float]) -> bool:
    until, spare = shadow
    return now + job.seconds <= until + EPS or job.gpus <= spare + EPS


def successor(
    plan: Plan, now: float, worker: Hashable, queue: Sequence[Job]
) -> tuple[Job, float] | None:
    """The job ``worker`` (now running something) should be handed next: the one the rule
    would start on it first, playing the estimates forward; and when that would be. None
    when, by the estimates, the others take everything left."""
    sim = plan.copy()
    left = list(queue)
    clock = now
    for _ in range(LOOKAHEAD_EVENTS):
        if not left or not sim.running:
            return None
        clock = max(clock, min(run.ends for run in sim.running.values()))
        for ended in [w for w, run in sim.running.items() if run.ends <= clock + EPS]:
            sim.finish(ended, clock)
            if ended == worker and worker in sim.idle:  # it takes the first that starts
                sim.idle.remove(worker)
                sim.idle.insert(0, worker)
        for started, job in start_now(sim, clock, left):
            if started == worker:
                return job, clock
    return (left[0], clock) if left else None


def hand_next(plan: Plan, now: float, worker: Hashable, queue: list[Job]) -> Job | None:
    """Choose ``worker``'s next job (:func:`successor`), take it from ``queue`` and count
    the jobs ahead of it there as overtaken from when it is expected to start."""
    chosen = successor(plan, now, worker, queue)
    if chosen is None:
        return None
    after, starts = chosen
    for ahead in queue[: queue.index(after)]:
        plan.waiting.setdefault(ahead.index, starts + ahead.seconds)
    queue.remove(after)
    plan.after[worker] = after
    return after
