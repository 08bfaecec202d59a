"""Per-tool Python environments, prepared at most once per tool per pytest session.

``env: uv`` tools get ``<tool>/.venv``, made with uv from the tool's ``pyproject.toml``
(``uv sync``) or ``requirements.txt`` (``uv venv`` + ``uv pip install``). Under pytest-xdist every
worker may ask for the same tool at once: a file lock per tool serialises them, and a stamp file
naming the pytest session tells the later ones that the work is already done (or already failed,
with uv's message), so a tool is synced once per session whatever the number of workers.

What an environment holds (``uv pip freeze``, and the Python) is kept once per distinct
environment as ``<output root>/.xstash/environments/<hash>.txt``, a requirements file each run
record names by its hash: taken when xstash builds the environment (the workers of the session
read it from the stamp), once per process for interpreters it does not build.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

from xstash_plugin.config.registry import Tool
from xstash_plugin.errors import EnvError
from xstash_plugin.fsutil import atomic_write, write_own_file
from xstash_plugin.run.provenance import dependency_hash, python_version_of

SYNC_LOG = "sync.log"
ENVIRONMENTS = "environments"

# Bytecode for every module of the environment, written when it is built or its dependencies
# change: a run then imports Hydra from .pyc files even where Python may not write them itself
# (PYTHONDONTWRITEBYTECODE=1, as in many container images, or a read-only tool folder), which
# takes a bare Hydra run from ~0.7-0.9 s to ~0.35-0.5 s here. Only then: uv compiles (checks)
# the whole site-packages each time it is asked, ~50 ms for a sync with nothing to do instead
# of ~15 ms, so the stamp remembers the dependency files it was last done for.
COMPILE = ("--compile-bytecode",)


def find_uv() -> str:
    """The uv executable: the one installed with xstash (the ``uv`` package), else on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise EnvError(
                "uv is not installed: install xstash's dependencies (pip install -e .) "
                "or put uv on PATH"
            ) from None
        return found


def venv_python(venv: Path) -> Path:
    if os.name == "nt":  # pragma: no cover - xstash is tested on POSIX
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def tool_environ(tool: Tool) -> dict[str, str]:
    """The environment a tool runs (and composes) in: pytest's own, unbuffered, with the tool's
    virtual environment active for ``env: uv`` tools. HYDRA_FULL_ERROR stays the user's:
    passed on as set, never added."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if tool.env == "uv":
        venv = tool.path / ".venv"
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = str(venv_python(venv).parent) + os.pathsep + env.get("PATH", "")
    else:
        env.pop("VIRTUAL_ENV", None)
    return env


def uv_environ() -> dict[str, str]:
    """The environment uv runs with: never download interpreters, never reuse our own venv."""
    env = dict(os.environ)
    for key in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "CONDA_PREFIX"):
        env.pop(key, None)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_NO_PROGRESS"] = "1"
    return env


def file_lock(path: Path) -> AbstractContextManager[object]:
    """An inter-process lock on ``path`` (filelock is imported only here: ~20 ms, asyncio)."""
    from filelock import FileLock

    if path.is_symlink():  # filelock would open (and truncate) whatever the link points to
        raise OSError(errno.ELOOP, f"{path} is a symbolic link xstash did not make; remove it")
    return FileLock(str(path))


def sync_commands(tool: Tool, uv: str, compile_bytecode: bool) -> list[list[str]]:
    """The uv commands that make ``tool``'s environment, in order (``compile_bytecode``: and
    write the bytecode of all it holds)."""
    python = tool.python or sys.executable
    venv = tool.path / ".venv"
    extra = COMPILE if compile_bytecode else ()
    if (tool.path / "pyproject.toml").is_file():
        return [[uv, "sync", "--project", str(tool.path), "--python", python, *extra]]
    if (tool.path / "requirements.txt").is_file():
        commands = []
        if not venv_python(venv).exists():
            commands.append([uv, "venv", "--python", python, str(venv)])
        commands.append(
            [
                uv,
                "pip",
                "install",
                "--python",
                str(venv_python(venv)),
                "-r",
                str(tool.path / "requirements.txt"),
                *extra,
            ]
        )
        return commands
    raise EnvError(
        f"tool '{tool.name}' has neither pyproject.toml nor requirements.txt in {tool.path}: "
        "add one listing the tool's dependencies (hydra-core at least), or set "
        "'env: system' for it in meta.yaml to use the interpreter running pytest"
    )


def freeze(python: str) -> str | None:
    """What ``python``'s environment holds, as a requirements file: its Python version (a
    comment) and ``uv pip freeze``; None when uv cannot tell."""
    try:
        command = [find_uv(), "pip", "freeze", "--python", python]
        proc = subprocess.run(
            command,
            env=uv_environ(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (EnvError, OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    version = python_version_of(python) or (
        ".".join(map(str, sys.version_info[:3])) if python == sys.executable else "unknown"
    )
    return f"# python {version}\n{proc.stdout}"


def keep_environment(folder: Path, text: str) -> str:
    """Keep ``text`` (see :func:`freeze`) as ``folder/<hash>.txt`` unless it is there already
    (atomically: workers and sessions may keep the same one at once); its hash."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = folder / f"{digest}.txt"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
    return digest


class EnvManager:
    """Hands out each tool's python, preparing ``env: uv`` environments on first use."""

    def __init__(self, state_dir: Path, session_id: str) -> None:
        self.state_dir = state_dir / "envs"
        self.environments = state_dir / ENVIRONMENTS
        self.session_id = session_id
        self._done: dict[str, str | EnvError] = {}
        self._frozen: dict[str, str | None] = {}  # python -> its environment's hash

    def environment(self, python: str) -> tuple[str, Path] | None:
        """The hash and file of ``python``'s environment (see :func:`freeze`): taken when
        :meth:`python_for` built it, else now, once per process; None if it cannot be had."""
        if python not in self._frozen:
            self._frozen[python] = self._keep(python)
        digest = self._frozen[python]
        return None if digest is None else (digest, self.environments / f"{digest}.txt")

    def _keep(self, python: str) -> str | None:
        text = freeze(python)
        if text is None:
            return None
        try:
            return keep_environment(self.environments, text)
        except OSError:
            return None

    def python_for(self, tool: Tool) -> str:
        """The interpreter to run ``tool`` with; raises :class:`EnvError` if it cannot be had."""
        if tool.env == "system":
            return sys.executable
        if tool.env != "uv":
            return tool.env
        key = str(tool.path)
        if key not in self._done:
            try:
                self._done[key] = self._prepare(tool)
            except EnvError as exc:
                self._done[key] = exc
            except OSError as exc:  # xstash's own files: its lock, stamp and log
                self._done[key] = EnvError(
                    f"xstash cannot write its environment state in {self.state_dir}: {exc}\n"
                    f"fix: make {self.state_dir} a writable folder (or remove what is in its "
                    "way), or choose another output root with --xstash-output-root"
                )
        result = self._done[key]
        if isinstance(result, EnvError):
            raise result
        return result

    def _prepare(self, tool: Tool) -> str:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(str(tool.path).encode()).hexdigest()[:12]
        base = self.state_dir / f"{tool.path.name}-{digest}"
        stamp = base.with_suffix(".stamp")
        python = str(venv_python(tool.path / ".venv"))
        with file_lock(base.with_suffix(".lock")):
            try:
                previous = json.loads(stamp.read_text())
            except (OSError, ValueError):
                previous = {}
            if previous.get("session") == self.session_id:
                if previous.get("ok"):
                    self._frozen[python] = previous.get("environment")
                    return python
                raise EnvError(str(previous.get("message", "environment preparation failed")))
            started = time.perf_counter()
            ok, message = True, ""
            # Compile unless the last sync did for these very dependency files.
            compiled = previous.get("compiled")
            compile_bytecode = not (
                compiled and compiled == dependency_hash(tool.path) and os.path.exists(python)
            )
            try:
                self._sync(tool, compile_bytecode)
            except EnvError as exc:
                ok, message = False, str(exc)
            seconds = time.perf_counter() - started
            if ok and compile_bytecode:
                compiled = dependency_hash(tool.path)  # uv sync may have written uv.lock
            if ok:  # what it holds now, once per build (the session's other workers: the stamp)
                self._frozen[python] = self._keep(python)
            write_own_file(
                stamp,
                json.dumps(
                    {
                        "session": self.session_id,
                        "ok": ok,
                        "message": message,
                        "compiled": compiled if ok else None,
                        "environment": self._frozen.get(python) if ok else None,
                    }
                ),
            )
            write_own_file(
                self.state_dir / SYNC_LOG,
                json.dumps(
                    {
                        "session": self.session_id,
                        "tool": tool.name,
                        "pid": os.getpid(),
                        "ok": ok,
                        "compiled": ok and compile_bytecode,
                        "seconds": round(seconds, 3),
                    }
                )
                + "\n",
                append=True,
            )
        if not ok:
            raise EnvError(message)
        return python

    def _sync(self, tool: Tool, compile_bytecode: bool) -> None:
        uv = find_uv()
        for command in sync_commands(tool, uv, compile_bytecode):
            try:
                proc = subprocess.run(
                    command,
                    cwd=tool.path,
                    env=uv_environ(),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    check=False,
                )
            except OSError as exc:
                raise EnvError(f"cannot run uv ({command[0]}): {exc}") from None
            if proc.returncode != 0:
                output = (proc.stderr.strip() or proc.stdout.strip())[-4000:]
                raise EnvError(
                    f"preparing the environment of tool '{tool.name}' failed: "
                    f"uv {command[1]} exited with {proc.returncode}\n"
                    f"command: {' '.join(command)}\n"
                    f"uv says:\n{output}\n"
                    f"fix the tool's dependencies in {tool.path}, then try "
                    f"'cd {tool.path} && uv sync' by hand"
                )
        if not venv_python(tool.path / ".venv").exists():
            raise EnvError(f"uv finished but {venv_python(tool.path / '.venv')} does not exist")


_UV_VERSION: list[str | None] = []


def uv_version() -> str | None:
    """``uv --version``, asked once per process."""
    if not _UV_VERSION:
        try:
            proc = subprocess.run(
                [find_uv(), "--version"], capture_output=True, text=True, timeout=30, check=False
            )
            _UV_VERSION.append(proc.stdout.strip().removeprefix("uv ") or None)
        except (OSError, EnvError, subprocess.TimeoutExpired):
            _UV_VERSION.append(None)
    return _UV_VERSION[0]
