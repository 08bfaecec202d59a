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
import shutil
import sys
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import pytest

from xstash_plugin.fsutil import atomic_write
from xstash_plugin.report.progress_text import block_lines, plain_lines
from xstash_plugin.run.stale import is_alive
from xstash_plugin.settings import DEFAULT_PROGRESS_INTERVAL as DEFAULT_INTERVAL
from xstash_plugin.settings import PROGRESS_MODES as MODES

if TYPE_CHECKING:
    from xstash_plugin.config.experiment import Experiment
    from xstash_plugin.launchers.base import RunRequest
    from xstash_plugin.session import State

PROGRESS_HELP = (
    "show the experiments that are running, for how long, against their estimated_runtime, "
    "and the last line each tool printed: auto (default: a live block in a terminal, plain "
    "lines every xstash_progress_interval otherwise or under CI; off under -s), "
    "tty, plain or off"
)
INTERVAL_HELP = "seconds between plain progress lines (not in a terminal or under CI; default 30s)"
TTY_REFRESH = 1.0  # seconds between redraws of the live block

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
    folder = state.xstash_dir / "progress" / state.session_id
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # the controller decided, and told us
        if workerinput.get("xstash_progress"):
            config.stash[TRACKER_KEY] = Tracker(folder)
            config.pluginmanager.register(config.stash[TRACKER_KEY], "xstash-progress-tracker")
        return
    mode = _requested_mode(config, state.settings.progress)
    interval = state.settings.progress_interval
    if mode == "off":
        config.pluginmanager.register(_Off(), "xstash-progress")
        return
    config.stash[TRACKER_KEY] = Tracker(folder)
    config.pluginmanager.register(config.stash[TRACKER_KEY], "xstash-progress-tracker")
    config.pluginmanager.register(Display(config, folder, mode, interval), "xstash-progress")


def _requested_mode(config: pytest.Config, mode: str) -> str:
    """What the display can do of the mode asked for (settings.py checked the name)."""
    if config.option.collectonly or config.pluginmanager.is_blocked("terminal"):
        return "off"
    if mode == "auto" and config.getoption("capture") == "no":
        return "off"  # with -s the tools' own output streams to the terminal (xdist's too)
    return mode


class Announced(Protocol):
    """What announcing a run needs of its item (an experiment item is one): progress does not
    import the items, which import progress."""

    @property
    def nodeid(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def config(self) -> pytest.Config: ...
    @property
    def stash(self) -> pytest.Stash: ...
    @property
    def experiment(self) -> Experiment: ...


def announce(item: Announced, request: RunRequest, pid: int) -> None:
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

    def announce(self, item: Announced, request: RunRequest, pid: int) -> None:
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
        try:  # progress is a convenience: it never fails a run
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(data))
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
        if not isinstance(data, dict):
            continue
        pid = data.get("worker_pid")  # no identity recorded: its existence is the best guess
        if not isinstance(pid, int) or is_alive(pid, None):
            runs.append(data)
    return sorted(runs, key=lambda run: (float(run.get("started") or 0), str(run.get("nodeid"))))


# --- the terminal --------------------------------------------------------------------------
#
# pytest has no public way to share its terminal with another thread. The block shares it on
# these terms, all through public names:
# - It is written to a duplicate of the terminal's file descriptor: without xdist, the tests'
#   output capture redirects the descriptor itself while a tool runs, so nothing written
#   through pytest's TerminalReporter from the thread would reach the terminal. pytest has no
#   public accessor for the reporter's file: it is the ``sys.stdout`` of ``pytest_configure``
#   time (pytest's own ``pytest_configure`` makes ``TerminalReporter(config, sys.stdout)``,
#   while output capture is suspended), so the display takes that stream then too.
# - It is erased before pytest writes: by hook wrappers around the hooks in which pytest and
#   pytest-xdist write to the terminal while the tests run (see ``Display``), which also
#   flush pytest's buffer so that its output and ours stay in order. The few lines written
#   outside hooks (pytest-xdist's worker-crash notices, live logging under ``log_cli``) are
#   not announced: one may land on the block, until the next redraw clears all below pytest's
#   cursor.
# - Where pytest's unfinished line ends (the cursor goes back there) and how wide the terminal
#   is are read from the writer of the public ``Config.get_terminal_writer()``: its properties
#   ``width_of_current_line`` and ``fullwidth``, nothing else; nothing is written through it.
# - Plain lines leave pytest's unfinished line above them, and what pytest writes next starts
#   a new line; pytest must know it does (it pads ``[ 50%]`` to the width it believes its line
#   has). So the newline that ends the last plain line is written through
#   ``TerminalReporter.write`` at pytest's next write, which resets pytest's idea of its line.


class Screen:
    """The live block (or the plain lines) below pytest's output."""

    def __init__(
        self,
        config: pytest.Config,
        reporter: pytest.TerminalReporter,
        stream: TextIO | None,
        tty: bool,
    ) -> None:
        self.reporter = reporter
        self.writer = config.get_terminal_writer()  # read only, see above
        self.tty = tty
        self.lock = threading.RLock()
        self.drawn = False  # a block is drawn below the cursor
        self.newline_owed = False  # plain lines end without a newline, see above
        self.depth = 0
        self.wake = threading.Event()
        self.fd: int | None = None
        with contextlib.suppress(AttributeError, OSError, ValueError):
            reporter.flush()
            if stream is not None:
                self.fd = os.dup(stream.fileno())

    @contextlib.contextmanager
    def pytest_writes(self) -> Iterator[None]:
        """Around a hook in which pytest may write: no block meanwhile, then one drawn anew."""
        with self.lock:
            self.depth += 1
            try:
                if self.depth == 1:
                    self._flush()
                    self._erase()
                    self._pay_newline()
                yield
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self._flush()
                    if self.tty:
                        self.wake.set()

    def _flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.reporter.flush()

    def _pay_newline(self) -> None:
        if self.newline_owed:
            self.newline_owed = False
            with contextlib.suppress(OSError, ValueError):
                self.reporter.write("\n", flush=True)

    def _out(self, text: str) -> None:
        if self.fd is None:  # the stream has no descriptor (an in-process run): through pytest
            write = getattr(self.reporter, "write_raw", self.reporter.write)  # write_raw: 9.0+
            write(text, flush=True)
            return
        data = text.encode("utf-8", errors="replace")
        while data:
            data = data[os.write(self.fd, data) :]

    def _erase(self) -> None:
        if self.drawn:
            self.drawn = False
            with contextlib.suppress(OSError):
                self._out("\x1b[J")

    def column(self) -> int | None:
        """Where pytest's unfinished line ends; None when unknown (it holds a ``\\r``)."""
        width = self.writer.width_of_current_line
        return width if width >= 0 else None

    def draw(self, lines: list[str]) -> None:
        """Replace the live block by ``lines`` (none: remove it)."""
        with self.lock:
            column = self.column()
            if not lines or column is None or column >= self.width() - 1:
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
            head = "\n" if self.newline_owed or self.column() != 0 else ""
            with contextlib.suppress(OSError):
                self._out(head + "\n".join(lines))
            self.newline_owed = True

    def width(self) -> int:
        try:
            return int(self.writer.fullwidth)
        except (OSError, ValueError):
            return 80

    def close(self) -> None:
        with self.lock:
            self._erase()
            self._pay_newline()
            if self.fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self.fd)
                self.fd = None


def _is_terminal(reporter: pytest.TerminalReporter) -> bool:
    isatty: object = reporter.isatty  # a bool (pytest 8), a bool one can also call (pytest 9)
    return bool(isatty() if callable(isatty) else isatty)


def _on_ci() -> bool:
    return any(os.environ.get(name) for name in ("CI", "BUILD_NUMBER"))


class Display:
    """In the process that owns the terminal: shows the announced runs while the tests run."""

    def __init__(self, config: pytest.Config, folder: Path, mode: str, interval: float) -> None:
        self.config = config
        self.folder = folder
        self.mode = mode
        self.interval = interval
        self.stream: TextIO | None = sys.stdout  # pytest's terminal, see "the terminal" above
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

    @pytest.hookimpl(wrapper=True, tryfirst=True, optionalhook=True)
    def _around_pytest_writes(self) -> Generator[None, object, object]:
        if self.screen is None:
            return (yield)
        with self.screen.pytest_writes():
            return (yield)

    # The hooks in which pytest writes to the terminal while the tests run; pytest-xdist's
    # controller too, when a worker (re)starts, is ready, or is gone.
    pytest_runtest_logstart = pytest_runtest_logreport = _around_pytest_writes
    pytest_runtest_logfinish = pytest_collectreport = _around_pytest_writes
    pytest_internalerror = pytest_xdist_newgateway = _around_pytest_writes
    pytest_testnodeready = pytest_testnodedown = _around_pytest_writes

    def start(self) -> None:
        reporter: pytest.TerminalReporter | None
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        tty = self.mode == "tty" or (
            self.mode == "auto"
            and _is_terminal(reporter)
            and not _on_ci()
            and os.environ.get("TERM") != "dumb"
        )
        self.screen = Screen(self.config, reporter, self.stream, tty)
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
            self.screen = None
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
