"""The preload server: runs inside a tool's own Python (``python -c <this file's text>``).

It imports the tool's entry module once (and with it Hydra and everything the tool imports at
module level), then, for each request from the orchestrator, forks. The child becomes the run:
its own session and process group, the run's stdin/stdout/stderr (file descriptors passed over
the socket), cwd, environment and ``sys.argv``, and then executes the entry as ``__main__``,
exactly as ``python <entrypoint> ...`` would. The server reports the child's pid, waits for it
and reports its exit status (negative for a signal, as :mod:`subprocess` does).

Standard library only, no import of xstash: this runs in the tool's environment, not ours.
Protocol on the socket (one request at a time): the orchestrator sends a 4-byte big-endian
length with three file descriptors attached, then that many bytes of JSON
``{"cwd", "env", "argv"}``; the server answers JSON lines: ``{"pid": n}`` then
``{"status": n}`` (or ``{"error": "..."}``). At start it answers ``{"ready": true}``, or
``{"ready": false, "error": traceback}`` when the tool cannot be imported.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import json
import os
import runpy
import signal
import socket
import struct
import sys
import traceback
from typing import Any


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One request and its file descriptors; None when the orchestrator has gone."""
    header, fds, _flags, _addr = socket.recv_fds(sock, 4, 3)
    if not header:
        return None
    while len(header) < 4:
        more = sock.recv(4 - len(header))
        if not more:
            return None
        header += more
    (size,) = struct.unpack(">I", header)
    body = b""
    while len(body) < size:
        chunk = sock.recv(min(size - len(body), 1 << 20))
        if not chunk:
            return None
        body += chunk
    return json.loads(body), list(fds)


def _stdio(fd: int, name: str) -> io.TextIOWrapper:
    """A fresh ``sys.std*`` over ``fd``, made the way Python makes its own at startup."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    encoding, _, errors = (os.environ.get("PYTHONIOENCODING") or "").partition(":")
    tty = os.isatty(fd)
    raw = io.FileIO(fd, "r" if name == "stdin" else "w", closefd=False)
    buffered: Any = raw
    if name == "stdin":
        buffered = io.BufferedReader(raw)
    elif not unbuffered:
        buffered = io.BufferedWriter(raw)
    return io.TextIOWrapper(
        buffered,
        encoding=encoding or None,
        errors=errors or ("backslashreplace" if name == "stderr" else "strict"),
        line_buffering=tty or name == "stderr",
        write_through=unbuffered and name != "stdin",
    )


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _run_child(request: dict[str, Any], fds: list[int], sock: socket.socket, kind: str) -> None:
    """In the forked child: become the run, execute the entry, never return."""
    code = 1
    try:
        sock.close()
        os.setsid()  # its own session and process group, as start_new_session=True gives
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, name in enumerate(("stdin", "stdout", "stderr")):
            stream = _stdio(fd, name)
            setattr(sys, name, stream)
            setattr(sys, f"__{name}__", stream)
        entry, *args = request["argv"]
        sys.path[0] = request["path0"]
        sys.argv = [entry, *args]
        try:
            if kind == "module":
                runpy.run_module(entry, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(entry, run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = -int(signal.SIGINT)
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()  # what interpreter shutdown does (logging.shutdown, ...)
    except BaseException:  # pragma: no cover - the run could not even be set up
        traceback.print_exc()
    finally:
        for out in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                out.flush()
        if code < 0:  # died of SIGINT, as Python does after an uncaught KeyboardInterrupt
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code)


def _warm_up_hydra(args: list[str]) -> None:
    """Before the first fork: let Hydra compose the first run's config once, in the server,
    without running anything. What that loads lazily (Hydra's core plugins, the override
    grammar's parser tables, config sources) is then inherited by every fork instead of being
    rebuilt by each run. Any failure is ignored: the run itself will say what is wrong."""
    if "hydra" not in sys.modules:
        return
    try:
        config_dir = args[args.index("--config-dir") + 1]
        config_name = args[args.index("--config-name") + 1]
    except (ValueError, IndexError):
        return
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    saved = sys.stdout, sys.stderr
    try:
        with open(os.devnull, "w") as devnull:
            sys.stdout = sys.stderr = devnull
            hydra: Any = sys.modules["hydra"]  # the tool's Hydra (not in xstash's environment)
            with hydra.initialize_config_dir(config_dir=config_dir, version_base=None):
                hydra.compose(
                    config_name=config_name, overrides=overrides, return_hydra_config=True
                )
    except BaseException:
        pass
    finally:
        sys.stdout, sys.stderr = saved


def serve(sock: socket.socket, kind: str, entry: str, path0: str) -> None:
    # A Ctrl-C in the terminal is for the orchestrator; it stops runs itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path[0] = path0
    try:
        if kind == "module":
            __import__(entry)
        else:
            runpy.run_path(entry, run_name="__xstash_preload__")
    except BaseException:
        _send(sock, {"ready": False, "error": traceback.format_exc()})
        return
    _send(sock, {"ready": True, "python": sys.version.split()[0]})
    warm = False
    while True:
        received = _receive(sock)
        if received is None:
            return  # the orchestrator is gone: so are we
        request, fds = received
        if not warm:
            warm = True
            _warm_up_hydra(list(request["argv"][1:]))
            # Objects made so far are never collected in the forks: their pages stay shared
            # instead of being copied when the garbage collector would touch them.
            gc.collect()
            gc.freeze()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # nothing buffered may be written twice by the child
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            _send(sock, {"error": f"fork failed: {exc}"})
            continue
        if pid == 0:
            _run_child(request, fds, sock, kind)
        for fd in fds:
            os.close(fd)
        _send(sock, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _send(sock, {"status": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4])
