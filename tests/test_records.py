"""Run records: every run leaves ``xstash.json`` in its run directory, and it always ends in a
final status (passed, failed, error, interrupted) whatever happened to the tool or to pytest.

Tools are real Hydra applications (on the session's ``hydra_python``) unless the test is about
the orchestrator's reaction to a process (a Ctrl-C while it sleeps): those are plain Python.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import METRICS_EXIT_TOOL, Project

# Every test here runs with plain and with preloaded tools (tests/conftest.py).
BOTH_LAUNCH_MODES = True

# Plain Python: starts a child in its process group, writes both pids into its run directory
# (atomically), then sleeps; a Ctrl-C of pytest must take both down.
SLEEPER = """\
import os, signal, subprocess, sys, time
arg = next(a for a in sys.argv if a.startswith("hydra.run.dir="))
run_dir = arg.split("=", 1)[1].strip("'")
if "stubborn" in run_dir:  # a tool that ignores SIGTERM: only SIGKILL stops it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
tmp = os.path.join(run_dir, "pids.tmp")
with open(tmp, "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace(tmp, os.path.join(run_dir, "pids"))
print("sleeping", flush=True)
time.sleep(60)
"""

MISSING_PACKAGE = "definitely-not-a-real-package-xstash"

RECORD_FIELDS = (
    "status",
    "exit_code",
    "signal",
    "started",
    "ended",
    "duration",
    "argv",
    "tool",
    "tool_path",
    "git",
    "dependency_hash",
    "config_key",
    "python",
    "tool_python",
    "tool_python_version",
    "uv",
    "host",
    "launcher",
    "metrics",
    "metrics_error",
    "expectations",
)
FINAL = {"passed", "failed", "error", "interrupted"}


def read_record(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "xstash.json").read_text())
    return data


def all_records(root: Path) -> dict[str, dict[str, Any]]:
    """Every run record under ``root/outputs``, by experiment name."""
    records = [json.loads(p.read_text()) for p in (root / "outputs").glob("**/xstash.json")]
    return {record["experiment"]: record for record in records}


def in_git_repo(folder: Path) -> bool:
    proc = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, check=False
    )
    return proc.returncode == 0


def git(folder: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    proc = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, env=env, check=True
    )
    return proc.stdout.strip()


@pytest.fixture
def repo(project: Project, hydra_python: str) -> Project:
    """A repository with the Hydra tool 't' (a pyproject.toml, but run on hydra_python)."""
    project.tool("t", METRICS_EXIT_TOOL, env=hydra_python, deps="pyproject")
    return project


# --- 7. the record after a pass and after a failure -----------------------------------------


@pytest.mark.parametrize(("code", "status"), [(0, "passed"), (3, "failed")])
def test_record_fields(repo: Project, hydra_python: str, code: int, status: str) -> None:
    repo.config(
        "rec.yaml",
        "tool: t\nexperiment: rec\n"
        f"code: {code}\nmetrics: {{acc: 0.95}}\n"
        "xstash:\n  expect:\n    acc: '>= 0.9'\n",
    )
    before = time.time()
    result = repo.pytester.runpytest("configs")
    after = time.time()
    result.assert_outcomes(**{status: 1})
    (run_dir,) = repo.run_dirs("rec")
    record = read_record(run_dir)
    missing = [name for name in RECORD_FIELDS if name not in record]
    assert not missing, f"record lacks {missing}: {record}"
    assert record["status"] == status
    assert record["exit_code"] == code
    assert record["signal"] is None
    assert before <= record["started"] <= record["ended"] <= after
    assert 0 < record["duration"] <= record["ended"] - record["started"] + 0.01
    assert record["argv"][:2] == [hydra_python, "src/main.py"]
    assert f"hydra.run.dir={run_dir}" in record["argv"]
    assert record["tool"] == "t"
    assert Path(record["tool_path"]).resolve() == (repo.root / "tools" / "t").resolve()
    assert re.fullmatch(r"[0-9a-f]{16}", record["dependency_hash"])
    assert record["config_key"] == run_dir.name.split("-")[2]
    assert record["python"] == platform.python_version()
    assert record["tool_python"] == hydra_python
    assert record["tool_python_version"] == platform.python_version()  # venv of this python
    assert record["uv"] is None  # not a uv-managed environment
    assert record["host"] == socket.gethostname()
    assert record["launcher"] == "local"
    assert record["metrics"] == {"acc": 0.95}
    assert record["metrics_error"] is None
    assert record["expectations"] == [
        {
            "metric": "acc",
            "expected": ">= 0.9",
            "measured": 0.95,
            "ok": True,
            "note": "",
            "bounds": {"low": 0.9, "high": None},
        }
    ]
    assert record["experiment"] == "rec"
    assert record["config"] == "configs/rec.yaml"
    if in_git_repo(repo.root):  # the temp folder happens to live in a repository
        assert re.fullmatch(r"[0-9a-f]{40}", record["git"]["commit"])
    else:
        assert record["git"] == {"commit": None, "dirty": None}
    # Nothing else lingers in the run directory: the temp file was renamed into place.
    assert not list(run_dir.glob(".xstash.json.*"))


def test_record_git_commit_and_dirty(repo: Project) -> None:
    repo.config("g.yaml", "tool: t\nexperiment: g\n")
    root = repo.root
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    head = git(root, "rev-parse", "HEAD")
    repo.pytester.runpytest("configs").assert_outcomes(passed=1)
    # An edit to the tool (uncommitted) is what 'dirty' means; outputs/ is not the tool's.
    main = root / "tools" / "t" / "src" / "main.py"
    main.write_text(main.read_text() + "# an uncommitted edit\n")
    repo.pytester.runpytest("configs").assert_outcomes(passed=1)
    first, second = (read_record(d) for d in repo.run_dirs("g"))
    assert re.fullmatch(r"[0-9a-f]{40}", first["git"]["commit"])
    assert first["git"] == {"commit": head, "dirty": False}
    assert second["git"] == {"commit": head, "dirty": True}


# --- 8. a tool killed by a signal -----------------------------------------------------------


def test_record_of_tool_killed_by_sigkill(repo: Project) -> None:
    repo.config(
        "killed.yaml",
        "tool: t\nexperiment: killed\nsignal: SIGKILL\nmetrics: {acc: 0.95}\n"
        "xstash:\n  expect:\n    acc: '>= 0.9'\n",
    )
    result = repo.pytester.runpytest("configs")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tool 't' was killed by SIGKILL (signal 9)*"])
    (run_dir,) = repo.run_dirs("killed")
    record = read_record(run_dir)
    assert record["status"] == "failed"  # whatever the metrics say
    assert record["signal"] == "SIGKILL"
    assert record["exit_code"] == -9
    assert record["ended"] >= record["started"]
    assert [v["ok"] for v in record["expectations"]] == [True]
    assert (run_dir / "stdout.log").read_text() == "tool done\n"


# --- 9. Ctrl-C -------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    """The pids still alive after waiting up to ``seconds`` for all of them to end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def wait_for_pid_files(root: Path, count: int, proc: subprocess.Popen[bytes]) -> list[Path]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = sorted((root / "outputs").glob("configs/*/*/pids"))
        if len(found) == count:
            return found
        assert proc.poll() is None, "pytest ended before the tools started"
        time.sleep(0.05)
    raise AssertionError(f"{count} tools did not start within 60 s")


@pytest.fixture
def sleepers(project: Project) -> Iterator[list[int]]:
    """A repository with the plain sleeper tool; pids put in the list are killed at the end."""
    project.tool("sleeper", SLEEPER, env="system", deps=None)
    started: list[int] = []
    yield started
    for pid in started:  # only if a test failed and left them behind
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stubborn", [False, True], ids=["polite", "ignores-sigterm"])
@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
def test_ctrl_c_interrupts_runs(
    project: Project, sleepers: list[int], workers: int, stubborn: bool, sig: signal.Signals
) -> None:
    interrupt_session(project, sleepers, workers, stubborn, sig)


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
def test_sigterm_stops_a_session_started_in_the_background(
    project: Project, sleepers: list[int], workers: int
) -> None:
    # A shell starts a background job (`pytest -n 2 ... &` in a batch script) with SIGINT
    # ignored, and its children inherit that; a scheduler then stops it with SIGTERM.
    interrupt_session(project, sleepers, workers, False, signal.SIGTERM, ignore_sigint=True)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupt_session(
    project: Project,
    sleepers: list[int],
    workers: int,
    stubborn: bool,
    sig: signal.Signals,
    ignore_sigint: bool = False,
) -> None:
    """Start a session of sleeping tools, send pytest ``sig`` once they run: pytest must end
    as interrupted within 15 s, no tool may survive, every record must say 'interrupted'."""
    prefix = "stubborn" if stubborn else "nap"
    names = [f"{prefix}0", f"{prefix}1"][: max(workers, 1)]
    for name in names:
        project.config(f"{name}.yaml", f"tool: sleeper\nexperiment: {name}\n")
    args = [sys.executable, "-m", "pytest", "configs", "-p", "no:cacheprovider"]
    if workers:
        args += ["-n", str(workers)]
    proc = subprocess.Popen(
        args,
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C of ours must not reach it, nor its of us
        preexec_fn=_ignore_sigint if ignore_sigint else None,
    )
    try:
        pid_files = wait_for_pid_files(project.root, len(names), proc)
        tool_pids = [int(n) for f in pid_files for n in f.read_text().split()]
        sleepers.extend(tool_pids)
        assert all(alive(pid) for pid in tool_pids)
        started = time.monotonic()
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=15)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = output.decode(errors="replace")
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text
    assert "KeyboardInterrupt" in text
    assert took < 15
    assert wait_gone(tool_pids) == [], f"tool processes survived the Ctrl-C:\n{text}"
    records = all_records(project.root)
    assert set(records) == set(names)
    for name, record in records.items():
        assert record["status"] == "interrupted", (name, record, text)
        assert record["ended"] >= record["started"]


# --- 10. no record is left 'running' ----------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
def test_no_running_record_after_mixed_session(repo: Project, workers: int) -> None:
    configs = {
        "ok": "metrics: {acc: 0.95}\nxstash:\n  expect:\n    acc: '>= 0.9'\n",
        "exit": "code: 2\n",
        "low": "metrics: {acc: 0.5}\nxstash:\n  expect:\n    acc: '>= 0.9'\n",
        "nofile": "xstash:\n  metrics: m.json\n",
        "killed": "signal: SIGKILL\n",
    }
    for name, body in configs.items():
        repo.config(f"mixed/{name}.yaml", f"tool: t\nexperiment: {name}\n{body}")
    if workers:
        result = repo.pytester.runpytest_subprocess("configs", "-n", str(workers))
    else:
        result = repo.pytester.runpytest("configs")
    result.assert_outcomes(passed=1, failed=4)
    paths = list((repo.root / "outputs").glob("**/xstash.json"))
    assert len(paths) == len(configs)
    statuses = {name: record["status"] for name, record in all_records(repo.root).items()}
    assert statuses == {
        "ok": "passed",
        "exit": "failed",
        "low": "failed",
        "nofile": "failed",
        "killed": "failed",
    }
    assert not list((repo.root / "outputs").glob("**/.xstash.json.*"))  # no stray temp files


# --- 11. an environment that cannot be built -------------------------------------------------


@pytest.mark.slow_integration
def test_failed_environment_leaves_error_record(project: Project) -> None:
    folder = project.tool("broken")  # env: uv from pyproject.toml
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "broken"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
        f'dependencies = ["{MISSING_PACKAGE}==9.9"]\n[tool.uv]\npackage = false\n'
    )
    project.config("b.yaml", "tool: broken\nexperiment: broken_one\n")
    # At run time, that is: composing at collection would report it first (tests/test_envs.py).
    result = project.pytester.runpytest("configs", "--xstash-compose=off")
    result.assert_outcomes(failed=1)
    (run_dir,) = project.run_dirs("b")
    result.stdout.fnmatch_lines([f"run directory: {run_dir}"])
    record = read_record(run_dir)
    assert record["status"] == "error"
    assert record["ended"] >= record["started"]
    assert "preparing the environment of tool 'broken' failed" in record["error"]
    assert MISSING_PACKAGE in record["error"].split("uv says:")[1]
    assert "argv" not in record  # the tool never started
    assert not (run_dir / "stdout.log").exists()
    result.stdout.fnmatch_lines(["*xstash results*", "configs/b.yaml::broken_one *broken *error"])
