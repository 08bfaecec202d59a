"""Packed allocations: many short experiments inside a few SLURM jobs.

For experiments shorter than the scheduler's own overhead, one job each is mostly waiting. A
pack is one allocation (one sbatch) that runs its experiments itself, on its node, several at a
time: each takes its CPUs/GPUs/memory from the local slot table (launchers/slots.py) sized to
what the allocation got, runs exactly as a local run does (same command, environment, timeout,
process-tree kill, ``stdout.log``/``stderr.log`` in its own run directory) and leaves its
result in ``pack-result.json`` there. The session waits for each experiment's result file; when
the allocation ends without one (its time limit, a node failure, scancel), that experiment
ends ``error`` with the allocation's state as the reason, and can be run again or resumed with
``--xstash-reuse``.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstash_plugin.fsutil import atomic_write
from xstash_plugin.launchers.base import RunRequest, RunResult
from xstash_plugin.launchers.slurm import (
    FINAL_STATES,
    POLL_SECONDS,
    VANISHED_SECONDS,
    SlurmJob,
    job_state,
)

RESULT_NAME = "pack-result.json"
# Set when SLURM signals the allocation's end (time limit, scancel, preemption): a tool that
# ends after that was killed with it, and its result says so.
ENDING = threading.Event()
STATE_TTL = 1.0  # seconds one answer of sacct serves every experiment of a pack


@dataclass(frozen=True)
class PackTask:
    """One experiment of a pack, as plain (picklable) data."""

    argv: tuple[str, ...]
    cwd: str
    changed: dict[str, str]  # its environment, relative to the job's (see job_environment)
    removed: tuple[str, ...]
    run_dir: str
    timeout: float | None
    grace: float
    cookie: str
    gpus: int | None = None
    cpus: int = 1
    mem: int = 0  # bytes


def _allocation_inventory() -> Any:
    """What this allocation got: SLURM's CPUs on the node, its GPUs (CUDA_VISIBLE_DEVICES),
    its memory."""
    from xstash_plugin.launchers.slots import MiB, detect

    cpus = os.environ.get("SLURM_CPUS_ON_NODE", "")
    mem = os.environ.get("SLURM_MEM_PER_NODE", "")
    return detect(
        None,
        int(cpus) if cpus.isdigit() else None,
        int(mem) * MiB if mem.isdigit() else None,
    )


def _run_one(task: PackTask, table: Any) -> None:
    from xstash_plugin.launchers.local import LocalRun
    from xstash_plugin.launchers.slots import SlotPlan, Want

    env = dict(os.environ)
    for key in task.removed:
        env.pop(key, None)
    env.update(task.changed)
    request = RunRequest(
        argv=task.argv,
        cwd=Path(task.cwd),
        env=env,
        run_dir=Path(task.run_dir),
        timeout=task.timeout,
        grace=task.grace,
        cookie=task.cookie,
    )
    want = Want(gpus=task.gpus, cpus=max(1, task.cpus), mem=task.mem)
    outcome: dict[str, Any]
    try:
        result = LocalRun(request, None, None, None, SlotPlan(table, want)).wait()
        outcome = {
            "returncode": result.returncode,
            "started": result.started,
            "ended": result.ended,
            "pid": result.pid,
            "timed_out": result.timed_out,
            "escaped": list(result.escaped),
            "slots": result.slots,
            "host": os.uname().nodename,
        }
        if ENDING.is_set():
            outcome["allocation_ended"] = True
    except Exception as exc:  # could not start (a missing interpreter, slots that never fit)
        outcome = {"returncode": None, "error": f"{type(exc).__name__}: {exc}"}
    atomic_write(Path(task.run_dir) / RESULT_NAME, json.dumps(outcome))


def run_pack(tasks: list[PackTask]) -> int:
    """On the allocation's node: run every task, as many at a time as the allocation's
    resources allow, in the order given (longest first); the number of tasks run."""
    from xstash_plugin.launchers.slots import SlotTable

    inventory = _allocation_inventory()
    # SLURM's SIGTERM at the allocation's end reaches every process of the job; the tools die
    # of it, this process notes it and stays to write their results (SIGKILL follows KillWait
    # seconds later).
    signal.signal(signal.SIGTERM, lambda signum, frame: ENDING.set())
    with tempfile.TemporaryDirectory(prefix="xstash-pack-") as scratch:
        table = SlotTable(Path(scratch), inventory, poll=0.05)
        with ThreadPoolExecutor(max_workers=max(1, inventory.cpus)) as pool:
            list(pool.map(lambda task: _run_one(task, table), tasks))
    return len(tasks)


# --- the session's side ---------------------------------------------------------------------


class PackJob:
    """A submitted allocation; its state is asked once per STATE_TTL for all its runs."""

    def __init__(self, job: Any, submitted: float | None = None) -> None:
        self.job = job
        self.submitted = submitted or time.time()
        self._state = "PENDING"
        self._asked = 0.0
        self._unknown_since: float | None = None

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def state(self) -> str:
        if self._state in FINAL_STATES or time.monotonic() - self._asked < STATE_TTL:
            return self._state
        self._asked = time.monotonic()
        state = job_state(self.job)
        if state == "UNKNOWN":
            self._unknown_since = self._unknown_since or time.monotonic()
            if time.monotonic() - self._unknown_since > VANISHED_SECONDS:
                state = "VANISHED"
        else:
            self._unknown_since = None
        self._state = state
        return state

    @property
    def log(self) -> Path | None:
        path = Path(self.job.paths.stderr)
        return path if path.exists() else None

    def cancel(self) -> None:
        from xstash_plugin.launchers.slurm_batch import cancel

        cancel([self.job_id])


def read_result(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / RESULT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class PackedRun:
    """One experiment of a pack, as the session waits for it."""

    def __init__(self, pack: PackJob, request: RunRequest) -> None:
        self.pack = pack
        self.request = request
        self.error: str | None = None  # it could not start inside the allocation

    @property
    def job_id(self) -> str:
        return self.pack.job_id

    def wait(self) -> RunResult:
        run_dir = self.request.run_dir
        while True:
            data = read_result(run_dir)
            state = None if data is not None else self.pack.state()
            if data is None and state in FINAL_STATES | {"VANISHED"}:
                data = read_result(run_dir)  # it may have finished just before the end
                if data is None:
                    return RunResult(
                        returncode=None,
                        started=self.pack.submitted,
                        ended=time.time(),
                        job_id=self.job_id,
                        slurm_state=state,
                        log=self.pack.log,
                    )
            if data is not None and data.get("allocation_ended"):
                return self._lost()
            if data is not None:
                return self._result(data)
            waited = time.time() - self.pack.submitted
            time.sleep(min(POLL_SECONDS * (1 + waited / 20), 5.0))

    def _lost(self) -> RunResult:
        """The tool died with its allocation: wait (bounded) for SLURM to say how that ended."""
        deadline = time.monotonic() + 120
        state = self.pack.state()
        while state not in FINAL_STATES | {"VANISHED"} and time.monotonic() < deadline:
            time.sleep(1.0)
            state = self.pack.state()
        return RunResult(
            returncode=None,
            started=self.pack.submitted,
            ended=time.time(),
            job_id=self.job_id,
            slurm_state=state if state in FINAL_STATES else "ENDED",
            log=self.pack.log,
        )

    def _result(self, data: dict[str, Any]) -> RunResult:
        self.error = data.get("error")
        now = time.time()
        code = data.get("returncode")
        return RunResult(
            returncode=int(code) if isinstance(code, int) else None,
            started=float(data.get("started") or now),
            ended=float(data.get("ended") or now),
            pid=int(data.get("pid") or 0),
            timed_out=bool(data.get("timed_out")),
            escaped=tuple(data.get("escaped") or ()),
            job_id=self.job_id,
            slurm_state="COMPLETED",
            slots=data.get("slots"),
        )

    def cancel(self) -> None:
        self.pack.cancel()


Submitted = SlurmJob | PackedRun  # what a SLURM run waits for


def submit_pack(tasks: list[PackTask], folder: Path, params: dict[str, Any]) -> PackJob:
    """One sbatch: an allocation that runs ``tasks`` (see :func:`run_pack`)."""
    import submitit

    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
    executor.update_parameters(**params)
    return PackJob(executor.submit(run_pack, tasks))


def attach_pack(
    job_id: str, folder: str, submitted: float | None, request: RunRequest
) -> PackedRun:
    """A detached session's packed experiment, from its record."""
    import submitit

    return PackedRun(PackJob(submitit.SlurmJob(folder=folder, job_id=job_id), submitted), request)
