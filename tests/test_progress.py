"""Live progress: what runs, for how long, against its estimate, and what it printed last."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pyte
import pytest
from helpers import Project

from xstash_plugin.report.progress_text import TAIL_BYTES, clean, last_line, short

# Plain Python (the orchestrator's reaction is under test): a line on stdout, then a coloured
# progress bar redrawn with carriage returns on stderr, then a last line on stdout (~2 s).
BAR = """\
import sys, time
print("loading data", flush=True)
for step in range(1, 5):
    sys.stderr.write(f"\\rstep {step}/4 \\x1b[32m{'#' * step}\\x1b[0m")
    sys.stderr.flush()
    time.sleep(0.5)
sys.stderr.write("\\n")
print("done: loss 0.12", flush=True)
"""

COLUMNS, ROWS = 100, 40
LINE = re.compile(r"xstash: running (a|b) \(sleeper\) \d+s( / est 30s)?( \| .*)?")


@pytest.fixture
def bars(project: Project) -> Project:
    project.tool("sleeper", BAR, entrypoint="main.py", env="system", deps=None)
    project.config("a.yaml", "tool: sleeper\nexperiment: a\nestimated_runtime: 30s\n")
    project.config("b.yaml", "tool: sleeper\nexperiment: b\n")
    project.pytester.makeini("[pytest]\nxstash_progress_interval = 0.5\n")
    return project


def progress_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "xstash: running" in line]


@pytest.mark.parametrize("workers", [0, 2])
def test_plain_lines_when_not_a_terminal(bars: Project, workers: int) -> None:
    args = ["configs", "-p", "no:cacheprovider"] + (["-n", str(workers)] if workers else [])
    result = bars.pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)
    lines = progress_lines(result.outlines)
    assert lines, result.stdout.str()
    for line in lines:  # whole lines of their own, nothing of the bar's earlier states
        assert LINE.fullmatch(line), line
        assert "\x1b" not in line and "\r" not in line
    bar = re.compile(r"xstash: running a \(sleeper\) \d+s / est 30s \| step ([1-4])/4 (#+)")
    states = [m for m in map(bar.fullmatch, lines) if m]
    assert states, lines
    assert all(len(m.group(2)) == int(m.group(1)) for m in states)  # only the latest state
    assert any(re.fullmatch(r"xstash: running b \(sleeper\) \d+s \| .+", line) for line in lines)
    assert "\x1b[" not in result.stdout.str()  # not a terminal: no escape sequences
    assert not list((bars.root / "outputs" / ".xstash" / "progress").glob("*/*.json"))


@pytest.mark.parametrize("option", ["--xstash-progress=off", "-s"])
def test_off_shows_nothing(bars: Project, option: str) -> None:
    """Off when asked, and by default under -s: there the tools' output streams already."""
    result = bars.pytester.runpytest_subprocess("configs", option)
    result.assert_outcomes(passed=2)
    assert not progress_lines(result.outlines)
    assert not (bars.root / "outputs" / ".xstash" / "progress").exists()


# --- under a real pseudo-terminal ---------------------------------------------------------------


def run_in_pty(root: Path, *args: str, ci: bool = False, timeout: float = 120) -> tuple[str, int]:
    """Run pytest with a pseudo-terminal as its stdout and stderr; all it wrote, and its exit."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "BUILD_NUMBER", "COLUMNS")}
    env["TERM"] = "xterm"
    if ci:
        env["CI"] = "true"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "pytest did not finish:\n" + b"".join(chunks).decode(errors="replace")
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal is gone
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return b"".join(chunks).decode(errors="replace"), proc.returncode


class Terminal:
    """A COLUMNS x ROWS terminal (pyte's VT100 emulation) that keeps what scrolls off it."""

    def __init__(self) -> None:
        self.screen = pyte.HistoryScreen(COLUMNS, ROWS, history=1_000_000)
        self.stream = pyte.Stream(self.screen)

    def feed(self, text: str) -> tuple[list[str], int, int]:
        """After ``text`` too: all rows ever shown, scrollback first, without trailing blank
        rows; and the cursor's row in them and its column."""
        self.stream.feed(text)
        scrolled = [
            "".join(line[x].data for x in range(COLUMNS)) for line in self.screen.history.top
        ]
        rows = [row.rstrip() for row in scrolled + self.screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return rows, len(scrolled) + self.screen.cursor.y, self.screen.cursor.x


def emulate(text: str) -> tuple[list[str], int, int]:
    """What a terminal shows after ``text`` (see :meth:`Terminal.feed`)."""
    return Terminal().feed(text)


@pytest.mark.parametrize("workers", [0, 2])
def test_live_block_in_a_terminal(bars: Project, workers: int) -> None:
    args = ["configs", "-p", "no:cacheprovider"] + (["-n", str(workers)] if workers else [])
    output, code = run_in_pty(bars.root, *args)
    assert code == 0, output
    # The block is drawn below pytest's line, then the cursor goes back to where pytest was.
    draws = list(re.finditer(r"\x1b\[(\d+)A\x1b\[(\d+)G", output))
    assert draws, output
    block = re.compile(r"  (a|b) \(sleeper\)\s+\d+s( / est 30s)?\s*( \| .*)?")
    seen = set()
    terminal, fed = Terminal(), 0
    for draw in draws:
        screen, row, col = terminal.feed(output[fed : draw.end()])
        fed = draw.end()
        headers = [i for i, line in enumerate(screen) if re.fullmatch(r"xstash: \d running", line)]
        assert len(headers) == 1, "\n".join(screen)  # redrawn in place, never scrolled
        (header,) = headers
        assert header == row + 1 == len(screen) - int(draw.group(1))
        assert len(screen[row]) <= col <= len(screen[row]) + 1  # pytest's own line ends there
        running = screen[header + 1 :]
        assert len(running) == int(screen[header].split()[1])
        for line in running:
            assert block.fullmatch(line), line
            assert len(line) < COLUMNS
            seen.add(line.split()[0])
            if "step" in line:  # the bar's latest state only, colours removed
                step = re.search(r"step ([1-4])/4 (#+)$", line)
                assert step and len(step.group(2)) == int(step.group(1)), line
    assert seen == {"a", "b"}
    if workers:
        assert "xstash: 2 running" in output
    # At the end: the normal pytest screen, no trace of the block.
    screen, _, _ = emulate(output)
    # (The line that says the sleeper tool is not composed at collection is not the block's.)
    block_lines = [line for line in screen if "xstash:" in line and "compose" not in line]
    assert not [*block_lines, *(line for line in screen if "(sleeper)" in line)], screen
    assert re.fullmatch(r"=+ 2 passed in [\d.]+s =+", screen[-1]), screen
    if workers:
        assert any(re.fullmatch(r"\.\. +\[100%\]", line) for line in screen), screen
    else:
        assert any(re.fullmatch(r"configs/a\.yaml \. +\[ 50%\]", line) for line in screen)
        assert any(re.fullmatch(r"configs/b\.yaml \. +\[100%\]", line) for line in screen)


def test_off_in_a_terminal(bars: Project) -> None:
    output, code = run_in_pty(
        bars.root, "configs", "-p", "no:cacheprovider", "-n", "2", "--xstash-progress=off"
    )
    assert code == 0, output
    assert "xstash:" not in output and "\x1b[J" not in output


def test_ci_in_a_terminal_gets_plain_lines(bars: Project) -> None:
    output, code = run_in_pty(bars.root, "configs", "-p", "no:cacheprovider", ci=True)
    assert code == 0, output
    lines = progress_lines(output.replace("\r\n", "\n").split("\n"))
    assert lines and all(LINE.fullmatch(line) for line in lines), lines
    assert not re.search(r"\x1b\[\d+A", output)


# --- the pieces -----------------------------------------------------------------------------------


def test_clean_keeps_what_a_terminal_would_show() -> None:
    assert clean("\r 10%|#  |\r 20%|## |") == "20%|## |"
    assert clean("epoch 3\r\n") == "epoch 3"
    assert clean("\x1b[1;31mred\x1b[0m\tand\x07 bell") == "red and bell"
    assert clean("\x1b]0;title\x07text") == "text"
    assert clean("\r\r  ") == ""


def test_last_line_reads_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_bytes(b"x" * (10 * TAIL_BYTES) + b"\nfirst\nsecond\r\n\n  \n")
    assert last_line(log) == "second"
    log.write_bytes(b"y" * (3 * TAIL_BYTES))  # one huge line: its end, cut
    assert last_line(log) == "y" * TAIL_BYTES
    assert last_line(tmp_path / "missing.log") == ""


def test_short_durations() -> None:
    assert [short(s) for s in (0, 12.7, 60, 185, 1800, 3600, 3720)] == [
        "0s",
        "12s",
        "1m",
        "3m05s",
        "30m",
        "1h",
        "1h02m",
    ]
