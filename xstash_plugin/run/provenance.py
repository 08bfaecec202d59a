"""Run keys: a content hash of everything that decides a run's result.

The key covers the tool's name, the tool's code (tracked files and uncommitted changes of its
folder, through git where the folder is in a repository, file contents otherwise), its
dependency spec, the tool's config as sent (sweep point and overrides applied), and the contents
of the input files or folders a config declares in ``xstash.inputs``. Timeouts, tags,
descriptions and expectations are not part of it: changing them never forces a rerun.

Hashing is cheap and done once per tool (or input) per pytest process: git answers from its
own index for tracked files, and only changed or untracked files are read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from xstash_plugin.config.layout import SKIP_DIRS


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return digest.hexdigest()


def _walk(folder: Path) -> list[Path]:
    files: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        files.extend(Path(root, name) for name in sorted(names))
    return files


def tree_digest_plain(folder: Path) -> str:
    """Contents of every file below ``folder`` (environments and caches left out)."""
    digest = hashlib.sha256()
    for path in _walk(folder):
        rel = path.relative_to(folder).as_posix()
        digest.update(f"{rel}\0{_file_digest(path)}\n".encode())
    return digest.hexdigest()


def tree_digest_git(folder: Path) -> str | None:
    """The folder's tracked blobs (from git's index) plus the contents of whatever differs from
    them (modified, untracked, deleted); None when the folder is not in a git work tree."""
    staged = git_output(folder, "ls-files", "-s", "-z", "--", ".")
    if staged is None:
        return None
    changed = git_output(
        folder, "ls-files", "-m", "-o", "-d", "--exclude-standard", "-z", "--", "."
    )
    if changed is None:
        return None
    digest = hashlib.sha256()
    digest.update(staged.encode())
    for rel in sorted(set(filter(None, changed.split("\0")))):
        path = folder / rel
        if any(part in SKIP_DIRS for part in Path(rel).parts):
            continue
        state = _file_digest(path) if path.is_file() else "deleted"
        digest.update(f"changed:{rel}\0{state}\n".encode())
    return digest.hexdigest()


def tree_digest(folder: Path) -> str:
    return tree_digest_git(folder) or tree_digest_plain(folder)


class KeyMaker:
    """Run keys for one pytest process, with each tool and input hashed once."""

    def __init__(self) -> None:
        self._trees: dict[Path, str] = {}

    def tree(self, folder: Path) -> str:
        if folder not in self._trees:
            self._trees[folder] = tree_digest(folder)
        return self._trees[folder]

    def path(self, path: Path) -> str:
        """An input file or folder's content digest ('missing' when it does not exist)."""
        if path.is_dir():
            return self.tree(path)
        if path not in self._trees:
            self._trees[path] = _file_digest(path) if path.is_file() else "missing"
        return self._trees[path]

    def run_key(
        self,
        tool_name: str,
        tool_path: Path,
        config: dict[str, Any],
        overrides: list[str],
        inputs: dict[str, Path],
    ) -> str:
        blob = json.dumps(
            {
                "tool": tool_name,
                "code": self.tree(tool_path),
                "dependencies": dependency_hash(tool_path),
                "config": config,
                "overrides": overrides,
                "inputs": {name: self.path(path) for name, path in sorted(inputs.items())},
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


DEPENDENCY_FILES = ("pyproject.toml", "requirements.txt", "uv.lock")


def dependency_hash(tool_dir: Path) -> str | None:
    """Hash of the tool's dependency spec and local lock, if any (None when it has none)."""
    digest = hashlib.sha256()
    found = False
    for name in DEPENDENCY_FILES:
        path = tool_dir / name
        if path.is_file():
            found = True
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16] if found else None


def git_output(folder: Path, *args: str) -> str | None:
    """``git -C folder ARGS``'s output, or None when git fails (no repository, no git)."""
    import subprocess

    try:
        proc = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(folder: Path) -> dict[str, Any]:
    """The commit of the repository holding ``folder`` and whether ``folder`` has changes."""

    def git(*args: str) -> str | None:
        out = git_output(folder, *args)
        return None if out is None else out.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=normal", "--", ".")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def python_version_of(python: str) -> str | None:
    """A venv interpreter's version from its pyvenv.cfg, without starting it."""
    cfg = Path(python).parent.parent / "pyvenv.cfg"
    try:
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return value.strip()
    except OSError:
        return None
    return None
