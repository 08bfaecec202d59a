"""Deep validation at collection: each tool composes each experiment (and sweep point).

Collection asks the tool itself whether an experiment composes, through **one long-lived
compose server per tool** (:mod:`.compose_server`) in the tool's own environment: it imports
the tool's entry once (its ConfigStore schemas and resolvers register at import) and composes
each config with Hydra's config loader, as ``--cfg job --resolve`` would, without running the
tool. On top of Hydra's own verdict it finds the keys an experiment sets that the config it
extends does not have (Hydra's command line refuses those; a config file silently adds them).

Each verdict is cached by content (the tool's files, the experiment's folder of fragments, the
config as sent, the overrides), so an unchanged config never reaches its tool again. Requests
are pipelined (a sweep's points are all sent before the first answer is read) and answered in
a reader thread per server, which also writes the cache. Several pytest processes (xdist
workers) share the work through claim files: a verdict another live process is composing is
waited for, not composed twice.
"""

from __future__ import annotations

import contextlib
import hashlib
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

from xstash_plugin.config.compose_errors import judge
from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.registry import Tool
from xstash_plugin.errors import ConfigError, EnvError
from xstash_plugin.fsutil import open_own_file, write_own_file
from xstash_plugin.launchers.preload import server_key
from xstash_plugin.run.command import build_argv
from xstash_plugin.run.envs import EnvManager, tool_environ
from xstash_plugin.run.provenance import dependency_hash
from xstash_plugin.run.rundir import CONFIG_NAME, content_key, write_tool_config

COMPOSE_HELP = (
    "on (default): each tool composes each collected experiment and sweep point at collection "
    "(one compose process per tool, verdicts cached by content), so unknown keys, missing "
    "config-group options and interpolations that cannot resolve are collection errors; "
    "off: only what xstash can check without the tool"
)
COMPOSE_TIMEOUT = 300.0  # for a tool to import, or to answer one request
CHECK_VERSION = "3"  # part of every cache key: a new check makes old verdicts stale
SERVER_SOURCE = Path(__file__).with_name("compose_server.py").read_text(encoding="utf-8")
_SKIP_DIRS = {".venv", "__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
# What can change a verdict: code, configs, dependency specs. Not what runs leave behind in the
# tool's folder (log files of a tool whose logging is relative to its working directory).
_SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini", ".txt", ".lock")
_CLAIM_POLL = 0.02


def parse_compose_setting(value: str, source: str) -> bool:
    """``on``/``off`` (also true/false, 1/0, yes/no) -> bool; ValueError naming ``source``."""
    word = value.strip().lower()
    if word in ("on", "true", "1", "yes"):
        return True
    if word in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{source} = {value!r}: use on or off")


def tool_fingerprint(tool: Tool) -> str:
    """Names, sizes and modification times of the tool's code and config files (not its
    .venv): cheap, and it changes whenever they do."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(tool.path):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith(_SOURCE_SUFFIXES):
                continue
            path = Path(folder, name)
            try:
                stat = path.stat()
            except OSError:
                continue
            rel = path.relative_to(tool.path).as_posix()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(str(dependency_hash(tool.path)).encode())
    return digest.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """The shared fragments an experiment's ``defaults:`` can name besides the tool's configs:
    its ``_``-files and everything in its ``_``-folders, by name, size and time (not the other
    experiments beside it: editing one must not make its siblings compose again)."""
    digest = hashlib.sha256()
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return ""
    for entry in entries:
        try:
            if not entry.name.startswith("_"):
                continue
            if entry.is_file() and entry.name.endswith((".yaml", ".yml")):
                stat = entry.stat()
                digest.update(f"{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            elif entry.is_dir():
                for sub, dirs, files in os.walk(entry.path):
                    dirs.sort()
                    for name in sorted(files):
                        stat = os.stat(os.path.join(sub, name))
                        rel = os.path.relpath(os.path.join(sub, name), folder)
                        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            continue
    return digest.hexdigest()


def key_shape(payload: dict[str, Any], pass_experiment: bool) -> dict[str, Any]:
    """The keys an experiment sets in the tool's config (its values do not matter to the
    unknown-key check): mappings as mappings, lists as ``"list"``, scalars as ``0``."""

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): shape(v) for k, v in value.items()}
        return "list" if isinstance(value, list) else 0

    skip = {"defaults", "hydra"} | ({"experiment"} if pass_experiment else set())
    return {str(k): shape(v) for k, v in payload.items() if k not in skip}


@dataclass
class Run:
    """One run of an experiment to compose: a sweep point (or the single run)."""

    label: str  # the sweep point's id ('' for a single run)
    point: dict[str, Any]  # sweep key -> value
    overrides: list[str]  # the point's and --xstash-override's, as sent to the tool


@dataclass
class Answer:
    ok: bool
    errors: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hydra_ok: bool = False  # Hydra's verdict alone (what `--cfg job --resolve` says)


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
class Pending:
    run: Run
    key: str
    answer: Answer | None = None  # known at once (cache) or when the server answers
    server: ToolServer | None = None
    ident: int = -1
    claim_owner: int | None = None  # another process composing it: wait for its verdict
    problem: str = ""  # why it could not be composed
    request: dict[str, Any] | None = None  # what was sent to the compose server


class ComposeService:
    """Composes (or recalls) every run of the experiments being collected; one per pytest
    process, created in ``pytest_configure`` and closed in ``pytest_unconfigure``."""

    def __init__(self, state_dir: Path, envs: EnvManager) -> None:
        self.dir = state_dir / "compose"
        self.envs = envs
        self.servers: dict[str, ToolServer | str] = {}  # tool folder -> server or why none
        self.fingerprints: dict[Path, str] = {}
        self.folders: dict[Path, str] = {}
        self.claims: set[Path] = set()  # claim files of this process not yet answered
        self.lock = threading.Lock()  # guards claims (the reader threads release them)
        self.composed = 0  # runs this process sent to a compose server
        self.cached = 0  # verdicts recalled from the cache (or from another process)
        self.skipped: dict[str, str] = {}  # tool -> why it is not composed
        self.seconds = 0.0

    # -- keys and cache ----------------------------------------------------------------------

    def key(self, experiment: Experiment, run: Run) -> str:
        tool = experiment.tool
        if tool.path not in self.fingerprints:
            self.fingerprints[tool.path] = tool_fingerprint(tool)
        if experiment.folder not in self.folders:
            self.folders[experiment.folder] = folder_fingerprint(experiment.folder)
        blob = json.dumps(
            {
                "check": CHECK_VERSION,
                "tool": tool.name,
                "entrypoint": tool.entrypoint,
                "env": tool.env,
                "primary": tool.primary,
                "code": self.fingerprints[tool.path],
                "folder": str(experiment.folder),
                "fragments": self.folders[experiment.folder],
                "name": experiment.name,
                "config": experiment.payload,
                "new_keys": experiment.new_keys,
                "overrides": run.overrides,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _cached(self, key: str) -> Answer | None:
        try:
            data: dict[str, Any] = json.loads((self.dir / f"{key}.json").read_text())
            errors = list(data.get("errors") or [])
            return Answer(bool(data["ok"]), errors, [], bool(data.get("hydra_ok")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, key: str, answer: Answer) -> None:
        """Runs in a server's reader thread: the verdict, then the claim released."""
        path = self.dir / f"{key}.json"
        tmp = path.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
        with contextlib.suppress(OSError):
            verdict = {"ok": answer.ok, "hydra_ok": answer.hydra_ok, "errors": answer.errors}
            write_own_file(tmp, json.dumps(verdict))
            os.replace(tmp, path)
        self._release(self.dir / f"{key}.claim")

    def _claim(self, key: str) -> int | None:
        """Claim ``key`` for this process; the pid of a live process that holds it instead."""
        claim = self.dir / f"{key}.claim"
        for _ in range(3):
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _claim_owner(claim)
                if owner is not None:
                    return owner
                with contextlib.suppress(OSError):
                    claim.unlink()  # its process is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            with self.lock:
                self.claims.add(claim)
            return None
        return None  # could not settle it: compose it here too (the verdict is the same)

    def _release(self, claim: Path) -> None:
        with self.lock:
            self.claims.discard(claim)
        with contextlib.suppress(OSError):
            claim.unlink()

    # -- servers -----------------------------------------------------------------------------

    def _server(self, tool: Tool) -> ToolServer | str:
        """The tool's compose server, started on first use; or why the tool cannot compose
        (a string: not an error of any config)."""
        found = self.servers.get(str(tool.path))
        if found is not None:
            return found
        python = self.envs.python_for(tool)  # EnvError: the caller reports it
        log = self.dir / "servers" / f"{tool.name}-{os.getpid()}.log"
        try:
            server: ToolServer | str = ToolServer(tool, python, log)
        except OSError as exc:
            server = f"its compose process could not be started: {exc}"
        self.servers[str(tool.path)] = server
        return server

    def skip_reason(self, tool: Tool) -> str | None:
        """Why ``tool`` is not composed at all (it is no Hydra app xstash can import)."""
        main = tool.hydra_main
        if main is None or not main.found:
            entry = " ".join(tool.entrypoint)
            return main.problem if main and main.problem else f"no @hydra.main in {entry}"
        if not main.guarded:
            return (
                f"{main.entry_file} has no 'if __name__ == \"__main__\":' block, so importing "
                "it to compose would run the tool"
            )
        return None

    # -- checking ----------------------------------------------------------------------------

    def check(self, experiment: Experiment, runs: list[Run]) -> list[ConfigError]:
        """Compose every run of ``experiment``; the collection errors it has (none: fine)."""
        tool = experiment.tool
        try:
            pending = self.compose(experiment, runs)
        except EnvError as exc:
            return [
                ConfigError(
                    experiment.config_path,
                    experiment.line,
                    f"tool '{tool.name}' cannot compose this experiment: {exc}",
                    "fix what the message names (the tool's dependencies, or xstash's output "
                    "root), or collect without composing: --xstash-compose=off",
                )
            ]
        return judge(experiment, pending)

    def compose(self, experiment: Experiment, runs: list[Run]) -> list[Pending]:
        """The verdict of every run (recalled, or composed now); EnvError when the tool's
        environment cannot be prepared. Nothing for a tool that is not composed at all."""
        reason = self.skip_reason(experiment.tool)
        if reason is not None:
            self.skipped.setdefault(experiment.tool.name, reason)
            return []
        started = time.perf_counter()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EnvError(
                f"xstash cannot write its compose verdicts in {self.dir}: {exc}\n"
                f"fix: make {self.dir} a writable folder, choose another output root with "
                "--xstash-output-root, or collect without composing (--xstash-compose=off)"
            ) from None
        pending = self._submit(experiment, runs)
        deadline = time.monotonic() + COMPOSE_TIMEOUT
        for item in pending:
            if item.answer is None:
                self._wait(experiment, item, deadline)
        self.seconds += time.perf_counter() - started
        return pending

    def _submit(self, experiment: Experiment, runs: list[Run]) -> list[Pending]:
        pending = [Pending(run, self.key(experiment, run)) for run in runs]
        misses = []
        for item in pending:
            item.answer = self._cached(item.key)
            if item.answer is None:
                misses.append(item)
            else:
                self.cached += 1
        if not misses:
            return pending
        server = self._server(experiment.tool)  # EnvError before anything is claimed
        config_dir = self._write_config(experiment)
        for item in misses:
            item.claim_owner = self._claim(item.key)
            if item.claim_owner is not None:
                continue  # another process composes it: its verdict is waited for
            if isinstance(server, str):
                item.problem = server
                self._release(self.dir / f"{item.key}.claim")
            else:
                self._send(experiment, item, config_dir, server)
        return pending

    def _write_config(self, experiment: Experiment) -> Path:
        folder = self.dir / "configs" / content_key({"config": experiment.payload})
        folder.mkdir(parents=True, exist_ok=True)
        return write_tool_config(folder, experiment.payload)

    def _send(
        self, experiment: Experiment, item: Pending, config_dir: Path, server: ToolServer
    ) -> None:
        argv = build_argv("python", experiment, config_dir, config_dir.parent / "run", [])
        overrides = list(argv[argv.index("--config-name") + 2 :]) + item.run.overrides
        request = {
            "config_dir": str(config_dir),
            "config_name": CONFIG_NAME,
            "overrides": overrides,
            "check_keys": experiment.tool.primary is not None,
            "shape": key_shape(experiment.payload, experiment.tool.pass_experiment),
            "new_keys": list(experiment.new_keys),
        }
        key = item.key
        item.request = request
        try:
            item.ident = server.send(request, lambda answer: self._store(key, answer))
            item.server = server
            self.composed += 1
        except ServerGone as exc:
            item.problem = str(exc)
            self._release(self.dir / f"{item.key}.claim")

    def _wait(self, experiment: Experiment, item: Pending, deadline: float) -> None:
        claim = self.dir / f"{item.key}.claim"
        if item.server is not None:
            try:
                item.answer = item.server.wait(item.ident, deadline)
            except ServerGone as exc:
                item.problem = str(exc)
                self._release(claim)  # nobody else waits in vain
            return
        if item.claim_owner is None:
            return  # item.problem says why it was not sent
        while time.monotonic() < deadline:  # another process composes it
            item.answer = self._cached(item.key)
            if item.answer is not None:
                self.cached += 1
                return
            if _claim_owner(claim) is None:
                break
            time.sleep(_CLAIM_POLL)
        item.answer = self._cached(item.key)
        if item.answer is not None:
            self.cached += 1
            return
        # The other process stopped (or gave up) without a verdict: compose it here.
        owner, item.claim_owner = item.claim_owner, self._claim(item.key)
        server = self._server(experiment.tool)
        if item.claim_owner is None and isinstance(server, ToolServer):
            self._send(experiment, item, self._write_config(experiment), server)
            if item.server is not None:
                self._wait(experiment, item, deadline)
                return
        item.problem = item.problem or (
            server if isinstance(server, str) else f"process {owner} did not finish composing it"
        )

    def summary(self) -> str | None:
        """The line ``pytest_report_collectionfinish`` shows (None: nothing was checked)."""
        total = self.composed + self.cached
        parts = []
        if total:
            started = sum(isinstance(s, ToolServer) for s in self.servers.values())
            how = []
            if self.composed:
                how.append(
                    f"{self.composed} by {started} compose process(es) in {self.seconds:.1f}s"
                )
            if self.cached:
                how.append(f"{self.cached} unchanged since their last check (cached)")
            parts.append(f"xstash: composed {total} run(s) with their tools: {', '.join(how)}")
        for tool, reason in sorted(self.skipped.items()):
            parts.append(f"xstash: tool '{tool}' is not composed at collection: {reason}")
        return "\n".join(parts) or None

    def close(self) -> None:
        for server in self.servers.values():
            if isinstance(server, ToolServer):
                server.close()
        with self.lock:
            claims = list(self.claims)
        for claim in claims:
            self._release(claim)


def _claim_owner(claim: Path) -> int | None:
    """The pid in a claim file when that process is alive."""
    try:
        pid = int(claim.read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    if pid == os.getpid():
        return pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid
