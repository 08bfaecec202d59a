"""Timeouts: the most specific limit wins, the whole process tree dies, the record says so."""

from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from helpers import PLAIN_TOOL_HEAD, Project, failures_section

# Every test here runs with plain and with preloaded tools (tests/conftest.py).
BOTH_LAUNCH_MODES = True

# Plain Python (the orchestrator's reaction is under test): starts a child in its process
# group, writes both pids, ignores SIGTERM (so only the SIGKILL after the grace period stops
# it), prints, then sleeps for the number of seconds in its config's 'sleep' key.
SLEEPER = (
    PLAIN_TOOL_HEAD
    + """\
import signal, subprocess, time
seconds = float(re.search(r"sleep: ([0-9.]+)", config).group(1))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(os.path.join(run_dir, "pids"), "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("tick", flush=True)
print("still going", file=sys.stderr, flush=True)
time.sleep(seconds)
print("done", flush=True)
"""
)


@pytest.fixture
def sleeper(project: Project) -> Project:
    project.tool("sleeper", SLEEPER, entrypoint="main.py", env="system", deps=None)
    return project


def record_of(project: Project, config: str) -> dict[str, Any]:
    (run_dir,) = project.run_dirs(config)
    data: dict[str, Any] = json.loads((run_dir / "xstash.json").read_text())
    return data


def gone(pid: int, wait: float = 5.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie waiting for its reaper counts as gone
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.05)
    return False


def test_config_timeout_kills_the_process_tree(sleeper: Project) -> None:
    sleeper.config(
        "slow.yaml", "tool: sleeper\nexperiment: slow\nsleep: 30\nxstash: {timeout: 1s}\n"
    )
    sleeper.pytester.makeini("[pytest]\nxstash_kill_grace = 0.5s\n")
    started = time.monotonic()
    result = sleeper.pytester.runpytest("configs")
    took = time.monotonic() - started
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*experiment 'slow' (configs/slow.yaml): TIMEOUT after *s (limit 1.0s, from "
            "xstash.timeout in configs/slow.yaml)*SIGKILL after 0.5s",
            "*last 1 lines of stderr*",
            "  still going",
            "*- Captured stdout call -*",
            "tick",
        ]
    )
    # The report shows stderr's tail (not stdout's); stdout is in its captured section only.
    out = result.stdout.str()
    assert "lines of stdout" not in out
    assert "Captured stderr call" not in out
    out = failures_section(result)
    assert out.count("still going") == 1
    assert out.count("tick") == 1
    assert took < 15
    record = record_of(sleeper, "slow")
    assert record["status"] == "timeout"
    assert record["timeout"] == 1.0
    assert record["timeout_source"] == "xstash.timeout in configs/slow.yaml"
    assert record["duration"] >= 1.0
    (run_dir,) = sleeper.run_dirs("slow")
    pids = [int(p) for p in (run_dir / "pids").read_text().split()]
    assert all(gone(pid) for pid in pids), "the tool or its child survived the timeout"


def test_most_specific_timeout_wins(sleeper: Project) -> None:
    sleeper.pytester.makeini("[pytest]\nxstash_timeout = 0.5s\nxstash_kill_grace = 0.2s\n")
    sleeper.config(
        "own.yaml", "tool: sleeper\nexperiment: own\nsleep: 1.5\nxstash: {timeout: 5s}\n"
    )
    sleeper.config("ini.yaml", "tool: sleeper\nexperiment: ini\nsleep: 1.5\n")
    result = sleeper.pytester.runpytest("configs")
    result.assert_outcomes(passed=1, failed=1)
    assert record_of(sleeper, "own")["status"] == "passed"
    ini = record_of(sleeper, "ini")
    assert ini["status"] == "timeout"
    assert ini["timeout_source"].startswith("ini xstash_timeout")
    # The command line beats the ini file, and the config's own limit beats both.
    again = sleeper.pytester.runpytest("configs", "--xstash-timeout", "10s")
    again.assert_outcomes(passed=2)


def test_estimated_runtime_alone_never_kills(sleeper: Project) -> None:
    sleeper.config(
        "est.yaml", "tool: sleeper\nexperiment: est\nsleep: 1\nestimated_runtime: 0.1s\n"
    )
    result = sleeper.pytester.runpytest("configs")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["warning: *est* took *more than twice its estimated_runtime*"])


def test_timeout_under_xdist_and_junit(sleeper: Project) -> None:
    sleeper.config("a.yaml", "tool: sleeper\nexperiment: a\nsleep: 30\nxstash: {timeout: 1s}\n")
    sleeper.config("b.yaml", "tool: sleeper\nexperiment: b\nsleep: 0\n")
    sleeper.pytester.makeini("[pytest]\nxstash_kill_grace = 0.3s\n")
    result = sleeper.pytester.runpytest_subprocess("configs", "-n", "2", "--junitxml=r.xml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*TIMEOUT after*",
            "*last 1 lines of stderr*",
            "  still going",
            "*- Captured stdout call -*",
            "tick",
            "*configs/a.yaml::a*timeout*",
        ]
    )
    assert "Captured stderr call" not in result.stdout.str()
    assert failures_section(result).count("still going") == 1
    cases = {c.get("name"): c for c in ET.parse(sleeper.root / "r.xml").iter("testcase")}
    failure = cases["a"].find("failure")
    assert failure is not None and "TIMEOUT after" in (failure.get("message") or "")
    assert cases["b"].find("failure") is None
    assert record_of(sleeper, "a")["status"] == "timeout"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--xstash-timeout", "soon"], "--xstash-timeout: 'soon' is not a duration"),
        (["--xstash-timeout", "0"], "--xstash-timeout: '0' must be more than zero"),
    ],
)
def test_bad_timeout_option_is_a_usage_error(
    sleeper: Project, args: list[str], message: str
) -> None:
    sleeper.config("a.yaml", "tool: sleeper\nexperiment: a\nsleep: 0\n")
    result = sleeper.pytester.runpytest("configs", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_bad_ini_timeout_names_the_ini_file(sleeper: Project) -> None:
    sleeper.pytester.makeini("[pytest]\nxstash_timeout = forever\n")
    sleeper.config("a.yaml", "tool: sleeper\nexperiment: a\nsleep: 0\n")
    result = sleeper.pytester.runpytest("configs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini xstash_timeout (*tox.ini)*'forever' is not a duration*"])


@pytest.mark.parametrize("value", ["-5", "0", "'soon'", "[1]"])
def test_bad_config_timeout_is_a_collection_error(sleeper: Project, value: str) -> None:
    sleeper.config(
        "a.yaml", f"tool: sleeper\nexperiment: a\nsleep: 0\nxstash:\n  timeout: {value}\n"
    )
    result = sleeper.pytester.runpytest("configs", "--collect-only")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*configs/a.yaml:5: xstash.timeout:*", "*fix: write a duration*"])
