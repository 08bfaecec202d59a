"""``--xstash-compose``: ask each tool to compose each experiment without running it.

Collection then also catches what only the tool knows: a key its structured schema lacks, a
config group option that does not exist, an interpolation into its own config groups. Each check
runs the tool as ``<entrypoint> ... --cfg job --resolve`` (Hydra composes, resolves and prints
the config, and runs nothing). Checks run in parallel across cores (every file of a folder is
submitted before the first is judged), and each verdict is cached by a content key (tool code,
dependencies, config as sent, overrides), so an unchanged config never spawns its tool again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .command import build_argv
from .envs import EnvManager, file_lock
from .errors import EnvError
from .registry import Tool
from .runs import dependency_hash, write_tool_config
from .spec import Experiment

COMPOSE_TIMEOUT = 300.0
_SKIP_DIRS = {".venv", "__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_HYDRA_HINT = "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str = ""
    cached: bool = False


def tool_fingerprint(tool: Tool) -> str:
    """Names, sizes and modification times of the tool's files (not its .venv): cheap, and it
    changes whenever the tool's code or config files do."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(tool.path):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            path = Path(folder, name)
            try:
                stat = path.stat()
            except OSError:
                continue
            rel = path.relative_to(tool.path).as_posix()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(str(dependency_hash(tool.path)).encode())
    return digest.hexdigest()


class ComposeChecker:
    """Runs (or recalls) compose checks; one per pytest process."""

    def __init__(self, state_dir: Path, envs: EnvManager) -> None:
        self.dir = state_dir / "compose"
        self.envs = envs
        self.pool = ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1))
        self.futures: dict[str, Future[Verdict]] = {}
        self.fingerprints: dict[Path, str] = {}
        self.spawned = 0  # tools started to compose
        self.cached = 0  # verdicts recalled from an earlier session

    def key(self, experiment: Experiment, overrides: list[str]) -> str:
        tool = experiment.tool
        if tool.path not in self.fingerprints:
            self.fingerprints[tool.path] = tool_fingerprint(tool)
        blob = json.dumps(
            {
                "tool": tool.name,
                "entrypoint": tool.entrypoint,
                "env": tool.env,
                "code": self.fingerprints[tool.path],
                "name": experiment.name,
                "folder": str(experiment.folder),
                "config": experiment.payload,
                "overrides": overrides,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def submit(self, experiment: Experiment, overrides: list[str]) -> Future[Verdict]:
        key = self.key(experiment, overrides)
        if key not in self.futures:
            self.futures[key] = self.pool.submit(self._check, key, experiment, overrides)
        return self.futures[key]

    def _check(self, key: str, experiment: Experiment, overrides: list[str]) -> Verdict:
        self.dir.mkdir(parents=True, exist_ok=True)
        cache = self.dir / f"{key}.json"
        with file_lock(self.dir / f"{key}.lock"):
            try:
                data: dict[str, Any] = json.loads(cache.read_text())
                self.cached += 1
                return Verdict(bool(data["ok"]), str(data.get("message", "")), cached=True)
            except (OSError, ValueError, KeyError):
                pass
            verdict = self._compose(key, experiment, overrides)
            if verdict.message.startswith("cannot prepare"):
                return verdict  # an environment problem is not a verdict on the config
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"ok": verdict.ok, "message": verdict.message}))
            os.replace(tmp, cache)
            return verdict

    def _compose(self, key: str, experiment: Experiment, overrides: list[str]) -> Verdict:
        try:
            python = self.envs.python_for(experiment.tool)
        except EnvError as exc:
            return Verdict(False, f"cannot prepare the tool's environment: {exc}")
        work = self.dir / key
        work.mkdir(exist_ok=True)
        config_dir = write_tool_config(work, experiment.payload)
        argv = [
            *build_argv(python, experiment, config_dir, work / "run", overrides),
            "--cfg",
            "job",
            "--resolve",
        ]
        env = dict(os.environ, HYDRA_FULL_ERROR="0", PYTHONUNBUFFERED="1")
        self.spawned += 1
        try:
            proc = subprocess.run(
                argv,
                cwd=experiment.tool.path,
                env=env,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=COMPOSE_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Verdict(False, f"composing took longer than {COMPOSE_TIMEOUT:.0f} s")
        if proc.returncode == 0:
            return Verdict(True)
        lines = proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines()
        if "Config search path:" in lines:  # Hydra's listing names our scratch folders
            lines = lines[: lines.index("Config search path:")]
        lines = [line for line in lines if line.strip() != _HYDRA_HINT]
        while lines and not lines[-1].strip():
            lines.pop()
        return Verdict(False, "\n".join(lines[-15:]))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
