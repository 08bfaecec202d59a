"""Local resource slots: runs of the local launcher get GPUs, CPUs and memory of their own.

**Inventory** (:func:`detect`): GPUs from ``nvidia-smi`` (none without it), bounded by
``CUDA_VISIBLE_DEVICES`` when set; CPUs from ``os.sched_getaffinity``; memory from
``/proc/meminfo`` (MemTotal: the same in every xdist worker). The ini values ``xstash_gpus``
(``0,1,2,3`` or ``none``), ``xstash_cpus`` and ``xstash_mem`` (``16G``) replace what is
detected.

**Policy.** Only runs whose resources (the config's ``xstash.resources`` over the tool's) name
``gpus``, ``cpus`` or ``mem`` take part; the others are not limited and their environment is
left as it is (a GPU run written before slots keeps seeing every GPU). A run takes exactly
what it declares: no ``cpus``, no CPUs counted (and no thread variables set); ``gpus: 0`` is
an explicit "no GPU" (``CUDA_VISIBLE_DEVICES=""``). GPUs are whole: a fractional ``gpus`` is
refused at collection (config/resources.py).

**Table.** ``<output root>/.xstash/slots/table.json``, guarded by ``table.lock`` (filelock),
shared by every xdist worker and every session on the output root::

    {"held":  [{"ticket", "gpus": ["0", "2"], "cpus": 4, "mem": bytes, "pid", "identity",
                "run_dir", "since"}],
     "queue": [{"ticket", "gpus": 2, "cpus": 4, "mem": bytes, "pid", "identity", "run_dir",
                "since"}]}

**Fairness.** A run that cannot start joins ``queue`` (arrival order) and polls every 0.2 s.
The queue is served in arrival order with bounded overtaking: walking it, a waiter that fits
what is free takes it (later ones get only what is left); one that does not fit may be
overtaken by later waiters that fit, but at most ``OVERTAKES`` (4) times (``passed`` counts
them), after which it *reserves* what is free of what it needs, so later runs get only what
is left beside it. A 2-GPU run thus never waits forever behind a stream of 1-GPU runs (the
GPUs it waits for are kept for it as they free up), while a GPU is not left idle for it
while it still has to wait for another one anyway.

Entries (held or queued) whose process is dead (pid and start time, see run/stale.py) are
dropped on every poll: a SIGKILLed pytest worker does not keep its GPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xstash_plugin.config.resources import mem_megabytes
from xstash_plugin.errors import ConfigError
from xstash_plugin.run.stale import is_alive, process_identity

if TYPE_CHECKING:
    import pytest

POLL_SECONDS = 0.2
OVERTAKES = 4  # how often a waiting run may be overtaken before it reserves (see Fairness)
MiB = 1024 * 1024
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
GPU_VARS = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=index,uuid,memory.total", "--format=csv,noheader")
INI = {
    "xstash_gpus": "GPUs local runs share, as CUDA_VISIBLE_DEVICES names them ('0,1,2,3'), "
    "or 'none' (default: detected with nvidia-smi)",
    "xstash_cpus": "CPUs local runs share (default: this process's CPU affinity)",
    "xstash_mem": "memory local runs share, e.g. 64G (default: MemTotal in /proc/meminfo)",
}


def addoption(parser: pytest.Parser) -> None:
    """The ini values that replace the detected inventory."""
    for name, help in INI.items():
        parser.addini(name, help=help, default="")


# --- inventory ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inventory:
    """What local runs share: GPU names (as CUDA_VISIBLE_DEVICES takes them), CPUs, bytes."""

    gpus: tuple[str, ...]
    cpus: int
    mem: int

    def describe(self) -> str:
        gpus = ",".join(self.gpus) if self.gpus else "none"
        return f"GPUs {gpus} ({len(self.gpus)}), {self.cpus} CPUs, {self.mem // MiB} MiB memory"


def parse_nvidia_smi(text: str) -> list[tuple[str, str]]:
    """``(index, uuid)`` per line of nvidia-smi's CSV (see NVIDIA_SMI)."""
    found = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 2 and fields[0].isdigit():
            found.append((fields[0], fields[1]))
    return found


def bound_by_visible(gpus: list[tuple[str, str]], visible: str | None) -> tuple[str, ...]:
    """The indices ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs, in its order) leaves; all
    of them when it is unset."""
    if visible is None:
        return tuple(index for index, _ in gpus)
    kept: list[str] = []
    for name in (v.strip() for v in visible.split(",")):
        match = [i for i, u in gpus if name in (i, u) or (name and u.startswith(name))]
        if not match:
            break  # CUDA stops at the first invalid entry ("-1" hides every GPU)
        if match[0] not in kept:
            kept.append(match[0])
    return tuple(kept)


def detect_gpus(
    environ: Mapping[str, str], run: Callable[..., Any] = subprocess.run
) -> tuple[str, ...]:
    try:
        done = run(list(NVIDIA_SMI), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    if done.returncode != 0:
        return ()
    return bound_by_visible(parse_nvidia_smi(done.stdout), environ.get("CUDA_VISIBLE_DEVICES"))


def detect_mem(meminfo: Path = Path("/proc/meminfo")) -> int:
    fields: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[name] = int(parts[0]) * 1024  # kB
    except OSError:
        pass
    return fields.get("MemTotal") or 0  # not MemAvailable: every xdist worker must agree


def detect(gpus: tuple[str, ...] | None, cpus: int | None, mem: int | None) -> Inventory:
    """The inventory: the given values (ini), the rest detected."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Inventory(
        gpus=detect_gpus(os.environ) if gpus is None else gpus,
        cpus=cpus or 1,
        mem=detect_mem() if mem is None else mem,
    )


def parse_gpus(raw: str) -> tuple[str, ...]:
    """``0,1,2,3`` -> ('0', '1', '2', '3'); ``none`` -> ()."""
    text = raw.strip()
    if text.lower() in ("none", ""):
        return ()
    names = tuple(name.strip() for name in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"{raw!r} is not a list of GPUs: write 0,1,2,3 or none")
    return names


def parse_cpus(raw: str) -> int:
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(f"{raw!r} is not a number of CPUs (a whole number, at least 1)")
    return int(raw)


def parse_mem(raw: str) -> int:
    """Bytes; written as resources write memory (``16G``, ``500M``; a bare number is MiB)."""
    text = raw.strip()
    return mem_megabytes(int(text) if text.isdigit() else text) * MiB


# --- what a run asks for --------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    """A run's request: ``gpus`` None when it named none (its GPU variables stay as they are)."""

    gpus: int | None = None
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


class NeverFits(OSError):
    """A request larger than the whole inventory (collection should have refused it)."""


@dataclass(frozen=True)
class Grant:
    """What a run holds until :meth:`SlotTable.release`."""

    ticket: str
    gpus: tuple[str, ...] | None  # None: it asked for none (GPU variables untouched)
    cpus: int
    mem: int

    def as_dict(self) -> dict[str, Any]:
        """For the run record."""
        return {"gpus": list(self.gpus or ()), "cpus": self.cpus, "mem": self.mem}

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
        with self._threads, self._lock:
            try:
                table = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                table = {}
            table = {"held": list(table.get("held", [])), "queue": list(table.get("queue", []))}
            for key in ("held", "queue"):  # dead pytest processes hold nothing
                table[key] = [e for e in table[key] if is_alive(e.get("pid"), e.get("identity"))]
            yield table
            scratch = self.path.with_name(f"table.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            scratch.write_text(json.dumps(table, indent=1), encoding="utf-8")
            os.replace(scratch, self.path)

    def acquire(self, want: Want, run_dir: Path | str = "") -> Grant:
        """Block until ``want`` is free (see Fairness), then hold it; :class:`NeverFits` at
        once if it never can be."""
        problem = shortfall(want, self.inventory)
        if problem is not None:
            raise NeverFits(problem)
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
                        table["held"].append(held)
                        break
                time.sleep(self.poll)
        except BaseException:  # Ctrl-C while waiting: leave the queue
            self._forget(str(entry["ticket"]))
            raise
        chosen = tuple(gpus) if want.gpus is not None else None
        return Grant(str(entry["ticket"]), chosen, want.cpus, want.mem)

    def _serve(
        self, table: dict[str, list[dict[str, Any]]], entry: dict[str, Any]
    ) -> list[str] | None:
        """The GPUs ``entry`` gets now (it leaves the queue), or None (it waits, queued)."""
        ticket = entry["ticket"]
        queue = table["queue"]
        if not any(q["ticket"] == ticket for q in queue):
            queue.append(entry)
        busy = {g for held in table["held"] for g in held["gpus"]}
        free_gpus = [g for g in self.inventory.gpus if g not in busy]
        cpus = self.inventory.cpus - sum(int(h["cpus"]) for h in table["held"])
        mem = self.inventory.mem - sum(int(h["mem"]) for h in table["held"])
        passed: list[dict[str, Any]] = []  # earlier waiters this one would overtake
        for waiter in queue:  # arrival order
            need = int(waiter["gpus"] or 0)
            fits = need <= len(free_gpus) and waiter["cpus"] <= cpus and waiter["mem"] <= mem
            if waiter["ticket"] == ticket:
                if not fits:
                    return None
                for earlier in passed:
                    earlier["passed"] = int(earlier.get("passed", 0)) + 1
                table["queue"] = [q for q in queue if q["ticket"] != ticket]
                return free_gpus[:need]
            if not fits and int(waiter.get("passed", 0)) < self.overtakes:
                passed.append(waiter)  # it may be overtaken: it keeps nothing yet
                continue
            # It takes this on its next poll, or (overtaken enough) reserves what is free of it.
            free_gpus = free_gpus[need:]
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
    want = Want.of({**experiment.tool.resources, **experiment.resources})
    if want is None:
        return None
    table = table_for(state.xstash_dir, inventory_of(state.settings))
    return SlotPlan(table, want)


def local_misfit(experiment: Any, settings: Any, launcher: str) -> ConfigError | None:
    """The collection error of an experiment the local launcher could never start here (its
    resources exceed the machine's); None when it fits or runs elsewhere."""
    if launcher != "local":
        return None
    want = Want.of({**experiment.tool.resources, **experiment.resources})
    if want is None:  # not limited: no need to look at the machine (nvidia-smi) at all
        return None
    problem = shortfall(want, inventory_of(settings))
    if problem is None:
        return None
    what, _, _ = problem.partition(" (the local launcher; ")
    if set(experiment.resources) & {"gpus", "cpus", "mem"}:
        path, line = experiment.config_path, experiment.resources_line or experiment.line
    else:
        path, line = experiment.tool.meta_path, experiment.tool.line
    fix = (
        "ask for less, run it on a cluster (launcher: slurm), or, if this machine was detected "
        "wrongly, set xstash_gpus / xstash_cpus / xstash_mem in the ini file"
    )
    return ConfigError(path, line, what, fix)
