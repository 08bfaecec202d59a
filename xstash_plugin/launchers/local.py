"""Run a tool as a local subprocess, in its own process group, logging straight to files."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol

from xstash_plugin.fsutil import kill_group
from xstash_plugin.launchers.base import GRACE_SECONDS, RunRequest, RunResult
from xstash_plugin.launchers.preload import PreloadedProcess, PreloadLost, PreloadServer
from xstash_plugin.launchers.slots import Grant, NeverFits, SlotPlan

_CHUNK = 64 * 1024


def _tee(source: IO[bytes], log: IO[bytes], echo: IO[str]) -> None:
    # Copy in chunks as they come; never hold more than one chunk of a tool's output.
    out = getattr(echo, "buffer", None)
    for chunk in iter(lambda: source.read1(_CHUNK), b""):  # type: ignore[attr-defined]
        log.write(chunk)
        log.flush()
        if out is not None:
            out.write(chunk)
            out.flush()
        else:
            echo.write(chunk.decode("utf-8", errors="replace"))
            echo.flush()


class Process(Protocol):
    """What supervising a run needs: a plain child (:class:`subprocess.Popen`) or a run
    forked by a preload server (:class:`~.preload.PreloadedProcess`)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def kill_tree(proc: Process, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the run's whole process group, then SIGKILL whatever is left after ``grace``."""
    if not kill_group(proc.pid, signal.SIGTERM):
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    finally:  # a second Ctrl-C during the grace period must not spare the tool
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait()


COOKIE_VAR = "XSTASH_RUN"
DRAIN_SECONDS = 5.0  # how long the end of a run waits for its output to be copied


def _carriers(cookie: str) -> list[int]:
    """Processes (other than this one) whose environment holds ``XSTASH_RUN=<cookie>``
    (Linux /proc; elsewhere none are found)."""
    needle = f"{COOKIE_VAR}={cookie}".encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(name))
    return found


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
        command = " ".join(a.decode(errors="replace") for a in argv if a)[:200]
    except OSError:
        command = "?"
    return f"pid {pid} ({command})"


def kill_escapees(cookie: str, grace: float) -> tuple[str, ...]:
    """Stop every process of the run that left its process group: SIGTERM, then SIGKILL after
    ``grace``. What they were, for the report."""
    if not cookie:
        return ()
    pids = _carriers(cookie)
    described = tuple(_describe(pid) for pid in pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [pid for pid in pids if _running(pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return described


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().split(b")")[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def run_local(
    request: RunRequest,
    on_interrupt: Callable[[], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    preload: PreloadServer | None = None,
) -> RunResult:
    """Start the tool, wait for it, and return how it ended.

    ``on_start`` gets the tool's pid (also its process group) as soon as it runs, so the run
    record can name it. Ctrl-C (or any exception while waiting) calls ``on_interrupt`` first,
    so the run record says so before anything else can go wrong, then kills the process tree.
    With ``preload``, the run is forked from that tool's preload server instead of started
    (:class:`~.preload.PreloadUnavailable` if it cannot be: nothing has started then).
    """
    with open(request.stdout_path, "wb") as out, open(request.stderr_path, "wb") as err:
        started = time.time()
        threads: list[threading.Thread] = []
        proc: Process
        if preload is not None:
            proc, sources = _fork(preload, request, out, err)
        else:
            popen = subprocess.Popen(
                list(request.argv),
                cwd=request.cwd,
                env=request.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if request.live else out,
                stderr=subprocess.PIPE if request.live else err,
                start_new_session=True,  # its own process group: we can kill the whole tree
            )
            proc, sources = popen, (popen.stdout, popen.stderr)
        if request.live:
            assert sources[0] is not None and sources[1] is not None
            threads = [
                threading.Thread(target=_tee, args=(sources[0], out, sys.stdout), daemon=True),
                threading.Thread(target=_tee, args=(sources[1], err, sys.stderr), daemon=True),
            ]
            for thread in threads:
                thread.start()
        timed_out = False
        try:
            if on_start is not None:
                on_start(proc.pid)
            try:
                returncode = proc.wait(timeout=request.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                kill_tree(proc, request.grace)
                returncode = proc.wait()
            # Whatever the tool left running in its group (daemons, workers) goes with it,
            # so no orphan outlives the run and no pipe is held open.
            kill_group(proc.pid, signal.SIGKILL)
        except PreloadLost:
            raise  # not an interruption: the run is already stopped, its status unknown
        except BaseException:
            try:
                if on_interrupt is not None:
                    on_interrupt()
            finally:
                kill_tree(proc, request.grace)
            raise
        finally:
            escaped = kill_escapees(request.cookie, request.grace)
            for thread in threads:  # bounded: a process that holds a pipe never blocks the end
                thread.join(timeout=DRAIN_SECONDS)
        return RunResult(
            returncode=returncode,
            started=started,
            ended=time.time(),
            pid=proc.pid,
            timed_out=timed_out,
            escaped=escaped,
        )


def _fork(
    server: PreloadServer, request: RunRequest, out: IO[bytes], err: IO[bytes]
) -> tuple[PreloadedProcess, tuple[IO[bytes] | None, IO[bytes] | None]]:
    """Fork the run from ``server``: its stdout/stderr are the log files, or pipes to tee."""
    ours: list[int] = []
    theirs = [os.open(os.devnull, os.O_RDONLY)]
    try:
        if request.live:
            for _ in range(2):
                read, write = os.pipe()
                ours.append(read)
                theirs.append(write)
        else:
            theirs += [os.dup(out.fileno()), os.dup(err.fileno())]
        pid = server.fork(request.argv, request.cwd, request.env, (theirs[0], theirs[1], theirs[2]))
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in theirs:  # the server and the run hold their own copies now
            os.close(fd)
    sources = tuple(os.fdopen(fd, "rb") for fd in ours) if ours else (None, None)
    return PreloadedProcess(server, pid), (sources[0], sources[1])


class LocalRun:
    """A local (or preloaded) run. The tool starts when the run is waited for: it runs in the
    waiting thread, where a Ctrl-C lands and stops it (see run_local).

    With ``slots`` (launchers/slots.py) the run first waits for its GPUs/CPUs/memory, runs with
    them in its environment (CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS, ...; a preloaded run gets
    the same environment, the server sets it in the fork), and gives them back however it ends.
    The timeout counts from the tool's start, not from the wait."""

    def __init__(
        self,
        request: RunRequest,
        on_interrupt: Callable[[], None] | None,
        on_start: Callable[[int], None] | None,
        preload: PreloadServer | None,
        slots: SlotPlan | None = None,
    ) -> None:
        self.request = request
        self.on_interrupt = on_interrupt
        self.on_start = on_start
        self.preload = preload
        self.slots = slots
        self.grant: Grant | None = None  # what it held (for the record), once granted

    def wait(self) -> RunResult:
        if self.slots is None:
            return run_local(self.request, self.on_interrupt, self.on_start, self.preload)
        table = self.slots.table
        try:
            grant = table.acquire(self.slots.want, self.request.run_dir)
        except NeverFits:
            raise  # an OSError: the run could not start (nothing to interrupt)
        except BaseException:  # Ctrl-C while waiting for slots: the run is interrupted
            if self.on_interrupt is not None:
                self.on_interrupt()
            raise
        self.grant = grant
        try:
            request = dataclasses.replace(self.request, env=grant.environ(self.request.env))
            result = run_local(request, self.on_interrupt, self.on_start, self.preload)
            return dataclasses.replace(result, slots=grant.as_dict())
        finally:
            table.release(grant)

    def cancel(self) -> None:
        """Nothing to do: a local run is stopped by the exception that interrupts its wait."""


@dataclass
class LocalLauncher:
    """Runs on this machine, as a subprocess or forked from a preload server."""

    on_interrupt: Callable[[], None] | None = None
    on_start: Callable[[int], None] | None = None
    preload: PreloadServer | None = None
    slots: SlotPlan | None = None  # resources to hold while it runs (see LocalRun)

    def launch(self, request: RunRequest) -> LocalRun:
        return LocalRun(request, self.on_interrupt, self.on_start, self.preload, self.slots)
