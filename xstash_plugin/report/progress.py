"""Live progress: which experiments run, for how long, against their estimate, and what each
tool printed last.

A run announces itself with a small JSON file in ``<output root>/.xstash/progress/<session>/``
(written by whichever process runs it: the only one, or an xdist worker) and removes it when it
ends. The process that owns the terminal (the controller under xdist) reads those files from a
daemon thread and shows them: in a terminal, a status block below pytest's own output, redrawn
in place; otherwise (a pipe, CI, ``--xstash-progress=plain``) a plain line per running
experiment every ``xstash_progress_interval``. Only the end of each log is ever read.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import threading
import time
import unicodedata
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from xstash_plugin.config.durations import parse_duration
from xstash_plugin.fsutil import write_own_file
from xstash_plugin.masking import mask

if TYPE_CHECKING:
    from xstash_plugin.launchers.local import RunRequest
    from xstash_plugin.run.items import ExperimentItem
    from xstash_plugin.session import State

MODES = ("auto", "tty", "plain", "off")
PROGRESS_HELP = (
    "show the experiments that are running, for how long, against their estimated_runtime, "
    "and the last line each tool printed: auto (default: a live block in a terminal, plain "
    "lines every xstash_progress_interval otherwise or under CI; off under -s), "
    "tty, plain or off"
)
INTERVAL_HELP = "seconds between plain progress lines (not in a terminal or under CI; default 30s)"
DEFAULT_INTERVAL = "30s"
TTY_REFRESH = 1.0  # seconds between redraws of the live block
TAIL_BYTES = 8192  # how much of the end of a log is read for its last line
PLAIN_TEXT = 200  # the most characters of a tool's line shown in a plain progress line

_ESCAPES = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves)
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

TRACKER_KEY = pytest.StashKey["Tracker"]()
_ANNOUNCED = pytest.StashKey[Path]()


def addoption(parser: pytest.Parser, group: pytest.OptionGroup) -> None:
    group.addoption(
        "--xstash-progress",
        dest="xstash_progress",
        default=None,
        choices=MODES,
        help=PROGRESS_HELP,
    )
    parser.addini("xstash_progress", PROGRESS_HELP, default="auto")
    parser.addini("xstash_progress_interval", INTERVAL_HELP, default=DEFAULT_INTERVAL)


def setup(config: pytest.Config, state: State) -> None:
    """Register the run tracker (every process) and, in the terminal's owner, the display."""
    folder = state.output_root / ".xstash" / "progress" / state.session_id
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # the controller decided, and told us
        if workerinput.get("xstash_progress"):
            config.stash[TRACKER_KEY] = Tracker(folder)
            config.pluginmanager.register(config.stash[TRACKER_KEY], "xstash-progress-tracker")
        return
    mode = _requested_mode(config)
    interval_text = str(config.getini("xstash_progress_interval") or DEFAULT_INTERVAL)
    try:
        interval = parse_duration(interval_text)
    except ValueError as exc:
        raise pytest.UsageError(f"ini xstash_progress_interval: {exc}") from None
    if interval <= 0:
        raise pytest.UsageError(f"ini xstash_progress_interval: {interval_text!r} must be > 0")
    if mode == "off":
        config.pluginmanager.register(_Off(), "xstash-progress")
        return
    config.stash[TRACKER_KEY] = Tracker(folder)
    config.pluginmanager.register(config.stash[TRACKER_KEY], "xstash-progress-tracker")
    config.pluginmanager.register(Display(config, folder, mode, interval), "xstash-progress")


def _requested_mode(config: pytest.Config) -> str:
    mode = config.getoption("xstash_progress") or str(config.getini("xstash_progress") or "auto")
    if mode not in MODES:
        raise pytest.UsageError(f"ini xstash_progress: {mode!r} is not one of {', '.join(MODES)}")
    if config.option.collectonly or config.pluginmanager.is_blocked("terminal"):
        return "off"
    if mode == "auto" and config.getoption("capture") == "no":
        return "off"  # with -s the tools' own output streams to the terminal (xdist's too)
    return mode


def announce(item: ExperimentItem, request: RunRequest, pid: int) -> None:
    """The tool of ``item`` just started as ``pid``: make it visible to the display."""
    tracker = item.config.stash.get(TRACKER_KEY, None)
    if tracker is not None:
        tracker.announce(item, request, pid)


class _Off:
    """Progress is off: still tell xdist workers so, so they write nothing."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["xstash_progress"] = False


class Tracker:
    """Writes (and removes) the announcement of each run started by this process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = itertools.count()

    def announce(self, item: ExperimentItem, request: RunRequest, pid: int) -> None:
        experiment = item.experiment
        data = {
            "nodeid": item.nodeid,
            "name": item.name,
            "tool": experiment.tool.name,
            "started": time.time(),
            "estimated_seconds": experiment.estimated_seconds,
            "estimated_runtime": experiment.estimated_runtime,
            "stdout": str(request.stdout_path),
            "stderr": str(request.stderr_path),
            "worker_pid": os.getpid(),
            "tool_pid": pid,
        }
        path = self.folder / f"{os.getpid()}-{next(self.count)}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        try:  # progress is a convenience: it never fails a run
            self.folder.mkdir(parents=True, exist_ok=True)
            write_own_file(tmp, json.dumps(data))
            os.replace(tmp, path)
        except OSError:
            return
        item.stash[_ANNOUNCED] = path

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            path = item.stash.get(_ANNOUNCED, None)
            if path is not None:
                del item.stash[_ANNOUNCED]
                with contextlib.suppress(OSError):
                    path.unlink()


# --- what is shown -------------------------------------------------------------------------


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


def short(seconds: float) -> str:
    """``12s``, ``3m05s``, ``30m``, ``1h02m``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


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


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(folder: Path) -> list[dict[str, Any]]:
    """The announced runs whose process is still alive, oldest first."""
    runs = []
    try:
        paths = list(folder.glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # just retired
        if isinstance(data, dict) and _alive(data.get("worker_pid")):
            runs.append(data)
    return sorted(runs, key=lambda run: (float(run.get("started") or 0), str(run.get("nodeid"))))


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


# --- the terminal --------------------------------------------------------------------------


class Screen:
    """Shares pytest's terminal with pytest: every write of pytest's terminal writer first
    erases the live block (if one is drawn) and records where pytest's current line ends, so
    the block can be drawn below it and the cursor put back exactly there.

    The block is written to a duplicate of the terminal's file descriptor: without xdist, the
    tests' output capture redirects the terminal's own descriptor while a tool runs."""

    WRAPPED = ("write", "write_raw", "flush")

    def __init__(self, writer: Any, tty: bool) -> None:
        self.writer = writer
        self.tty = tty
        self.lock = threading.RLock()
        self.partial = ""  # what pytest wrote after its last newline
        self.drawn = False  # a block is drawn below the cursor
        self.depth = 0
        self.wake = threading.Event()
        self.fd: int | None = None
        with contextlib.suppress(AttributeError, OSError, ValueError):
            writer.flush()
            self.fd = os.dup(writer._file.fileno())
        self.originals: dict[str, Callable[..., Any]] = {}
        for name in self.WRAPPED:
            original = getattr(writer, name, None)
            if original is not None:
                self.originals[name] = original
                setattr(writer, name, self._wrap(original, track=name != "flush"))

    def _wrap(self, original: Callable[..., Any], track: bool) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.depth += 1
                try:
                    if self.depth == 1 and track:
                        self._erase()
                    result = original(*args, **kwargs)
                    if self.depth == 1 and track:
                        self._track(str(args[0] if args else kwargs.get("msg", "")))
                        self.originals["flush"]()  # our own writes bypass its buffer
                    return result
                finally:
                    self.depth -= 1
                    if self.depth == 0 and self.tty and track:
                        self.wake.set()

        return wrapped

    def _track(self, text: str) -> None:
        text = _ESCAPES.sub("", text)
        if "\n" in text:
            self.partial = text.rsplit("\n", 1)[1]
        else:
            self.partial += text
        if "\r" in self.partial:
            self.partial = self.partial.rsplit("\r", 1)[1]

    def _out(self, text: str) -> None:
        if self.fd is None:
            self.originals["write_raw" if "write_raw" in self.originals else "write"](text)
            self.originals["flush"]()
            return
        data = text.encode("utf-8", errors="replace")
        while data:
            data = data[os.write(self.fd, data) :]

    def _erase(self) -> None:
        if self.drawn:
            self.drawn = False
            with contextlib.suppress(OSError):
                self._out("\x1b[J")

    def draw(self, lines: list[str]) -> None:
        """Replace the live block by ``lines`` (none: remove it)."""
        with self.lock:
            column = cells(self.partial)
            if not lines or column >= self.width() - 1:
                self._erase()
                return
            text = "\x1b[J" if self.drawn else ""
            text += "\n" + "\n".join(lines) + f"\x1b[{len(lines)}A\x1b[{column + 1}G"
            try:
                self._out(text)
            except OSError:
                return
            self.drawn = True

    def print(self, lines: list[str]) -> None:
        """Plain lines, on lines of their own. As with pytest's live logs, pytest's unfinished
        line stays above them, and what it writes next starts a new line."""
        with self.lock:
            head = "\n" if self.partial else ""
            with contextlib.suppress(OSError):
                self._out(head + "\n".join(lines) + "\n")
            self.partial = ""
            if self.fd is not None and isinstance(getattr(self.writer, "_current_line", 0), str):
                self.writer._current_line = ""  # pytest fills its lines up to [ 50%] by it

    def width(self) -> int:
        try:
            return int(self.writer.fullwidth)
        except (AttributeError, OSError, ValueError):
            return 80

    def close(self) -> None:
        with self.lock:
            self._erase()
            for name in self.originals:
                self.writer.__dict__.pop(name, None)
            if self.fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self.fd)
                self.fd = None


def _is_terminal(writer: Any) -> bool:
    try:
        return bool(writer._file.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _on_ci() -> bool:
    return any(os.environ.get(name) for name in ("CI", "BUILD_NUMBER"))


class Display:
    """In the process that owns the terminal: shows the announced runs while the tests run."""

    def __init__(self, config: pytest.Config, folder: Path, mode: str, interval: float) -> None:
        self.config = config
        self.folder = folder
        self.mode = mode
        self.interval = interval
        self.screen: Screen | None = None
        self.stopping = False
        self.thread: threading.Thread | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["xstash_progress"] = True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        self.start()
        try:
            return (yield)
        finally:
            self.stop()

    def start(self) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        writer = getattr(reporter, "_tw", None)
        if writer is None:
            return
        tty = self.mode == "tty" or (
            self.mode == "auto"
            and _is_terminal(writer)
            and not _on_ci()
            and os.environ.get("TERM") != "dumb"
        )
        self.screen = Screen(writer, tty)
        self.thread = threading.Thread(target=self._loop, name="xstash-progress", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        screen, thread = self.screen, self.thread
        if screen is not None:
            screen.wake.set()
        if thread is not None:
            thread.join(timeout=5)
        if screen is not None:
            screen.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _loop(self) -> None:
        screen = self.screen
        assert screen is not None
        wait = TTY_REFRESH if screen.tty else self.interval
        while True:
            screen.wake.wait(wait)
            if self.stopping:
                return
            if screen.wake.is_set():
                screen.wake.clear()
                time.sleep(0.05)  # let pytest finish what it is writing
                if self.stopping:
                    return
            try:
                self._show(screen)
            except Exception:  # a display problem must never end the session
                continue

    def _show(self, screen: Screen) -> None:
        runs = running(self.folder)
        now = time.time()
        if screen.tty:
            screen.draw(block_lines(runs, now, screen.width()))
        elif runs:
            screen.print(plain_lines(runs, now))
