"""Local resource slots: runs of the local launcher get GPUs, CPUs and memory of their own.

**Inventory**: launchers/inventory.py (nvidia-smi, the CPU affinity, /proc/meminfo, or the ini
values ``xstash_gpus``, ``xstash_cpus``, ``xstash_mem``).

**Policy.** Only runs whose resources (the config's ``xstash.resources`` over the tool's) name
``gpus``, ``cpus`` or ``mem`` take part; the others are not limited and their environment is
left as it is (a GPU run written before slots keeps seeing every GPU). A run takes exactly
what it declares: no ``cpus``, no CPUs counted (and no thread variables set); ``gpus: 0`` is
an explicit "no GPU" (``CUDA_VISIBLE_DEVICES=""``). A ``gpus`` below one (``0.5``) is a
share of one GPU: runs with shares may use the same GPU while their shares add up to at most
1, and take the GPU already shared the most that still has room (whole GPUs stay whole for
the runs that need them); a run of whole GPUs never shares one. SLURM allocates whole GPUs
only: a share is refused at collection for an experiment that runs there.

**Table.** ``<output root>/.xstash/slots/table.json``, guarded by ``table.lock`` (filelock),
shared by every xdist worker and every session on the output root::

    {"held":  [{"ticket", "gpus": ["0", "2"], "cpus": 4, "mem": bytes, "pid", "identity",
                "run_dir", "since"}],  (and "share": 0.5 for a share of its one GPU)
     "queue": [{"ticket", "gpus": 2, "cpus": 4, "mem": bytes, "pid", "identity", "run_dir",
                "since"}]}

It is rewritten only when it changes, so a waiting run looks again as soon as it does (a run
ended, another arrived), and at least every 0.2 s (a dead holder changes nothing on disk).

**Fairness.** The queue is served in arrival order with bounded overtaking: walking it, a
waiter that fits what is free takes it (later ones get only what is left); one that does not
fit may be overtaken by later waiters that fit, but at most ``OVERTAKES`` (4) times
(``passed`` counts them), after which it *reserves* the GPUs with the most room (free ones
first; a shared GPU it reserves takes no new share), so later runs get only what is left
beside it. A 2-GPU run thus never waits forever behind a stream of 1-GPU runs (the GPUs it
waits for are kept for it as they free up), while a GPU is not left idle for it while it
still has to wait for another one anyway.

Entries (held or queued) whose process is dead (pid and start time, see run/stale.py) are
dropped on every look: a SIGKILLed pytest worker does not keep its GPUs.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstash_plugin.errors import ConfigError
from xstash_plugin.launchers.inventory import (
    Inventory,
    MiB,
    addoption,
    auto_workers,
    bound_by_visible,
    detect,
    detect_gpus,
    parse_cpus,
    parse_gpus,
    parse_mem,
    parse_nvidia_smi,
)
from xstash_plugin.run.stale import is_alive, process_identity

POLL_SECONDS = 0.2
WATCH_SECONDS = 0.02  # how often a waiting run looks whether the table changed (a stat)
EPS = 1e-9  # shares are added as floats: 0.1 + 0.2 + 0.7 still fits one GPU
OVERTAKES = 4  # how often a waiting run may be overtaken before it reserves (see Fairness)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
GPU_VARS = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
__all__ = [  # the inventory's names, also to be imported from here
    "Inventory",
    "MiB",
    "addoption",
    "auto_workers",
    "bound_by_visible",
    "detect",
    "detect_gpus",
    "parse_cpus",
    "parse_gpus",
    "parse_mem",
    "parse_nvidia_smi",
]


# --- what a run asks for --------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    """A run's request: ``gpus`` None when it named none (its GPU variables stay as they are),
    below 1 for a share of one GPU."""

    gpus: float | None = None
    cpus: int = 0
    mem: int = 0  # bytes

    @classmethod
    def of(cls, resources: Mapping[str, Any]) -> Want | None:
        """From checked resources (``mem`` in MiB); None: the run does not take part."""
        if not any(key in resources for key in ("gpus", "cpus", "mem")):
            return None
        return cls(
            gpus=resources.get("gpus"),
            cpus=int(resources.get("cpus", 0)),
            mem=int(resources.get("mem", 0)) * MiB,
        )


def check_fits(resources: Mapping[str, Any], inventory: Inventory) -> str | None:
    """Why a run with these (checked) resources can never start here; None if it can."""
    want = Want.of(resources)
    return None if want is None else shortfall(want, inventory)


def shortfall(want: Want, inventory: Inventory) -> str | None:
    short = []
    if (want.gpus or 0) > len(inventory.gpus):
        short.append(f"gpus: {want.gpus}")
    if want.cpus > inventory.cpus:
        short.append(f"cpus: {want.cpus}")
    if want.mem > inventory.mem:
        short.append(f"mem: {want.mem // MiB} MiB")
    if not short:
        return None
    return (
        f"resources ask for more than this machine has ({', '.join(short)}); it has "
        f"{inventory.describe()} (the local launcher; set xstash_gpus/xstash_cpus/xstash_mem "
        "in the ini file if detection is wrong, or use launcher: slurm)"
    )


def pick_gpus(need: float, room: dict[str, float]) -> list[str] | None:
    """The GPUs a request takes now, given what is left of each (``room``, in inventory order);
    None when they are not there. Whole GPUs: free ones, in inventory order. A share: the GPU
    with the least room that still has enough (shares gather on GPUs already shared)."""
    if 0 < need < 1:
        fitting = [g for g in room if room[g] >= need - EPS]
        return [min(fitting, key=lambda g: room[g])] if fitting else None
    free = [g for g in room if room[g] >= 1 - EPS]
    return free[: int(need)] if len(free) >= need else None


def take_gpus(need: float, room: dict[str, float], gpus: list[str] | None) -> None:
    """Count ``gpus`` as taken by a waiter served before the others; without them (it does not
    fit), it reserves the GPUs with the most room: nothing new goes there until it fits."""
    if gpus is not None and 0 < need < 1:
        room[gpus[0]] -= need
        return
    if gpus is None:
        count = 1 if 0 < need < 1 else int(need)
        gpus = sorted(room, key=lambda g: -room[g])[:count]
    for gpu in gpus:
        room[gpu] = 0.0


class NeverFits(OSError):
    """A request larger than the whole inventory (collection should have refused it)."""


@dataclass(frozen=True)
class Grant:
    """What a run holds until :meth:`SlotTable.release`."""

    ticket: str
    gpus: tuple[str, ...] | None  # None: it asked for none (GPU variables untouched)
    cpus: int
    mem: int
    share: float | None = None  # a share of its one GPU (gpus: 0.5)

    def as_dict(self) -> dict[str, Any]:
        """For the run record."""
        held = {"gpus": list(self.gpus or ()), "cpus": self.cpus, "mem": self.mem}
        return {**held, "gpu_share": self.share} if self.share else held

    def environ(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with the grant's variables; a thread count ``env`` already sets (the user's,
        the tool's) stays."""
        out = dict(env)
        if self.gpus is not None:
            for name in GPU_VARS:
                out[name] = ",".join(self.gpus)
        if self.cpus:
            for name in THREAD_VARS:
                out.setdefault(name, str(self.cpus))
        return out


# --- the table ------------------------------------------------------------------------------


@dataclass
class SlotTable:
    """The allocation table of one output root (see the module's docstring)."""

    folder: Path  # <output root>/.xstash/slots
    inventory: Inventory
    poll: float = POLL_SECONDS
    overtakes: int = OVERTAKES
    _lock: Any = field(default=None, init=False, repr=False)
    # The file lock keeps other processes out; this one, the other threads of this process
    # (a FileLock shared by threads is re-entered by each of them, not waited for).
    _threads: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def path(self) -> Path:
        return self.folder / "table.json"

    @contextmanager
    def _locked(self) -> Iterator[dict[str, list[dict[str, Any]]]]:
        """The table, read under the lock; written back when the block ends normally."""
        if self._lock is None:
            from filelock import FileLock

            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(str(self.folder / "table.lock"), thread_local=False)
        with self._threads:
            self._lock.acquire(poll_interval=0.005)
            try:
                yield from self._update()
            finally:
                self._lock.release()

    def _update(self) -> Iterator[dict[str, list[dict[str, Any]]]]:
        try:
            text = self.path.read_text(encoding="utf-8")
            table = json.loads(text)
        except (OSError, ValueError):
            text, table = "", {}
        table = {"held": list(table.get("held", [])), "queue": list(table.get("queue", []))}
        for key in ("held", "queue"):  # dead pytest processes hold nothing
            table[key] = [e for e in table[key] if is_alive(e.get("pid"), e.get("identity"))]
        yield table
        new = json.dumps(table, indent=1)
        if new != text:  # unchanged, it is not rewritten: waiters look again on a change
            scratch = self.path.with_name(f"table.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            scratch.write_text(new, encoding="utf-8")
            os.replace(scratch, self.path)

    def acquire(self, want: Want, run_dir: Path | str = "") -> Grant:
        """Block until ``want`` is free (see Fairness), then hold it; :class:`NeverFits` at
        once if it never can be."""
        problem = shortfall(want, self.inventory)
        if problem is not None:
            raise NeverFits(problem)
        share = want.gpus if want.gpus is not None and 0 < want.gpus < 1 else None
        pid = os.getpid()
        entry = {
            "ticket": uuid.uuid4().hex,
            "gpus": want.gpus,
            "cpus": want.cpus,
            "mem": want.mem,
            "pid": pid,
            "identity": process_identity(pid),
            "run_dir": str(run_dir),
            "since": time.time(),
        }
        try:
            while True:
                with self._locked() as table:
                    gpus = self._serve(table, entry)
                    if gpus is not None:
                        held = {**entry, "gpus": list(gpus), "since": time.time()}
                        table["held"].append({**held, "share": share} if share else held)
                        break
                self._watch()
        except BaseException:  # Ctrl-C while waiting: leave the queue
            self._forget(str(entry["ticket"]))
            raise
        chosen = tuple(gpus) if want.gpus is not None else None
        return Grant(str(entry["ticket"]), chosen, want.cpus, want.mem, share)

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _watch(self) -> None:
        """Wait until the table changes (a release, an arrival), or ``poll`` seconds at most
        (a dead holder changes nothing on disk: it is found by looking)."""
        seen = self._stamp()
        deadline = time.monotonic() + self.poll
        while time.monotonic() < deadline:
            time.sleep(min(WATCH_SECONDS, self.poll))
            if self._stamp() != seen:
                return

    def _serve(
        self, table: dict[str, list[dict[str, Any]]], entry: dict[str, Any]
    ) -> list[str] | None:
        """The GPUs ``entry`` gets now (it leaves the queue), or None (it waits, queued)."""
        ticket = entry["ticket"]
        queue = table["queue"]
        if not any(q["ticket"] == ticket for q in queue):
            queue.append(entry)
        room = {g: 1.0 for g in self.inventory.gpus}  # what is left of each GPU
        for held in table["held"]:
            for gpu in held["gpus"]:
                if gpu in room:
                    room[gpu] -= float(held.get("share") or 1.0)
        cpus = self.inventory.cpus - sum(int(h["cpus"]) for h in table["held"])
        mem = self.inventory.mem - sum(int(h["mem"]) for h in table["held"])
        passed: list[dict[str, Any]] = []  # earlier waiters this one would overtake
        for waiter in queue:  # arrival order
            need = float(waiter["gpus"] or 0)
            gpus = pick_gpus(need, room)
            fits = gpus is not None and waiter["cpus"] <= cpus and waiter["mem"] <= mem
            if waiter["ticket"] == ticket:
                if not fits:
                    return None
                for earlier in passed:
                    earlier["passed"] = int(earlier.get("passed", 0)) + 1
                table["queue"] = [q for q in queue if q["ticket"] != ticket]
                return gpus
            if not fits and int(waiter.get("passed", 0)) < self.overtakes:
                passed.append(waiter)  # it may be overtaken: it keeps nothing yet
                continue
            # It takes this on its next look, or (overtaken enough) reserves it.
            take_gpus(need, room, gpus)
            cpus, mem = cpus - int(waiter["cpus"]), mem - int(waiter["mem"])
        return None

    def release(self, grant: Grant) -> None:
        self._forget(grant.ticket)

    def _forget(self, ticket: str) -> None:
        with self._locked() as table:
            for key in ("held", "queue"):
                table[key] = [e for e in table[key] if e["ticket"] != ticket]

    def holders(self) -> list[dict[str, Any]]:
        """The live entries holding slots now."""
        with self._locked() as table:
            return list(table["held"])


@dataclass(frozen=True)
class SlotPlan:
    """What a local launch needs to take slots: the table and the run's request."""

    table: SlotTable
    want: Want


_TABLES: dict[tuple[Path, Inventory], SlotTable] = {}


def table_for(xstash_dir: Path, inventory: Inventory) -> SlotTable:
    """The (per-process) table object of an output root's xstash folder."""
    key = (xstash_dir, inventory)
    if key not in _TABLES:
        _TABLES[key] = SlotTable(xstash_dir / "slots", inventory)
    return _TABLES[key]


_INVENTORIES: dict[tuple[Any, ...], Inventory] = {}


def inventory_of(settings: Any) -> Inventory:
    """The session's inventory (detected once per process) from ``Settings``."""
    key = (settings.gpus, settings.cpus, settings.mem)
    if key not in _INVENTORIES:
        _INVENTORIES[key] = detect(settings.gpus, settings.cpus, settings.mem)
    return _INVENTORIES[key]


def plan_for(run: Any) -> SlotPlan | None:
    """The slots a :class:`~xstash_plugin.run.run.Run` of the local launcher takes (None:
    it declares no gpus/cpus/mem and is not limited)."""
    experiment, state = run.experiment, run.state
    want = Want.of(experiment.all_resources)
    if want is None:
        return None
    table = table_for(state.xstash_dir, inventory_of(state.settings))
    return SlotPlan(table, want)


def local_misfit(experiment: Any, settings: Any, launcher: str) -> ConfigError | None:
    """The collection error of an experiment whose resources cannot be had where it runs:
    more than this machine has (the local launcher), or a share of a GPU on SLURM (which
    allocates whole GPUs); None when they can."""
    resources = experiment.all_resources
    if launcher != "local":
        gpus = resources.get("gpus")
        if not (isinstance(gpus, float) and 0 < gpus < 1):
            return None
        path, line = _declared_at(experiment, {"gpus"})
        what = (
            f"gpus: {gpus} is a share of one GPU, which only the local launcher gives; "
            f"{launcher} allocates whole GPUs"
        )
        return ConfigError(path, line, what, "ask for gpus: 1, or run it with launcher: local")
    want = Want.of(resources)
    if want is None:  # not limited: no need to look at the machine (nvidia-smi) at all
        return None
    problem = shortfall(want, inventory_of(settings))
    if problem is None:
        return None
    what, _, _ = problem.partition(" (the local launcher; ")
    fix = (
        "ask for less, run it on a cluster (launcher: slurm), or, if this machine was detected "
        "wrongly, set xstash_gpus / xstash_cpus / xstash_mem in the ini file"
    )
    return ConfigError(*_declared_at(experiment, {"gpus", "cpus", "mem"}), what, fix)


def _declared_at(experiment: Any, keys: set[str]) -> tuple[Any, int | None]:
    """Where ``keys`` of the resources are set: the config's ``resources`` line when it sets
    one of them, else the tool's entry in meta.yaml."""
    if set(experiment.resources) & keys:
        return experiment.config_path, experiment.resources_line or experiment.line
    return experiment.tool.meta_path, experiment.tool.line
