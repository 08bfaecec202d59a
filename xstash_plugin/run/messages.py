"""The texts of failed runs: what a researcher reads first, so each says what ran, how it
ended, where its logs are, and the tail that explains it."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from xstash_plugin.config.durations import format_duration
from xstash_plugin.config.overrides import display_command
from xstash_plugin.fsutil import tail_lines
from xstash_plugin.launchers.base import RunRequest, RunResult
from xstash_plugin.run.judge import Verdict, verdict_table

STDERR_TAIL = 40
SECTION_TAIL = 200


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "ended without an exit code"
    if returncode < 0:
        return f"was killed by {signal_name(returncode)} (signal {-returncode})"
    return f"exited with code {returncode}"


def expectations_failed(who: str, verdicts: list[Verdict], where: str = "") -> str:
    failed = sum(not v.ok for v in verdicts)
    return (
        f"{who}: {failed} of {len(verdicts)} expectation(s) failed{where}\n"
        f"{verdict_table(verdicts)}"
    )


def _tail(parts: list[str], path: Path | None, label: str, count: int) -> None:
    if path is None:
        return
    lines, _ = tail_lines(path, count)
    if lines:
        parts.append(f"last {len(lines)} lines of {label} ({path}):")
        parts.extend("  " + line for line in lines)


def timeout_report(
    who: str, request: RunRequest, result: RunResult, limit: float | None, source: str
) -> str:
    parts = [
        f"{who}: TIMEOUT after {format_duration(result.duration)} (limit "
        f"{format_duration(limit or 0)}, from {source}); the tool's process tree got SIGTERM, "
        f"then SIGKILL after {format_duration(request.grace)}",
        f"command: {display_command(request.argv)}",
        f"run directory: {request.run_dir}",
    ]
    before = len(parts)
    _tail(parts, request.stderr_path, "stderr", STDERR_TAIL)
    if len(parts) == before:
        parts.append(f"stderr was empty ({request.stderr_path})")
    return "\n".join(parts)


def failure_report(who: str, tool: str, request: RunRequest, result: RunResult) -> str:
    lines, cut = tail_lines(request.stderr_path, STDERR_TAIL)
    headline = (
        f"{who}: tool '{tool}' {describe_exit(result.returncode)} after "
        f"{format_duration(result.duration)}"
    )
    exception = exception_line(lines)
    if exception is not None:
        headline += f": {exception}"
    parts = [
        headline,
        f"command: {display_command(request.argv)}",
        f"cwd: {request.cwd}",
        f"run directory: {request.run_dir}",
    ]
    if lines:
        label = f"last {len(lines)} lines" if cut else "stderr"
        parts.append(f"{label} of {request.stderr_path}:")
        parts.extend("  " + line for line in lines)
    else:
        parts.append(f"stderr was empty ({request.stderr_path}); stdout: {request.stdout_path}")
    return "\n".join(parts)


def slurm_report(
    who: str,
    request: RunRequest,
    job_id: str,
    state: str,
    duration: float,
    returncode: int | None,
    log: Path | None,
) -> str:
    parts = [
        f"{who}: SLURM job {job_id} ended {state} after {format_duration(duration)}"
        + (f" (tool exit code {returncode})" if returncode else ""),
        f"command: {display_command(request.argv)}",
        f"run directory: {request.run_dir}",
    ]
    _tail(parts, request.stdout_path, "stdout", 15)
    _tail(parts, request.stderr_path, "stderr", 15)
    _tail(parts, log, "SLURM job log", 15)
    return "\n".join(parts)


# What a Python traceback ends with: ``ValueError: msg``, ``pkg.mod.SomeError: msg``,
# ``KeyboardInterrupt``. Group 1 is the class name.
_EXCEPTION_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)(?:: .*|:)?")
_EXCEPTION_NAMES = ("Error", "Exception", "Interrupt", "Exit", "Warning")
_EXCEPTION_LINE_MAX = 300  # characters of it in the report's first line


def exception_line(lines: list[str]) -> str | None:
    """The tool's exception line in its stderr tail: the last line that looks like the one
    a Python traceback ends with (``ValueError: msg``, ``pkg.mod.SomeError: msg``,
    ``KeyboardInterrupt``), also under Hydra's short traceback (whose closing hint about
    HYDRA_FULL_ERROR is not one). A class name that does not end in Error, Exception, ...
    counts right after a traceback's indented frame lines. None when there is none."""
    found = None
    in_traceback = after_frame = False
    for line in lines:
        text = line.rstrip()
        match = _EXCEPTION_LINE.fullmatch(text)
        if match and (match.group(1).endswith(_EXCEPTION_NAMES) or after_frame):
            found = text
        if text.lstrip(" |+").startswith("Traceback (most recent call last)"):
            in_traceback = True
        after_frame = in_traceback and text[:1].isspace()
    if found is not None and len(found) > _EXCEPTION_LINE_MAX:
        found = found[: _EXCEPTION_LINE_MAX - 3] + "..."
    return found
