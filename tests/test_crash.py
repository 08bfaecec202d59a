"""A pytest-xdist worker that dies mid-run loses only its current experiment, and says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import Project

# Every test here runs with plain and with preloaded tools (tests/conftest.py).
BOTH_LAUNCH_MODES = True

# Plain Python: sleeps for its config's 'sleep' seconds, in its own process group.
SLEEPER = """\
import re, sys, time
args = dict(a.split("=", 1) for a in sys.argv if "=" in a)
run_dir = args["hydra.run.dir"].strip("'")
config = open(run_dir + "/xstash_config/xstash_experiment.yaml").read()
time.sleep(float(re.search(r"sleep: ([0-9.]+)", config).group(1)))
print("slept")
"""


def records(root: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in (root / "outputs" / "configs").glob("*/*/xstash.json"):
        data = json.loads(path.read_text())
        found[data["experiment"]] = data
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (ProcessLookupError, OSError, IndexError):
        return False
    return state != "Z"


def background_pytest(project: Project, workers: list[str]) -> subprocess.Popen[bytes]:
    """pytest over the project's configs, in a session of its own, output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "configs", *workers, "-p", "no:cacheprovider"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def victim_tool(project: Project) -> int:
    """The pid of experiment 'victim''s tool, once its record names it (at most 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tool_pid = records(project.root).get("victim", {}).get("tool_pid")
        if tool_pid is not None:
            return int(tool_pid)
        time.sleep(0.05)
    raise AssertionError("the victim never started")


def test_killed_worker_loses_only_its_experiment(project: Project) -> None:
    project.tool("sleeper", SLEEPER, entrypoint="main.py", env="system", deps=None)
    project.config("victim.yaml", "tool: sleeper\nexperiment: victim\nsleep: 60\n")
    for name in ("a", "b", "c"):
        project.config(f"{name}.yaml", f"tool: sleeper\nexperiment: {name}\nsleep: 0.5\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "configs", "-n", "2", "-p", "no:cacheprovider", "-rA"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tool_pid = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            victim = records(project.root).get("victim", {})
            if "tool_pid" in victim:  # (worker_pid is there before the tool starts)
                tool_pid = victim["tool_pid"]
                os.kill(victim["worker_pid"], signal.SIGKILL)
                break
            time.sleep(0.05)
        assert tool_pid is not None, "the victim never started"
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = output.decode(errors="replace")
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, text
    assert "crashed while running 'configs/victim.yaml::victim'" in text
    found = records(project.root)
    assert {name: found[name]["status"] for name in "abc"} == dict.fromkeys("abc", "passed")
    victim = found["victim"]
    assert victim["status"] == "error"
    assert "died while running this experiment" in victim["error"]
    assert not alive(tool_pid), "the crashed worker's tool was left running"
    assert "configs/victim.yaml::victim" in text.split("xstash results")[1]
    assert "Traceback" not in text.split("short test summary")[0].split("xstash results")[1]


@pytest.mark.parametrize("workers", [[], ["-n", "0"]], ids=["serial", "n0"])
def test_killed_pytest_leaves_no_tool_running(project: Project, workers: list[str]) -> None:
    """kill -9 of pytest itself (no xdist controller to notice): its watchdog stops the tool,
    and the process the tool started outside its group, and says so in the record, instead of
    them running on under PID 1 as 'running'."""
    project.tool("escaper", ESCAPER, entrypoint="main.py", env="system", deps=None)
    project.config("victim.yaml", "tool: escaper\nexperiment: victim\nsleep: 60\n")
    proc = background_pytest(project, workers)
    tool_pid = None
    try:
        tool_pid = victim_tool(project)
        deadline = time.monotonic() + 60
        (run_dir,) = project.run_dirs("victim")
        while time.monotonic() < deadline and not (run_dir / "escapee.pid").exists():
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15  # the watchdog's grace is 3 s
        while time.monotonic() < deadline and (
            alive(tool_pid) or records(project.root)["victim"]["status"] == "running"
        ):
            time.sleep(0.05)
        escapee = int((run_dir / "escapee.pid").read_text())
        watchdog = project.root / "outputs" / ".xstash" / "watchdog"
        while time.monotonic() < deadline and (alive(escapee) or list(watchdog.glob("*.txt"))):
            time.sleep(0.05)  # (the watchdog removes its list last)
        survived = alive(tool_pid)  # (before the clean-up below kills it)
        escapee_survived = alive(escapee)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if tool_pid is not None and alive(tool_pid):
            os.killpg(tool_pid, signal.SIGKILL)
    assert not survived, "the tool outlived the pytest that started it"
    assert not escapee_survived, "the process the tool set apart outlived pytest"
    victim = records(project.root)["victim"]
    assert victim["status"] == "error"
    assert f"the pytest process running this experiment (pid {proc.pid}) died" in victim["error"]
    assert victim["ended"] >= victim["started"]
    assert not list((project.root / "outputs" / ".xstash" / "watchdog").glob("*.txt"))


def test_a_normal_session_leaves_its_watchdog_nothing_to_do(project: Project) -> None:
    project.tool("sleeper", SLEEPER, entrypoint="main.py", env="system", deps=None)
    project.config("quick.yaml", "tool: sleeper\nexperiment: quick\nsleep: 0.1\n")
    result = project.pytester.runpytest("configs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert records(project.root)["quick"]["status"] == "passed"
    assert not list((project.root / "outputs" / ".xstash" / "watchdog").glob("*.txt"))


# Plain Python: starts a process that leaves its process group (setsid, as a daemon would),
# notes its pid, then sleeps for its config's 'sleep' seconds.
ESCAPER = """\
import os, re, subprocess, sys, time
args = dict(a.split("=", 1) for a in sys.argv if "=" in a)
run_dir = args["hydra.run.dir"].strip("'")
config = open(run_dir + "/xstash_config/xstash_experiment.yaml").read()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         start_new_session=True)
open(run_dir + "/escapee.pid", "w").write(str(child.pid))
print("started an escapee", flush=True)
time.sleep(float(re.search(r"sleep: ([0-9.]+)", config).group(1)))
"""


@pytest.mark.parametrize(
    ("extra", "sleep", "outcome"),
    [
        pytest.param([], "0.2", "passed", id="passed"),
        pytest.param(["-s"], "0.2", "passed", id="passed-live"),
        pytest.param(["--xstash-timeout", "2s"], "30", "failed", id="timeout"),
        pytest.param(["-s", "--xstash-timeout", "2s"], "30", "failed", id="timeout-live"),
        pytest.param(["-n", "2"], "0.2", "passed", id="passed-n2"),
        pytest.param(["-n", "2", "--xstash-timeout", "2s"], "30", "failed", id="timeout-n2"),
    ],
)
def test_processes_that_leave_the_tools_group_do_not_outlive_the_run(
    project: Project, extra: list[str], sleep: str, outcome: str
) -> None:
    project.tool("escaper", ESCAPER, entrypoint="main.py", env="system", deps=None)
    project.config("e.yaml", f"tool: escaper\nexperiment: e\nsleep: {sleep}\n")
    started = time.monotonic()
    result = project.pytester.runpytest("configs", "-p", "no:cacheprovider", *extra)
    took = time.monotonic() - started
    result.assert_outcomes(**{outcome: 1})
    (run_dir,) = project.run_dirs("e")
    escapee = int((run_dir / "escapee.pid").read_text())
    try:
        assert not alive(escapee), "a process that left the tool's group outlived the run"
    finally:
        if alive(escapee):
            os.kill(escapee, signal.SIGKILL)
    # Its pipes held open (-s) never hold up the end of the run: the escapee would sleep 120 s.
    assert took < 60, f"the session took {took:.0f} s"
    result.stdout.fnmatch_lines(
        ["*1 process(es) had left the tool's process group and were stopped when the run ended:*"]
    )
    record = json.loads((run_dir / "xstash.json").read_text())
    assert record["escaped"] and str(escapee) in record["escaped"][0]


def _watchdog_of(pytest_pid: int) -> int | None:
    """The pid of the watchdog a pytest process started (it names pytest's pid in its argv)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 4 and argv[1] == b"-c" and argv[-2:] == [str(pytest_pid).encode(), b""]:
            return int(entry.name)
    return None


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "n2"])
def test_a_run_left_running_by_a_dead_session_is_settled_by_the_next(
    project: Project, workers: list[str]
) -> None:
    """pytest and its watchdog both killed (as the OOM killer or a kill of the whole tree
    would): the tool runs on, its record says 'running'. The next session does not start a
    second copy while it lives, and marks it 'error' once it is gone."""
    project.tool("sleeper", SLEEPER, entrypoint="main.py", env="system", deps=None)
    project.config("victim.yaml", "tool: sleeper\nexperiment: victim\nsleep: 120\n")
    proc = background_pytest(project, [])
    tool_pid = None
    try:
        tool_pid = victim_tool(project)
        watchdog = _watchdog_of(proc.pid)
        assert watchdog is not None, "no watchdog found"
        os.kill(watchdog, signal.SIGKILL)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert alive(tool_pid)
        assert records(project.root)["victim"]["status"] == "running"

        # The orphan still runs: no second copy, and the failure says what to do.
        result = project.pytester.runpytest("configs", "-p", "no:cacheprovider", *workers)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*was not started: its run * from an earlier pytest session is still running*",
                f"*fix: wait for those processes to end, or stop them (kill -- -{tool_pid}*",
            ]
        )
        assert len(project.run_dirs("victim")) == 1, "a second copy was started"
        assert alive(tool_pid), "the orphan was killed; it should be left to the user"
        assert records(project.root)["victim"]["status"] == "running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if tool_pid is not None and alive(tool_pid):
            os.killpg(tool_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(tool_pid) and time.monotonic() < deadline:
        time.sleep(0.05)

    # The orphan is gone: its record is closed, and the experiment runs again.
    project.config("victim.yaml", "tool: sleeper\nexperiment: victim\nsleep: 0.1\n")
    result = project.pytester.runpytest("configs", "-p", "no:cacheprovider", *workers)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*marked 'error': the pytest process running this experiment*"])
    statuses = sorted(
        json.loads((run_dir / "xstash.json").read_text())["status"]
        for run_dir in project.run_dirs("victim")
    )
    assert statuses == ["error", "passed"]
    first = json.loads((project.run_dirs("victim")[0] / "xstash.json").read_text())
    assert "died without finishing its record" in first["error"]
    assert first["ended"] >= first["started"]


def test_a_recycled_pid_is_not_the_recorded_process() -> None:
    from xstash_plugin.run.stale import is_alive, process_identity

    me = process_identity(os.getpid())
    assert me is not None and is_alive(os.getpid(), me)
    boot, pid, start = me.split(":")
    assert not is_alive(os.getpid(), f"{boot}:{pid}:{int(start) + 1}")  # same pid, other process
    assert not is_alive(os.getpid(), f"another-boot:{pid}:{start}")  # before a reboot
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_identity(child.pid) is None and not is_alive(child.pid, None)
