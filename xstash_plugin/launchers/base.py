"""What every launcher shares: the request (what to run, where, for how long), the one result
type (how it ended), and the protocol local, preloaded and SLURM launches follow.

A launcher *launches* a request and hands back a :class:`Launched` run, whose ``wait`` gives
the :class:`RunResult` and whose ``cancel`` stops it. Local and preloaded runs start in
``launch`` and are waited for in ``wait``; a SLURM job is submitted in ``launch`` (the session
submits every job before it waits for any) and polled in ``wait``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# Under pytest-xdist a worker that does not stop is SIGKILLed 10 s after the controller's
# Ctrl-C (execnet interrupts it after 5 s): the tool's grace period must end well before that.
GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to start one run, and nothing about how it is judged."""

    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str]
    run_dir: Path
    live: bool = False  # also copy the output to our own stdout/stderr as it comes
    timeout: float | None = None  # seconds; then the whole process tree is killed
    grace: float = GRACE_SECONDS  # between SIGTERM and SIGKILL
    # In the tool's environment as XSTASH_RUN: every process of the run carries it, also one
    # that leaves the tool's process group (setsid, a daemon), which is how it is found.
    cookie: str = ""

    @property
    def stdout_path(self) -> Path:
        return self.run_dir / "stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.run_dir / "stderr.log"


@dataclass(frozen=True)
class RunResult:
    """How a run ended: ``returncode`` is negative for a signal, as in :mod:`subprocess`, and
    None when nobody knows it (a SLURM job that did not complete: see ``slurm_state``)."""

    returncode: int | None
    started: float
    ended: float
    pid: int = 0
    timed_out: bool = False
    escaped: tuple[str, ...] = ()  # processes that left the tool's group, killed at the end
    job_id: str | None = None  # SLURM
    slurm_state: str | None = None  # SLURM's final state: COMPLETED, TIMEOUT, FAILED, ...
    log: Path | None = None  # submitit's log of the job (SLURM's own messages land there)
    slots: dict[str, Any] | None = None  # local GPUs/CPUs/memory it held (launchers/slots.py)

    @property
    def duration(self) -> float:
        return self.ended - self.started


class Launched(Protocol):
    """A run that was launched."""

    def wait(self) -> RunResult: ...

    def cancel(self) -> None: ...


class Launcher(Protocol):
    """Starts (or submits) runs."""

    def launch(self, request: RunRequest) -> Launched: ...
