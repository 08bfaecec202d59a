"""The compose verdicts, cached by content: the tool's files, the experiment's folder of
fragments, the config as sent and the overrides. An unchanged config never reaches its tool
again.

Several pytest processes (xdist workers) share the work through claim files: a verdict another
live process is composing is waited for, not composed twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from xstash_plugin.config.compose_client import Answer
from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.layout import SKIP_DIRS, SUFFIXES, is_fragment
from xstash_plugin.config.registry import Tool
from xstash_plugin.fsutil import atomic_write
from xstash_plugin.run.provenance import dependency_hash

CHECK_VERSION = "3"  # part of every cache key: a new check makes old verdicts stale
# What can change a verdict: code, configs, dependency specs. Not what runs leave behind in the
# tool's folder (log files of a tool whose logging is relative to its working directory).
_SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini", ".txt", ".lock")


def tool_fingerprint(tool: Tool) -> str:
    """Names, sizes and modification times of the tool's code and config files (not its
    .venv): cheap, and it changes whenever they do."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(tool.path):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
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
            if not is_fragment(entry.name):
                continue
            if entry.is_file() and entry.name.endswith(SUFFIXES):
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


class VerdictCache:
    """The verdicts in ``<state dir>/compose`` (one JSON file per key), and the claims of this
    process on the ones it is composing."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.fingerprints: dict[Path, str] = {}
        self.folders: dict[Path, str] = {}
        self.claims: set[Path] = set()  # claim files of this process not yet answered
        self.lock = threading.Lock()  # guards claims (the reader threads release them)

    def key(self, experiment: Experiment, overrides: list[str]) -> str:
        """The key of one run of ``experiment``: everything that can change its verdict."""
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
                "overrides": overrides,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def recall(self, key: str) -> Answer | None:
        """The cached verdict of ``key`` (None: none, or unreadable)."""
        try:
            data: dict[str, Any] = json.loads((self.dir / f"{key}.json").read_text())
            errors = list(data.get("errors") or [])
            return Answer(bool(data["ok"]), errors, [], bool(data.get("hydra_ok")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, key: str, answer: Answer) -> None:
        """Runs in a server's reader thread: the verdict, then the claim released."""
        path = self.dir / f"{key}.json"
        with contextlib.suppress(OSError):
            verdict = {"ok": answer.ok, "hydra_ok": answer.hydra_ok, "errors": answer.errors}
            atomic_write(path, json.dumps(verdict))
        self.release(key)

    def claim_path(self, key: str) -> Path:
        return self.dir / f"{key}.claim"

    def claim(self, key: str) -> int | None:
        """Claim ``key`` for this process; the pid of a live process that holds it instead."""
        claim = self.claim_path(key)
        for _ in range(3):
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.owner(key)
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

    def release(self, key: str) -> None:
        self._release(self.claim_path(key))

    def _release(self, claim: Path) -> None:
        with self.lock:
            self.claims.discard(claim)
        with contextlib.suppress(OSError):
            claim.unlink()

    def release_all(self) -> None:
        """Release every claim of this process (the verdicts it will not give)."""
        with self.lock:
            claims = list(self.claims)
        for claim in claims:
            self._release(claim)

    def owner(self, key: str) -> int | None:
        """The pid in the claim file of ``key`` when that process is alive."""
        try:
            pid = int(self.claim_path(key).read_text().strip() or "0")
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
