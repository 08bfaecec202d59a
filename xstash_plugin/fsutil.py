"""Small file and process helpers every part of xstash shares: its own files written without
following planted links, atomically; the tail of a log; the ``.xstash`` folder; stopping a
process group."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import IO, Any


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


XSTASH_DIR = ".xstash"


def xstash_dir(output_root: Path) -> Path:
    """xstash's own files under an output root (environments, locks, logs, caches)."""
    return output_root / XSTASH_DIR


def atomic_write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (temp file + rename): readers never see half of it.
    The temp file is this process's and thread's own, and never a planted link."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write_own_file(tmp, text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def kill_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False if it is gone (or not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
