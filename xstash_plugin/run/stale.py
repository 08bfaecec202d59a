"""Runs an earlier session left ``running``: finished off, or not started twice.

A pytest process writes ``running`` into a run's record before the tool starts, and the final
status after it ends; if that pytest dies outright (and its watchdog with it: ``kill -9`` of the
whole tree, the OOM killer, a power cut), the record says ``running`` forever. Before a local
run starts, xstash looks at the records its experiment left on this host: a ``running`` record
whose pytest process is gone is either

- *dead* (no process of the run is left): marked ``error`` ("the pytest process running it
  died"), with a warning, and the experiment runs as usual; or
- *orphaned* (its tool still runs, reparented): the experiment is not started a second time,
  and the failure says which processes to wait for or stop.

Processes are told apart by identity, not pid alone: ``<boot id>:<pid>:<start time>`` from
``/proc`` (a recycled pid, or the same pid after a reboot, is another process). Where ``/proc``
is missing, the pid's existence is all there is to go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstash_plugin.fsutil import kill_group
from xstash_plugin.run.record import RECORD_NAME, RunRecord, Status, mark_ended


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


BOOT_ID = _boot_id()


def process_identity(pid: int) -> str | None:
    """``<boot id>:<pid>:<start time in clock ticks>`` of a live process, None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name in (...) may hold spaces
    if len(fields) < 20 or fields[0] == "Z":
        return None  # a zombie has finished
    return f"{BOOT_ID}:{pid}:{fields[19]}"


def is_alive(pid: object, identity: object) -> bool:
    """Is the process ``pid`` recorded as ``identity`` (see process_identity) still running?"""
    if not isinstance(pid, int) or pid <= 1:
        return False
    if isinstance(identity, str) and identity and Path("/proc/self/stat").exists():
        return process_identity(pid) == identity
    try:  # no identity recorded, or no /proc: existence is the best guess
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def token_carriers(token: str) -> list[int]:
    """Processes whose environment holds ``XSTASH_RUN=<token>`` (a run's processes)."""
    if not token:
        return []
    needle = f"XSTASH_RUN={token}".encode()
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in environ:
                found.append(int(name))
    return sorted(found)


def run_processes(record: dict[str, Any]) -> list[int]:
    """The pids of a recorded run that still live: its tool and any process with its token."""
    pids = set(token_carriers(str(record.get("run_token") or "")))
    tool_pid = record.get("tool_pid")
    if is_alive(tool_pid, record.get("tool_identity")):
        assert isinstance(tool_pid, int)
        pids.add(tool_pid)
    return sorted(pids)


@dataclass
class Stale:
    """A run left ``running`` by a pytest process that is gone."""

    run_dir: Path
    record: dict[str, Any]
    alive: list[int]  # its processes still running (empty: it is over)


@dataclass
class StaleRuns:
    """Finds, per config folder (scanned once per pytest process), the stale runs of an item."""

    output_root: Path
    host: str = field(default_factory=socket.gethostname)
    _folders: dict[Path, list[tuple[Path, dict[str, Any]]]] = field(default_factory=dict)

    def _running(self, folder: Path) -> list[tuple[Path, dict[str, Any]]]:
        if folder not in self._folders:
            found = []
            with contextlib.suppress(OSError):
                for run_dir in sorted(folder.iterdir()):
                    path = run_dir / RECORD_NAME
                    try:
                        raw = path.read_bytes()
                        if b'"running"' not in raw:  # cheap: most records are final
                            continue
                        record = json.loads(raw)
                    except (OSError, ValueError):
                        continue  # unreadable records are the reuse index's to report
                    if isinstance(record, dict) and record.get("status") == "running":
                        found.append((run_dir, record))
            self._folders[folder] = found
        return self._folders[folder]

    def find(self, config_relpath: Path, nodeid: str) -> list[Stale]:
        folder = self.output_root / config_relpath.with_suffix("")
        stale = []
        for run_dir, record in self._running(folder):
            if (
                record.get("nodeid") != nodeid
                or record.get("launcher") != "local"  # SLURM jobs have their own life
                or record.get("host") != self.host
                or "worker_pid" not in record
                or is_alive(record.get("worker_pid"), record.get("worker_identity"))
            ):
                continue
            stale.append(Stale(run_dir, record, run_processes(record)))
        return stale

    def close(self, stale: Stale, session: str) -> str:
        """Mark a stale run whose processes are all gone ``error``; returns the reason."""
        reason = (
            f"the pytest process running this experiment (pid {stale.record.get('worker_pid')}) "
            "died without finishing its record (killed with its watchdog, out of memory, or the "
            "machine stopped); no process of the run is left"
        )
        mark_ended(stale.run_dir, Status.ERROR, reason, time.time(), closed_by=session)
        return reason


def recover_crashed_run(output_root: Path, nodeid: str, session: str, reason: str) -> list[Path]:
    """Mark the still-'running' records of ``nodeid`` in ``session`` as errors, and kill their
    tools' process groups, which outlived the process that started them (an xdist worker
    died). Returns the run dirs."""
    folder = output_root / Path(nodeid.split("::", 1)[0]).with_suffix("")
    found = []
    try:
        candidates = sorted(p for p in folder.iterdir() if (p / RECORD_NAME).is_file())
    except OSError:
        return []
    for run_dir in candidates:
        try:
            record = RunRecord.load(run_dir)
        except (OSError, ValueError):
            continue
        if (
            record.status is not Status.RUNNING
            or record.nodeid != nodeid
            or record.session != session
        ):
            continue
        pid = record.tool_pid
        if pid is not None and is_alive(pid, record.tool_identity) and _is_group_leader(pid):
            kill_group(pid, signal.SIGKILL)
        if mark_ended(run_dir, Status.ERROR, reason, time.time()):
            found.append(run_dir)
    return found


def _is_group_leader(pid: int) -> bool:
    # Only a process group led by that pid is ours to kill.
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False
