"""The client side of a compose server (:mod:`.compose_server`): the subprocess in the tool's
own environment, the requests sent to it, and a thread reading its answers.

The server runs as ``python -c SOURCE``: its parts are joined here into one source (it cannot
import xstash, nor its own parts, in the tool's environment).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from xstash_plugin.config.registry import Tool
from xstash_plugin.fsutil import open_own_file
from xstash_plugin.launchers.preload import server_key
from xstash_plugin.run.envs import tool_environ

COMPOSE_TIMEOUT = 300.0  # for a tool to import, or to answer one request
# The compose server's source files, in the order they are joined (the last runs main()).
SERVER_PARTS = ("compose_server_checks.py", "compose_server_memo.py", "compose_server.py")
_FUTURE = "from __future__ import annotations\n"


def _server_source() -> str:
    """The parts as one source: a later part loses its ``from __future__`` line (only the
    first statement of a source may be one; the first part's applies to all of it)."""
    texts = [Path(__file__).with_name(name).read_text(encoding="utf-8") for name in SERVER_PARTS]
    return "\n\n".join([texts[0], *(text.replace(_FUTURE, "", 1) for text in texts[1:])])


SERVER_SOURCE = _server_source()


@dataclass
class Answer:
    ok: bool
    errors: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hydra_ok: bool = False  # Hydra's verdict alone (what `--cfg job --resolve` says)
    recalled: bool = False  # composed from a defaults list the server remembered (a sweep)


class ServerGone(Exception):
    """The compose server could not start or died; the message says why."""


class ToolServer:
    """One compose server: a subprocess in the tool's environment, and a thread reading its
    answers (and writing each to the verdict cache as it arrives)."""

    def __init__(self, tool: Tool, python: str, log: Path) -> None:
        self.tool = tool
        env = tool_environ(tool)
        assert tool.hydra_main is not None
        key = server_key((python, *tool.entrypoint), tool.path, env)
        assert key is not None
        kind, entry = key.kind, key.entry
        if kind == "module" and tool.hydra_main.module:
            entry = tool.hydra_main.module  # a package's __main__, not its __init__
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        read_fd, write_fd = os.pipe()
        with open_own_file(log, append=True, binary=True) as log_file:
            self.proc = subprocess.Popen(
                [python, "-c", SERVER_SOURCE, str(write_fd), kind, entry, key.path0],
                cwd=tool.path,
                env=env,
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        os.close(write_fd)
        assert self.proc.stdin is not None
        self.stdin: TextIO = open(  # noqa: SIM115 - closed in close()
            self.proc.stdin.fileno(), "w", encoding="utf-8", closefd=False
        )
        self.answers_in = os.fdopen(read_fd, "r", encoding="utf-8")
        self.cond = threading.Condition()
        self.info: dict[str, Any] | None = None  # the ready message
        self.gone: str | None = None
        self.answers: dict[int, Answer] = {}
        self.on_answer: dict[int, Callable[[Answer], None]] = {}
        self.next_id = 0
        self.sent = 0
        self.thread = threading.Thread(target=self._read, name=f"xstash-compose-{tool.name}")
        self.thread.daemon = True
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.answers_in:
                message = json.loads(line)
                with self.cond:
                    if self.info is None:
                        if not message.get("ready"):
                            self.gone = self._not_ready(message)
                            self.cond.notify_all()
                            return
                        self.info = message
                        self.cond.notify_all()
                        continue
                    answer = Answer(
                        bool(message.get("ok")),
                        list(message.get("errors") or []),
                        list(message.get("notes") or []),
                        bool(message.get("hydra_ok")),
                        bool(message.get("recalled")),
                    )
                    ident = int(message["id"])
                    callback = self.on_answer.pop(ident, None)
                    self.answers[ident] = answer
                    self.cond.notify_all()
                if callback is not None:
                    callback(answer)
        except (OSError, ValueError, KeyError) as exc:
            with self.cond:
                self.gone = f"its answers could not be read: {exc}"
        finally:
            with self.cond:
                if self.gone is None:
                    code = self.proc.poll()
                    self.gone = f"it exited (code {code})" if code is not None else "it stopped"
                    self.gone += self._log_tail()
                self.cond.notify_all()

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return ("; its output ends:\n" + "\n".join(lines[-8:])) if lines else ""

    def _not_ready(self, message: dict[str, Any]) -> str:
        error = str(message.get("error") or "unknown error")
        trace = str(message.get("traceback") or "").strip().splitlines()
        where = f" (traceback in {self.log})" if trace else ""
        if trace:
            with contextlib.suppress(OSError), open_own_file(self.log, append=True) as log:
                log.write("\n".join(trace) + "\n")
        return f"importing its entry failed: {error}{where}"

    def send(self, request: dict[str, Any], on_answer: Callable[[Answer], None]) -> int:
        with self.cond:
            if self.gone is not None:
                raise ServerGone(self.gone)
            ident = self.next_id
            self.next_id += 1
            self.on_answer[ident] = on_answer
        try:
            self.stdin.write(json.dumps({**request, "id": ident}, default=str) + "\n")
            self.stdin.flush()
        except OSError as exc:
            with self.cond:
                self.on_answer.pop(ident, None)
            raise ServerGone(f"it does not take requests: {exc}{self._log_tail()}") from None
        self.sent += 1
        return ident

    def wait(self, ident: int, deadline: float) -> Answer:
        with self.cond:
            while ident not in self.answers:
                if self.gone is not None:
                    raise ServerGone(self.gone)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServerGone(f"no answer within {COMPOSE_TIMEOUT:.0f} s (log: {self.log})")
                self.cond.wait(min(left, 1.0))
            return self.answers.pop(ident)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.thread.join(timeout=2)
        with contextlib.suppress(OSError):
            self.answers_in.close()


@dataclass
class Run:
    """One run of an experiment to compose: a sweep point (or the single run)."""

    label: str  # the sweep point's id ('' for a single run)
    point: dict[str, Any]  # sweep key -> value
    overrides: list[str]  # the point's and --xstash-override's, as sent to the tool


@dataclass
class Pending:
    run: Run
    key: str
    answer: Answer | None = None  # known at once (cache) or when the server answers
    server: ToolServer | None = None
    ident: int = -1
    claim_owner: int | None = None  # another process composing it: wait for its verdict
    problem: str = ""  # why it could not be composed
    request: dict[str, Any] | None = None  # what was sent to the compose server
