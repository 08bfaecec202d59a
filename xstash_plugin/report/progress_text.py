"""What live progress shows of the runs: their label, time against the estimate, and the
last line each tool printed (as a terminal would show it, without escape sequences)."""

from __future__ import annotations

import contextlib
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

from xstash_plugin.config.durations import format_short as short
from xstash_plugin.masking import mask

TAIL_BYTES = 8192  # how much of the end of a log is read for its last line
PLAIN_TEXT = 200  # the most characters of a tool's line shown in a plain progress line

_ESCAPES = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves)
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean(line: str) -> str:
    """What a terminal would show of ``line``: the latest state of a ``\\r`` progress bar,
    without escape sequences or control characters."""
    for segment in reversed(_ESCAPES.sub("", line).split("\r")):
        text = _CONTROLS.sub("", segment.replace("\t", " ")).strip()
        if text:
            return text
    return ""


def last_line(path: Path) -> str:
    """The last non-empty line of a log, reading at most its last ``TAIL_BYTES``."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - TAIL_BYTES))
            data = log.read(TAIL_BYTES)
    except OSError:
        return ""
    for line in reversed(data.decode("utf-8", errors="replace").split("\n")):
        text = clean(line)
        if text:
            return text
    return ""


def latest_output(paths: list[Path]) -> str:
    """The last line of whichever log changed last (tools print progress bars on stderr)."""
    stamped = []
    for path in paths:
        with contextlib.suppress(OSError):
            info = path.stat()
            if info.st_size:
                stamped.append((info.st_mtime_ns, path))
    for _, path in sorted(stamped, reverse=True):
        text = last_line(path)
        if text:
            return text
    return ""


def cells(text: str) -> int:
    """Terminal columns taken by ``text``."""
    return sum(_cell(char) for char in text)


def _cell(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def fit(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` terminal columns."""
    if cells(text) <= width:
        return text
    used = 0
    for index, char in enumerate(text):
        used += _cell(char)
        if used > width - 1:
            return text[:index] + "…"
    return text


def describe(runs: list[dict[str, Any]], now: float) -> list[tuple[str, str, str]]:
    """(label, timing, last output line) of each run."""
    rows = []
    for run in runs:
        label = f"{run.get('name')} ({run.get('tool')})"
        elapsed = max(0.0, now - float(run.get("started") or now))
        timing = short(elapsed)
        estimate = run.get("estimated_seconds")
        if isinstance(estimate, (int, float)) and estimate > 0:
            timing += f" / est {short(estimate)}"
            if elapsed > estimate:
                timing += " (over)"
        paths = [Path(run[key]) for key in ("stdout", "stderr") if run.get(key)]
        rows.append((label, timing, mask(latest_output(paths))))
    return rows


def plain_lines(runs: list[dict[str, Any]], now: float) -> list[str]:
    lines = []
    for label, timing, text in describe(runs, now):
        tail = f" | {fit(text, PLAIN_TEXT)}" if text else ""
        lines.append(f"xstash: running {label} {timing}{tail}")
    return lines


def block_lines(runs: list[dict[str, Any]], now: float, width: int) -> list[str]:
    if not runs:
        return []
    rows = describe(runs, now)
    label_width = max(cells(label) for label, _, _ in rows)
    timing_width = max(len(timing) for _, timing, _ in rows)
    lines = [f"xstash: {len(rows)} running"]
    for label, timing, text in rows:
        line = f"  {label}{' ' * (label_width - cells(label))}  {timing:<{timing_width}}"
        lines.append(line + f" | {text}" if text else line.rstrip())
    return [fit(line, width - 1) for line in lines]
