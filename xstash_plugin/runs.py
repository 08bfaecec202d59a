"""Run directories and run records: every run gets its own folder and leaves ``xstash.json``."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from .masking import mask_data
from .yamlio import dump_yaml

RECORD_NAME = "xstash.json"
CONFIG_DIR = "xstash_config"
CONFIG_NAME = "xstash_experiment"


def content_key(payload: dict[str, Any]) -> str:
    """A short, stable hash of the tool's config as sent."""
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def new_run_dir(output_root: Path, rel_config: Path, key: str) -> Path:
    """Create ``<root>/<config path>/<timestamp>-<key>[-N]``, unique even for concurrent runs."""
    rel = rel_config.with_suffix("")
    if not rel.parts or any(part in ("", ".", "..") for part in rel.parts) or rel.is_absolute():
        # Collection refuses such names; this keeps every run directory inside the root.
        raise OSError(errno.EINVAL, f"the config path {rel_config} cannot name a run directory")
    parent = output_root / rel
    parent.mkdir(parents=True, exist_ok=True)
    if not parent.resolve().is_relative_to(output_root.resolve()):
        # A link planted in the output root must not send runs (and their logs) elsewhere.
        raise OSError(
            errno.EPERM,
            f"{parent} leads outside the output root (to {parent.resolve()}) through a symbolic "
            "link xstash did not make; remove the link",
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        name = f"{stamp}-{key}" + (f"-{attempt}" if attempt else "")
        try:
            (parent / name).mkdir()
        except FileExistsError:
            continue
        return parent / name
    raise OSError(f"could not create a unique run directory under {parent}")


def open_own_file(path: Path, append: bool = False, binary: bool = False) -> IO[Any]:
    """Open one of xstash's own files for writing (or appending), never through a symbolic link
    someone planted there (OSError 'Too many levels of symbolic links' instead)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o644)
    if binary:
        return os.fdopen(fd, "ab" if append else "wb")
    return os.fdopen(fd, "a" if append else "w", encoding="utf-8")


def write_own_file(path: Path, text: str, append: bool = False) -> None:
    """Write (or append to) one of xstash's own files (see :func:`open_own_file`)."""
    with open_own_file(path, append) as handle:
        handle.write(text)


def write_tool_config(run_dir: Path, payload: dict[str, Any]) -> Path:
    """Write the tool's view of the config where Hydra will find it; returns its folder."""
    folder = run_dir / CONFIG_DIR
    folder.mkdir(exist_ok=True)
    text = dump_yaml(payload)
    write_own_file(folder / f"{CONFIG_NAME}.yaml", text)
    return folder


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``xstash.json`` atomically (temp file + rename): readers never see half a record."""
    target = run_dir / RECORD_NAME
    tmp = run_dir / f".{RECORD_NAME}.{os.getpid()}.tmp"
    text = json.dumps(mask_data(record), indent=2, default=str, ensure_ascii=False)
    write_own_file(tmp, text)
    os.replace(tmp, target)


def read_record(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / RECORD_NAME).read_text(encoding="utf-8"))
    return data


def tail_lines(path: Path, count: int, max_bytes: int = 256 * 1024) -> tuple[list[str], bool]:
    """The last ``count`` lines of ``path`` reading at most ``max_bytes``; and whether cut."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            if size > max_bytes:
                handle.seek(size - max_bytes)
            data = handle.read()
    except OSError:
        return [], False
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first one is probably a partial line
    cut = size > max_bytes or len(lines) > count
    return lines[-count:], cut


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


def recover_crashed_run(output_root: Path, nodeid: str, session: str, reason: str) -> list[Path]:
    """Mark the still-'running' records of ``nodeid`` in ``session`` as errors, and kill their
    tools' process groups, which outlived the process that started them. Returns the run dirs."""
    import signal

    folder = output_root / Path(nodeid.split("::", 1)[0]).with_suffix("")
    found = []
    try:
        candidates = sorted(p for p in folder.iterdir() if (p / RECORD_NAME).is_file())
    except OSError:
        return []
    for run_dir in candidates:
        try:
            record = read_record(run_dir)
        except (OSError, ValueError):
            continue
        if (
            record.get("status") != "running"
            or record.get("nodeid") != nodeid
            or record.get("session") != session
        ):
            continue
        pid = record.get("tool_pid")
        if isinstance(pid, int) and pid > 1 and _is_group_leader(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        record.update(status="error", error=reason, ended=time.time())
        write_record(run_dir, record)
        found.append(run_dir)
    return found


def _is_group_leader(pid: int) -> bool:
    # Guards against a recycled pid: only a process group led by that pid is ours to kill.
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False
