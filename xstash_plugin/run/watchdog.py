"""Tools never outlive the pytest process that started them, even a ``kill -9``'d one.

Each tool runs in a process group of its own (so a timeout or Ctrl-C can kill its whole tree),
which also means that nothing kills it when pytest itself is killed outright: it would run on,
reparented to PID 1, its record saying ``running`` forever. So each pytest process that starts
tools also starts one small *watchdog* process (plain Python, in a session of its own) that
holds the read end of a pipe from pytest. pytest lists each run's process group and run
directory in a file as the run starts, and strikes it off when it ends. When the pipe reaches
end-of-file, pytest is gone (or done): the watchdog sends SIGTERM, then SIGKILL after the grace
period, to every group still listed and to every process that carries one of their runs'
``XSTASH_RUN`` token (it left the group), and marks those runs' records ``error`` ("the pytest
process running it died").
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

from xstash_plugin.fsutil import open_own_file

# Runs as `python -c`: the standard library only.
WATCHDOG_SOURCE = r"""
import os, signal, sys, time

path, grace, pytest_pid = sys.argv[1], float(sys.argv[2]), sys.argv[3]
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is pytest's to handle
try:
    while sys.stdin.buffer.read(4096):
        pass
except BaseException:
    pass
live = {}
try:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            op, _, rest = line.rstrip("\n").partition(" ")
            pgid, _, rest = rest.partition(" ")
            cookie, _, run_dir = rest.partition(" ")
            if op == "+":
                live[int(pgid)] = (cookie, run_dir)
            elif op == "-":
                live.pop(int(pgid), None)
except (OSError, ValueError):
    pass
def alive(pgid):
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True
def carriers():
    # Processes that left a run's process group but carry its XSTASH_RUN token.
    needles = {("XSTASH_RUN=" + cookie).encode() for cookie, _ in live.values() if cookie}
    found = []
    if not needles:
        return found
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/" + name + "/environ", "rb") as handle:
                environ = set(handle.read().split(b"\0"))
        except OSError:
            continue
        if needles & environ:
            found.append(int(name))
    return found
escaped = carriers()
for pgid in live:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        pass
for pid in escaped:
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
deadline = time.monotonic() + grace
while any(alive(p) for p in live) and time.monotonic() < deadline:
    time.sleep(0.05)
for pgid in live:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
for pid in escaped + carriers():
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
try:  # the record's one writer (pytest's own Python runs this, so xstash is importable)
    from pathlib import Path
    from xstash_plugin.run.record import Status, mark_ended
except Exception:  # then the next session finds these runs stale and closes them
    mark_ended = None
for pgid, (cookie, run_dir) in live.items():
    if mark_ended is None:
        break
    try:
        mark_ended(
            Path(run_dir),
            Status.ERROR,
            "the pytest process running this experiment (pid " + pytest_pid + ") died; "
            "xstash's watchdog stopped its tool (process group " + str(pgid) + ")",
            time.time(),
        )
    except Exception:
        pass
try:
    os.unlink(path)
except OSError:
    pass
"""


class Watchdog:
    """The watchdog of this pytest process: started with its first run, stopped (with nothing
    left to kill) in ``pytest_unconfigure``."""

    def __init__(self, folder: Path, grace: float) -> None:
        self.folder = folder
        self.grace = grace
        self.proc: subprocess.Popen[bytes] | None = None
        self.list: IO[str] | None = None
        self.failed = False

    def _start(self) -> bool:
        if self.proc is not None or self.failed:
            return self.proc is not None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{os.getpid()}.txt"
            self.list = open_own_file(path)  # closed in close()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WATCHDOG_SOURCE,
                    str(path),
                    str(self.grace),
                    str(os.getpid()),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            self.failed = True  # runs still go; only a killed pytest would leave them running
            return False
        return True

    def _write(self, line: str) -> None:
        if self.list is None:
            return
        with contextlib.suppress(OSError):
            self.list.write(line + "\n")
            self.list.flush()

    def add(self, pgid: int, cookie: str, run_dir: Path) -> None:
        """A run's tool started as process group ``pgid``; its processes carry ``cookie``."""
        if self._start():
            self._write(f"+ {pgid} {cookie or '-'} {run_dir}")

    def remove(self, pgid: int) -> None:
        """That run ended (its process group is gone)."""
        self._write(f"- {pgid}")

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=self.grace + 5)
        if self.list is not None:
            with contextlib.suppress(OSError):
                self.list.close()
