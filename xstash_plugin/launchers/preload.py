"""Preloaded tools: one long-lived process per tool (per pytest process) imports the tool's
entry module once; each run is a fresh ``fork()`` of it (see :mod:`.preload_server`).

What a run looks like from outside is the same as a plain run: its own process group (so
timeouts and Ctrl-C kill its whole tree), stdout/stderr straight into the run's log files (or
through pipes teed to the terminal with ``-s``), its cwd, environment and argv, its exit code or
signal. What differs: the interpreter and the modules imported at the entry module's top level
are shared copies made before the run, so a tool that starts threads or initialises a GPU at
import must not be preloaded.
"""

from __future__ import annotations

import ast
import contextlib
import json
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from xstash_plugin.config.hydra_entry import is_main_guard
from xstash_plugin.fsutil import kill_group, open_own_file

SERVER_SOURCE = (Path(__file__).with_name("preload_server.py")).read_text(encoding="utf-8")
# How long a tool may take to import before we give up on preloading it (and run it plainly).
START_TIMEOUT = 120.0
# Interpreter settings read only at startup: a run whose environment differs in these gets a
# server of its own.
_STARTUP_VARS = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONHASHSEED",
    "PYTHONUNBUFFERED",
    "PYTHONIOENCODING",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONWARNINGS",
    "PYTHONUTF8",
    "PYTHONSAFEPATH",
    "PYTHONNOUSERSITE",
    "VIRTUAL_ENV",
)


class PreloadUnavailable(Exception):
    """The tool cannot be preloaded (import failed, server died before the run started): run
    it plainly instead. Nothing of the run has started. ``permanent``: it would fail the same
    way every time (no guard, import error), so it is not tried again."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class PreloadLost(Exception):
    """The preload server died while a run it forked was going: the run was stopped and its
    exit status is unknown."""


@dataclass(frozen=True)
class ServerKey:
    python: str
    kind: str  # "module" or "file"
    entry: str  # module name, or the absolute path of the script
    cwd: str
    startup_env: tuple[tuple[str, str], ...]

    @property
    def path0(self) -> str:
        """``sys.path[0]`` of a plain run: the script's folder, or the cwd for ``-m``."""
        return str(Path(self.entry).parent) if self.kind == "file" else self.cwd


def server_key(argv: tuple[str, ...], cwd: Path, env: dict[str, str]) -> ServerKey | None:
    """The server a run of ``argv`` can be forked from; None if argv is not ``python <file>``
    or ``python -m <module>`` followed by arguments."""
    if len(argv) < 2:
        return None
    python = argv[0]
    if argv[1] == "-m":
        if len(argv) < 3:
            return None
        kind, entry = "module", argv[2]
    elif argv[1].startswith("-"):
        return None
    else:
        kind, entry = "file", str((cwd / argv[1]).absolute())
    startup = tuple((k, env[k]) for k in _STARTUP_VARS if k in env)
    return ServerKey(python, kind, entry, str(cwd), startup)


def entry_file(key: ServerKey) -> Path | None:
    """The file the preload server imports: the script, or the module's ``.py`` file (None
    for a package run through its ``__main__``, whose ``__init__`` alone is imported)."""
    if key.kind == "file":
        return Path(key.entry)
    base = Path(key.cwd, *key.entry.split("."))
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def check_preloadable(key: ServerKey) -> None:
    """Importing the entry must not run the tool: its top level needs a ``__main__`` guard.
    PreloadUnavailable (with the fix) otherwise."""
    path = entry_file(key)
    if path is None:
        return
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise PreloadUnavailable(f"cannot read {path}: {exc}") from None
    if not any(is_main_guard(node) for node in tree.body):
        raise PreloadUnavailable(
            f"{path} has no 'if __name__ == \"__main__\":' block, so importing it would run "
            "the tool; put the call of the Hydra main function under one",
            permanent=True,
        )


@dataclass
class PreloadServer:
    key: ServerKey
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    busy: bool = False
    _buffer: bytes = b""

    @classmethod
    def start(cls, key: ServerKey, env: dict[str, str], log: Path) -> PreloadServer:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with open_own_file(log, append=True, binary=True) as err:
                proc = subprocess.Popen(
                    [
                        key.python,
                        "-c",
                        SERVER_SOURCE,
                        str(theirs.fileno()),
                        key.kind,
                        key.entry,
                        key.path0,
                    ],
                    cwd=key.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,  # the terminal's Ctrl-C is not for it
                )
        except OSError as exc:
            ours.close()
            raise PreloadUnavailable(f"cannot start {key.python}: {exc}") from None
        finally:
            theirs.close()
        server = cls(key, proc, ours)
        try:
            hello = server._message(START_TIMEOUT)
        except (PreloadLost, TimeoutError, OSError) as exc:
            server.close()
            raise PreloadUnavailable(f"the preload process did not start: {exc}") from None
        if not hello.get("ready"):
            server.close()
            error = str(hello.get("error") or "unknown error").rstrip()
            raise PreloadUnavailable(f"importing the tool failed:\n{error}", permanent=True)
        return server

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _message(self, timeout: float | None) -> dict[str, object]:
        """The next JSON line from the server; PreloadLost at EOF, TimeoutError if none."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError from None
            if not chunk:
                raise PreloadLost("the preload process exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, object] = json.loads(line)
        return message

    def fork(
        self, argv: tuple[str, ...], cwd: Path, env: dict[str, str], fds: tuple[int, int, int]
    ) -> int:
        """Start one run of ``argv`` (``python <entrypoint> args...``, as :func:`server_key`
        read it) with ``fds`` as its stdin/stdout/stderr; its pid."""
        args = argv[3:] if self.key.kind == "module" else argv[2:]
        entry = self.key.entry
        body = json.dumps(
            {"cwd": str(cwd), "env": env, "argv": [entry, *args], "path0": self.key.path0}
        ).encode()
        try:
            self.sock.settimeout(None)
            socket.send_fds(self.sock, [struct.pack(">I", len(body))], list(fds))
            self.sock.sendall(body)
            reply = self._message(START_TIMEOUT)
        except (OSError, PreloadLost, TimeoutError) as exc:
            self.close()
            raise PreloadUnavailable(f"the preload process stopped answering: {exc}") from None
        if "pid" not in reply:
            raise PreloadUnavailable(str(reply.get("error", reply)))
        self.busy = True
        return int(str(reply["pid"]))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.proc.poll() is None:
            kill_group(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


@dataclass
class PreloadedProcess:
    """A forked run, with the part of :class:`subprocess.Popen`'s interface that supervising
    it needs: ``pid``, ``returncode``, ``wait(timeout)``."""

    server: PreloadServer
    pid: int
    returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        try:
            message = self.server._message(timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0) from None
        except PreloadLost:
            # Its parent is gone, so its status is lost: stop the run, say so (once).
            kill_group(self.pid, signal.SIGKILL)
            self.server.close()
            self.returncode = -int(signal.SIGKILL)
            raise PreloadLost(
                f"the preload process of this tool died while the run (pid {self.pid}) was "
                "going, so its exit status is lost; the run was killed"
            ) from None
        self.server.busy = False
        self.returncode = int(str(message["status"]))
        return self.returncode


@dataclass
class PreloadPool:
    """This process's preload servers, one per tool (and startup environment)."""

    servers: dict[ServerKey, PreloadServer] = field(default_factory=dict)
    failed: dict[ServerKey, str] = field(default_factory=dict)

    def server(self, key: ServerKey, env: dict[str, str], log: Path) -> PreloadServer:
        if key in self.failed:
            raise PreloadUnavailable(self.failed[key])
        server = self.servers.get(key)
        if server is not None and (not server.alive() or server.busy):
            server.close()
            server = None
        if server is None:
            try:
                check_preloadable(key)
                server = PreloadServer.start(key, env, log)
            except PreloadUnavailable as exc:
                if exc.permanent:
                    self.failed[key] = str(exc)
                raise
            self.servers[key] = server
        return server

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers.clear()
