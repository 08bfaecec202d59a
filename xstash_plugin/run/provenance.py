"""Run keys: a content hash of everything that decides a run's result, and its ingredients.

The key covers the tool's name, the tool's code (tracked files and uncommitted changes of its
folder, through git where the folder is in a repository, file contents otherwise), its
dependency spec, the tool's config as sent (sweep point and overrides applied), and the contents
of the input files or folders a config declares in ``xstash.inputs``. Timeouts, tags,
descriptions and expectations are not part of it: changing them never forces a rerun.

Hashing is cheap and done once per tool (or input) per pytest process: git answers from its
own index for tracked files, and only changed or untracked files are read. Each ingredient's
own hash is kept too (:class:`KeyParts`), with what explains a change of it (the tool's files
and their blob ids, the config's values), so a rerun can say why (run/rerun.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstash_plugin.config.layout import SKIP_DIRS


def _file_digests(path: Path) -> tuple[str, str]:
    """The file's sha256 (what keys hash) and its git blob id (what :data:`Files` maps keep,
    so a file reads the same whether git or a plain walk saw it)."""
    digest = hashlib.sha256()
    try:
        size = path.stat().st_size
        blob = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                blob.update(chunk)
    except OSError as exc:
        return f"unreadable:{exc.errno}", f"unreadable:{exc.errno}"
    return digest.hexdigest(), blob.hexdigest()[:BLOB_CHARS]


def _file_digest(path: Path) -> str:
    return _file_digests(path)[0]


# A folder's files: relative path -> git blob id (shortened); what explains a changed tree.
Files = dict[str, str]
BLOB_CHARS = 12
MAX_TREE_FILES = 20_000  # beyond this a tree's file list is not kept (only its digest)


def _walk(folder: Path) -> list[Path]:
    files: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        files.extend(Path(root, name) for name in sorted(names))
    return files


def tree_files_plain(folder: Path) -> tuple[str, Files]:
    """Contents of every file below ``folder`` (environments and caches left out): the digest
    and each file's blob id."""
    digest = hashlib.sha256()
    files: Files = {}
    for path in _walk(folder):
        rel = path.relative_to(folder).as_posix()
        content, blob = _file_digests(path)
        digest.update(f"{rel}\0{content}\n".encode())
        files[rel] = blob
    return digest.hexdigest(), files


def tree_digest_plain(folder: Path) -> str:
    """Contents of every file below ``folder`` (environments and caches left out)."""
    return tree_files_plain(folder)[0]


def tree_files_git(folder: Path) -> tuple[str, Files] | None:
    """The folder's tracked blobs (from git's index) plus the contents of whatever differs from
    them (modified, untracked, deleted): the digest, and each file's blob id (a changed file's
    computed from its contents); None when the folder is not in a git work tree."""
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
    files: Files = {}
    for entry in filter(None, staged.split("\0")):
        meta, _, rel = entry.partition("\t")
        fields = meta.split()
        if len(fields) >= 2:
            files[rel] = fields[1][:BLOB_CHARS]
    for rel in sorted(set(filter(None, changed.split("\0")))):
        path = folder / rel
        if any(part in SKIP_DIRS for part in Path(rel).parts):
            continue
        if path.is_file():
            state, files[rel] = _file_digests(path)
        else:
            state = "deleted"
            files.pop(rel, None)
        digest.update(f"changed:{rel}\0{state}\n".encode())
    return digest.hexdigest(), files


def tree_digest_git(folder: Path) -> str | None:
    """The folder's tracked blobs plus the contents of whatever differs from them; None when
    the folder is not in a git work tree (see :func:`tree_files_git`)."""
    found = tree_files_git(folder)
    return None if found is None else found[0]


def tree_files(folder: Path) -> tuple[str, Files]:
    return tree_files_git(folder) or tree_files_plain(folder)


def tree_digest(folder: Path) -> str:
    return tree_files(folder)[0]


def short_hash(value: Any) -> str:
    """A 16-hex hash of a JSON value (the form of every key ingredient's hash)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class KeyParts:
    """A run key and what it is made of. ``ingredients``: each ingredient's hash (the record's
    ``key_ingredients``); ``details``: what explains a change of one (``key_details``: the
    dependency files' and inputs' digests, the config's values flattened); ``trees``: the file
    lists of the hashed folders (the tool's code, folder inputs) by their ingredient hash, kept
    once per output root (see run/rerun.py); ``overrides``: as sent."""

    key: str
    ingredients: dict[str, str | None]
    details: dict[str, Any]
    trees: dict[str, Files]
    overrides: list[str]


class KeyMaker:
    """Run keys for one pytest process, with each tool and input hashed once."""

    def __init__(self) -> None:
        self._trees: dict[Path, str] = {}
        self._files: dict[Path, Files] = {}
        self.stored: set[str] = set()  # tree file lists this process has kept (run/rerun.py)

    def tree(self, folder: Path) -> str:
        if folder not in self._trees:
            self._trees[folder], self._files[folder] = tree_files(folder)
        return self._trees[folder]

    def files(self, folder: Path) -> Files | None:
        """The files of a folder :meth:`tree` hashed (None for a file, or too many to keep)."""
        found = self._files.get(folder)
        return found if found is not None and len(found) <= MAX_TREE_FILES else None

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
        return self.parts(tool_name, tool_path, config, overrides, inputs).key

    def parts(
        self,
        tool_name: str,
        tool_path: Path,
        config: dict[str, Any],
        overrides: list[str],
        inputs: dict[str, Path],
        upstream: dict[str, str] | None = None,
    ) -> KeyParts:
        """The run key of a run, and its ingredients. The key is the hash of all of them (as
        it always was: an upstream, when there is one, is added), so it changes exactly when
        one of them does."""
        code = self.tree(tool_path)
        dependencies, dependency_files = dependency_parts(tool_path)
        digests = {name: self.path(path) for name, path in sorted(inputs.items())}
        blob: dict[str, Any] = {
            "tool": tool_name,
            "code": code,
            "dependencies": dependencies,
            "config": config,
            "overrides": overrides,
            "inputs": digests,
        }
        if upstream:
            blob["upstream"] = upstream
        key = hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()
        trees = {code[:16]: self.files(tool_path)}
        trees.update({d[:16]: self.files(inputs[n]) for n, d in digests.items()})
        flat, left_out = flatten_config(config)
        details: dict[str, Any] = {
            "dependencies": dependency_files,
            "config": flat,
            "inputs": {name: digest[:16] for name, digest in digests.items()},
        }
        if left_out:
            details["config_left_out"] = left_out
        if upstream:
            details["upstream"] = {name: str(key)[:16] for name, key in sorted(upstream.items())}
        return KeyParts(
            key=key[:32],
            ingredients={
                "tool": tool_name,
                "code": code[:16],
                "dependencies": dependencies,
                "config": short_hash(config),
                "overrides": short_hash(overrides),
                "inputs": short_hash(digests),
                "upstream": short_hash(upstream) if upstream else None,
            },
            details=details,
            trees={h: files for h, files in trees.items() if files is not None},
            overrides=list(overrides),
        )


MAX_CONFIG_VALUES = 300  # flattened config values a record keeps
MAX_VALUE_CHARS = 60


def flatten_config(config: Any) -> tuple[dict[str, str], int]:
    """The config as ``dotted.key[i] -> short JSON text`` (at most :data:`MAX_CONFIG_VALUES`,
    each cut to :data:`MAX_VALUE_CHARS`), and how many values were left out."""
    flat: dict[str, str] = {}
    left_out = 0

    def visit(value: Any, name: str) -> None:
        nonlocal left_out
        if isinstance(value, dict) and value:
            for key, item in value.items():
                visit(item, f"{name}.{key}" if name else str(key))
        elif isinstance(value, list) and value:
            for index, item in enumerate(value):
                visit(item, f"{name}[{index}]")
        elif len(flat) >= MAX_CONFIG_VALUES:
            left_out += 1
        else:
            text = json.dumps(value, default=str, ensure_ascii=False)
            cut = len(text) > MAX_VALUE_CHARS
            flat[name] = text[: MAX_VALUE_CHARS - 3] + "..." if cut else text

    visit(config, "")
    return flat, left_out


DEPENDENCY_FILES = ("pyproject.toml", "requirements.txt", "uv.lock")


def dependency_parts(tool_dir: Path) -> tuple[str | None, dict[str, str]]:
    """Hash of the tool's dependency spec and local lock, if any (None when it has none), and
    each of those files' own digest (what explains a change)."""
    digest = hashlib.sha256()
    files: dict[str, str] = {}
    for name in DEPENDENCY_FILES:
        path = tool_dir / name
        if path.is_file():
            data = path.read_bytes()
            files[name] = hashlib.sha256(data).hexdigest()[:16]
            digest.update(name.encode() + b"\0" + data + b"\0")
    return (digest.hexdigest()[:16] if files else None), files


def dependency_hash(tool_dir: Path) -> str | None:
    """Hash of the tool's dependency spec and local lock, if any (None when it has none)."""
    return dependency_parts(tool_dir)[0]


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


MAX_DIFF_BYTES = 1 << 20  # tool.diff keeps at most this much of ``git diff``


def uncommitted_diff(folder: Path, limit: int = MAX_DIFF_BYTES) -> str | None:
    """``git diff HEAD`` of the tracked files below ``folder`` (what a dirty tree changed), at
    most ``limit`` bytes with a note when cut; None when nothing differs or git cannot say."""
    import subprocess

    command = ["git", "-C", str(folder), "diff", "HEAD", "--no-color", "--no-ext-diff", "--", "."]
    try:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
    except OSError:
        return None
    assert proc.stdout is not None
    with proc:
        data = proc.stdout.read(limit + 1)
        cut = len(data) > limit
        if cut:
            proc.kill()
            data = data[:limit]
        if proc.wait() != 0 and not cut:
            return None
    if not data.strip():
        return None
    text = data.decode("utf-8", errors="replace")
    if cut:
        text = text[: text.rfind("\n") + 1]
        text += f"# xstash: cut here, the diff is longer than {limit:,} bytes\n"
    return text


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
