"""The SLURM launcher on a real cluster: ``launcher: slurm`` runs the same tool command as a SLURM
job (through submitit), and the record, the verdict and the report come out as they do locally.

These tests need a running cluster (``.ci/slurm-ci-up.sh`` makes a one-node one). The job runs
on a node that sees this machine's filesystem: the pytester folders, the session's
``hydra_python`` and this interpreter (tools with ``env: system``) are all visible there. Tools
are real Hydra applications unless the test is about the orchestrator's reaction to the job
(sleeping, hogging memory): those are plain Python.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import METRICS_EXIT_TOOL, Project, require_slurm

require_slurm()

# Plain Python: says it started, then sleeps far longer than any test waits.
SLEEPER = """\
import time
print("start", flush=True)
time.sleep(300)
print("woke up", flush=True)
"""

# Plain Python: takes ~500 MB (every page touched, so it is really resident), then holds it.
HOG = """\
import time
b = bytearray(500 * 1024 * 1024)
for i in range(0, len(b), 4096):
    b[i] = 1
print("allocated", flush=True)
time.sleep(5)
print("survived", flush=True)
"""

WAIT = 180.0  # seconds a job may need to start on a shared cluster, at most


def read_record(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "xstash.json").read_text())
    return data


def only_record(project: Project, config: str) -> tuple[Path, dict[str, Any]]:
    (run_dir,) = project.run_dirs(config)
    return run_dir, read_record(run_dir)


def job_info(job_id: str) -> dict[str, str]:
    """What slurmctld knows of the job (JobName, JobState, TimeLimit, MinMemoryNode, ...); it
    keeps ended jobs for MinJobAge (300 s here), and unlike accounting it is never behind."""
    proc = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    )
    return dict(field.split("=", 1) for field in proc.stdout.split() if "=" in field)


def seconds_of(clock: str) -> int:
    """SLURM's [days-]hh:mm:ss as seconds."""
    days, _, rest = clock.rpartition("-")
    hours, minutes, secs = (int(part) for part in rest.split(":"))
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + secs


def default_time_limit(partition: str = "debug") -> str:
    """The TimeLimit SLURM gives a job of ``partition`` that asks for none."""
    proc = subprocess.run(
        ["scontrol", "show", "partition", "-o", partition],
        capture_output=True,
        text=True,
        check=True,
    )
    info = dict(field.split("=", 1) for field in proc.stdout.split() if "=" in field)
    default = info["DefaultTime"]
    return info["MaxTime"] if default == "NONE" else default


def squeue_state(job_id: str) -> str:
    """The job's state while SLURM still lists it ('' once it is gone from the queue)."""
    proc = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip()


def wait_until_gone(job_id: str, seconds: float = 30.0) -> tuple[str, str]:
    """Wait for the job to leave the queue and reach a final state (squeue, slurmctld)."""
    deadline = time.monotonic() + seconds
    queued, state = "?", "?"
    while time.monotonic() < deadline:
        queued = squeue_state(job_id)
        state = job_info(job_id)["JobState"]
        if not queued and state not in ("PENDING", "RUNNING", "COMPLETING"):
            break
        time.sleep(0.2)
    return queued, state


@pytest.fixture
def jobs() -> Iterator[list[str]]:
    """Job ids a test puts here are cancelled at its end (they only live on if it failed)."""
    ids: list[str] = []
    yield ids
    for job_id in ids:
        subprocess.run(["scancel", job_id], capture_output=True, check=False)


@pytest.fixture
def repo(project: Project, hydra_python: str) -> Project:
    """A repository with the Hydra tool 't' on hydra_python (no launcher in meta.yaml)."""
    project.tool("t", METRICS_EXIT_TOOL, env=hydra_python, deps=None)
    return project


def start_pytest(project: Project, *args: str) -> subprocess.Popen[bytes]:
    """A real pytest process on the project, in its own session (our Ctrl-C is not its)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "configs", "-p", "no:cacheprovider", *args],
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_running_job(
    project: Project, config: str, proc: subprocess.Popen[bytes], jobs: list[str]
) -> tuple[Path, str]:
    """The run directory and job id of ``config`` once its job runs and the tool printed."""
    deadline = time.monotonic() + WAIT
    job_id: str | None = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
        dirs = project.run_dirs(config)
        if dirs and (dirs[0] / "xstash.json").exists():
            job_id = read_record(dirs[0]).get("job_id")
            if job_id is not None and job_id not in jobs:
                jobs.append(job_id)
            stdout = dirs[0] / "stdout.log"
            if (
                job_id is not None
                and squeue_state(job_id) == "RUNNING"
                and stdout.exists()
                and stdout.read_text().strip()
            ):
                return dirs[0], job_id
        time.sleep(0.2)
    raise AssertionError(f"the job of {config} (id {job_id}) did not run within {WAIT:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --- 1. pass, fail, expectations, report ------------------------------------------------------


def test_experiments_run_as_slurm_jobs(
    repo: Project, hydra_python: str, jobs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A secret of the submitting environment: the job gets it from SLURM, the shared disk
    # (submitit's folder of pickled calls) never sees it.
    monkeypatch.setenv("XSTASH_TEST_API_TOKEN", "slurm-secret-4d2c9b")
    expect = "xstash:\n  launcher: slurm\n  expect:\n    acc: '>= 0.9'\n"
    repo.config(
        "ok.yaml",
        "tool: t\nexperiment: ok\nmetrics: {acc: 0.95}\n" + expect + "  timeout: 90s\n",
    )
    repo.config("bad.yaml", "tool: t\nexperiment: bad\ncode: 3\nmetrics: {acc: 0.95}\n" + expect)
    repo.config("low.yaml", "tool: t\nexperiment: low\nmetrics: {acc: 0.5}\n" + expect)
    before = time.time()
    result = repo.pytester.runpytest(
        "configs", "--xstash-report", "r.csv", "--junitxml", "junit.xml", "-ojunit_family=xunit1"
    )
    after = time.time()
    result.assert_outcomes(passed=1, failed=2)

    records = {name: only_record(repo, name) for name in ("ok", "bad", "low")}
    for run_dir, record in records.values():
        jobs.append(record["job_id"])
        assert record["launcher"] == "slurm"
        assert re.fullmatch(r"\d+(_\d+)?", record["job_id"]), record["job_id"]
        assert record["slurm_state"] == "COMPLETED"
        assert before <= record["started"] <= record["ended"] <= after
        assert record["argv"][:2] == [hydra_python, "src/main.py"]
        assert f"hydra.run.dir={run_dir}" in record["argv"]
        assert (run_dir / "stdout.log").read_text() == "tool done\n"
        # SLURM itself ran it, under our name; the tool's exit code is not the job's.
        info = job_info(record["job_id"])
        assert info["JobName"] in (f"xstash-{record['experiment']}", "xstash-array-bad")
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0")
    assert len({record["job_id"] for _, record in records.values()}) == 3
    # 'bad' and 'low' ask for the same (no time limit): one array of two tasks; 'ok' alone.
    ids = {name: record["job_id"] for name, (_, record) in records.items()}
    assert ids["ok"].isdigit() and ids["bad"].split("_")[0] == ids["low"].split("_")[0]

    ok, bad, low = (records[name][1] for name in ("ok", "bad", "low"))
    assert (ok["status"], ok["exit_code"], ok["metrics"]) == ("passed", 0, {"acc": 0.95})
    assert ok["expectations"] == [
        {
            "metric": "acc",
            "expected": ">= 0.9",
            "measured": 0.95,
            "ok": True,
            "note": "",
            "bounds": {"low": 0.9, "high": None},
        }
    ]
    assert (bad["status"], bad["exit_code"]) == ("failed", 3)
    assert (low["status"], low["exit_code"]) == ("failed", 0)
    assert [v["ok"] for v in low["expectations"]] == [False]
    # xstash.timeout (90 s) is the job's time limit when resources.time is unset: 2 minutes.
    assert ok["timeout"] == 90
    assert job_info(ok["job_id"])["TimeLimit"] == "00:02:00"
    # Neither resources.time nor xstash.timeout: the partition's default (not submitit's 5 min).
    # An INFINITE partition shows it as UNLIMITED, or (slurmctld with accounting, at times) as
    # the 365 days it stands for.
    limit = job_info(bad["job_id"])["TimeLimit"]
    default = default_time_limit()
    assert limit == default or (default == "UNLIMITED" and seconds_of(limit) >= 365 * 86400)

    text = result.stdout.str()
    assert "tool 't' exited with code 3" in text
    assert "1 of 1 expectation(s) failed" in text
    result.stdout.fnmatch_lines(["*xstash results*"])

    with open(repo.root / "r.csv", newline="") as f:
        rows = {row["experiment"]: row for row in csv.DictReader(f)}
    assert {name: (row["status"], row["exit_code"], row["acc"]) for name, row in rows.items()} == {
        "ok": ("passed", "0", "0.95"),
        "bad": ("failed", "3", "0.95"),
        "low": ("failed", "0", "0.5"),
    }
    assert rows["ok"]["run_dir"] == str(records["ok"][0])

    shared = [p for p in (repo.root / "outputs" / ".xstash" / "slurm").rglob("*") if p.is_file()]
    assert any(p.suffix == ".pkl" for p in shared), shared
    for path in shared:
        assert b"slurm-secret-4d2c9b" not in path.read_bytes(), f"the secret is in {path}"

    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(repo.root / "junit.xml").getroot().iter("testcase")
    }
    assert {name: p["job_id"] for name, p in props.items()} == {
        name: record["job_id"] for name, (_, record) in records.items()
    }


# --- 2. which launcher: config, then tool, then session ---------------------------------------


def test_launcher_precedence(project: Project, hydra_python: str, jobs: list[str]) -> None:
    project.tool("slurmy", METRICS_EXIT_TOOL, env=hydra_python, deps=None, extra="launcher: slurm")
    project.tool("localy", METRICS_EXIT_TOOL, env=hydra_python, deps=None, extra="launcher: local")
    project.tool("plain", METRICS_EXIT_TOOL, env=hydra_python, deps=None)
    local = "xstash:\n  launcher: local\n"
    project.config("slurmy_local.yaml", "tool: slurmy\nexperiment: slurmy_local\n" + local)
    project.config("slurmy_default.yaml", "tool: slurmy\nexperiment: slurmy_default\n")
    project.config("localy_default.yaml", "tool: localy\nexperiment: localy_default\n")
    project.config("plain_default.yaml", "tool: plain\nexperiment: plain_default\n")
    expected = {
        # config:           (no option, --xstash-launcher slurm)
        "slurmy_local": ("local", "local"),  # the config's own beats its tool's
        "slurmy_default": ("slurm", "slurm"),  # the tool's beats the session's default
        "localy_default": ("local", "local"),  # ... and the session's option
        "plain_default": ("local", "slurm"),  # nothing said: the session decides
    }
    project.pytester.runpytest("configs").assert_outcomes(passed=4)
    project.pytester.runpytest("configs", "--xstash-launcher", "slurm").assert_outcomes(passed=4)
    for name, launchers in expected.items():
        runs = [read_record(d) for d in project.run_dirs(name)]
        assert len(runs) == 2
        for record, launcher in zip(runs, launchers, strict=True):
            assert record["status"] == "passed"
            assert record["launcher"] == launcher, (name, record)
            if launcher == "local":
                assert "job_id" not in record
                assert "slurm_state" not in record
                assert isinstance(record["tool_pid"], int)
            else:
                jobs.append(record["job_id"])
                assert record["slurm_state"] == "COMPLETED"
                assert job_info(record["job_id"])["JobState"] == "COMPLETED"


# --- 3. several jobs at once (xdist) ---------------------------------------------------------


def test_parallel_workers_submit_separate_jobs(repo: Project, jobs: list[str]) -> None:
    names = [f"par{i}" for i in range(4)]
    for i, name in enumerate(names):
        repo.config(
            f"{name}.yaml",
            f"tool: t\nexperiment: {name}\nmetrics: {{i: {i}}}\n"
            "xstash:\n  launcher: slurm\n  resources: {cpus: 1, mem: 200M, time: 2m}\n",
        )
    result = repo.pytester.runpytest_subprocess("configs", "-n", "2")
    result.assert_outcomes(passed=4)
    records = [only_record(repo, name)[1] for name in names]
    ids = [record["job_id"] for record in records]
    jobs.extend(ids)
    assert len(set(ids)) == 4
    for i, record in enumerate(records):
        assert record["status"] == "passed"
        assert record["slurm_state"] == "COMPLETED"
        assert record["metrics"] == {"i": i}
        assert record["resources"] == {"cpus": 1, "mem": 200, "time": 120.0}
        assert record["worker_pid"] != os.getpid()
        info = job_info(record["job_id"])
        assert info["JobState"] == "COMPLETED"
        assert (info["MinMemoryNode"], info["TimeLimit"], info["NumCPUs"]) == (
            "200M",
            "00:02:00",
            "1",
        )


# --- 4. the job's time limit -------------------------------------------------------------------


@pytest.mark.slow_integration
def test_time_limit_ends_the_job_as_timeout(project: Project, jobs: list[str]) -> None:
    project.tool("sleeper", SLEEPER, entrypoint="main.py", env="system", deps=None)
    project.config(
        "slow.yaml",
        "tool: sleeper\nexperiment: slow\nxstash:\n  launcher: slurm\n  resources:\n    time: 1m\n",
    )
    result = project.pytester.runpytest("configs")
    result.assert_outcomes(failed=1)
    run_dir, record = only_record(project, "slow")
    jobs.append(record["job_id"])
    assert record["status"] == "timeout"
    assert record["slurm_state"] == "TIMEOUT"
    assert record["resources"] == {"time": 60.0}
    # SLURM ended it, at the limit (not earlier: no pre-timeout signal may kill the tool).
    info = job_info(record["job_id"])
    assert (info["JobState"], info["TimeLimit"]) == ("TIMEOUT", "00:01:00")
    assert 60 <= seconds_of(info["RunTime"]) < 180
    assert record["duration"] >= 60
    result.stdout.fnmatch_lines(
        [f"*experiment 'slow' (configs/slow.yaml): SLURM job {record['job_id']} ended TIMEOUT*"]
    )
    text = result.stdout.str()
    assert "DUE TO TIME LIMIT" in text  # SLURM's own word, from the job log's tail
    assert "woke up" not in (run_dir / "stdout.log").read_text()
    result.stdout.fnmatch_lines(["*configs/slow.yaml::slow *sleeper *timeout*"])


# --- 5. a job cancelled by someone else ------------------------------------------------------


def test_job_cancelled_from_outside_fails_the_test(project: Project, jobs: list[str]) -> None:
    project.tool("sleeper", SLEEPER, entrypoint="main.py", env="system", deps=None)
    project.config("nap.yaml", "tool: sleeper\nexperiment: nap\nxstash:\n  launcher: slurm\n")
    proc = start_pytest(project)
    try:
        run_dir, job_id = wait_for_running_job(project, "nap", proc, jobs)
        assert read_record(run_dir)["status"] == "running"
        subprocess.run(["scancel", job_id], check=True, capture_output=True)
        output, _ = proc.communicate(timeout=60)
    finally:
        stop(proc)
    text = output.decode(errors="replace")
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, text
    assert f"SLURM job {job_id} ended CANCELLED" in text
    assert "start" in text  # the tail of the tool's stdout
    record = read_record(run_dir)
    assert record["status"] == "failed"
    assert record["slurm_state"] == "CANCELLED"
    assert record["ended"] >= record["started"]
    assert job_info(job_id)["JobState"] == "CANCELLED"


# --- 6. memory over the job's limit -----------------------------------------------------------


def memory_enforced() -> bool:
    """Whether this cluster kills a job over its --mem: cgroups, or jobacct's OverMemoryKill."""
    config = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    ).stdout
    settings: dict[str, str] = {}
    for line in config.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            settings[key.strip()] = value.strip()
    return "task/cgroup" in settings.get("TaskPlugin", "") or "OverMemoryKill" in settings.get(
        "JobAcctGatherParams", ""
    )


def test_job_over_its_memory(project: Project, jobs: list[str]) -> None:
    project.tool("hog", HOG, entrypoint="main.py", env="system", deps=None)
    project.config(
        "hog.yaml",
        "tool: hog\nexperiment: hog\nxstash:\n  launcher: slurm\n  resources:\n    mem: 50M\n",
    )
    enforced = memory_enforced()
    result = project.pytester.runpytest("configs")
    run_dir, record = only_record(project, "hog")
    jobs.append(record["job_id"])
    assert record["resources"] == {"mem": 50}
    assert job_info(record["job_id"])["MinMemoryNode"] == "50M"  # SLURM was asked for 50 MB
    if enforced:
        result.assert_outcomes(failed=1)
        assert record["status"] == "failed"
        assert record["slurm_state"] == "OUT_OF_MEMORY"
        result.stdout.fnmatch_lines([f"*SLURM job {record['job_id']} ended OUT_OF_MEMORY*"])
    else:
        # This cluster (TaskPlugin=task/none, no OverMemoryKill) does not enforce --mem: the job
        # holds ten times its request and completes, and so does the experiment.
        result.assert_outcomes(passed=1)
        assert record["status"] == "passed"
        assert record["slurm_state"] == "COMPLETED"
        assert (run_dir / "stdout.log").read_text() == "allocated\nsurvived\n"


# --- 7. Ctrl-C while waiting for the job -------------------------------------------------------


def test_ctrl_c_cancels_the_job(project: Project, jobs: list[str]) -> None:
    project.tool("sleeper", SLEEPER, entrypoint="main.py", env="system", deps=None)
    project.config("nap.yaml", "tool: sleeper\nexperiment: nap\nxstash:\n  launcher: slurm\n")
    proc = start_pytest(project)
    try:
        run_dir, job_id = wait_for_running_job(project, "nap", proc, jobs)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        stop(proc)
    text = output.decode(errors="replace")
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text
    assert "KeyboardInterrupt" in text
    assert took < 30
    queued, state = wait_until_gone(job_id, 15)
    assert queued == "", f"job {job_id} still queued as {queued} after the Ctrl-C"
    assert state.startswith("CANCELLED"), state
    record = read_record(run_dir)
    assert record["status"] == "interrupted"
    assert record["job_id"] == job_id
    assert record["ended"] >= record["started"]
    assert "woke up" not in (run_dir / "stdout.log").read_text()


# --- 8. resources and launchers are checked at collection -------------------------------------

BAD_RESOURCES = {
    # name: (the xstash block's lines, the line (1-based, in the file) and words of the error)
    "unknown": ("  resources:\n    partition: debug\n    gpu: 1\n", 6, "Did you mean 'gpus'?"),
    "time": ("  resources:\n    time: soon\n", 5, "'soon' is not a duration"),
    "mem": ("  resources:\n    mem: lots\n", 5, "mem 'lots' is not a memory size"),
    "cpus": ("  resources:\n    cpus: 0\n", 5, "cpus must be a whole number, not 0"),
    "launcher": ("  launcher: kubernetes\n", 4, "launcher 'kubernetes' is not one of local, slurm"),
}


def test_bad_resources_are_collection_errors(repo: Project) -> None:
    for name, (block, _, _) in BAD_RESOURCES.items():
        repo.config(f"bad_{name}.yaml", f"tool: t\nexperiment: bad_{name}\nxstash:\n{block}")
    result = repo.pytester.runpytest("configs")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=len(BAD_RESOURCES))
    text = result.stdout.str()
    for name, (_, line, words) in BAD_RESOURCES.items():
        path = repo.root / "configs" / f"bad_{name}.yaml"
        result.stdout.fnmatch_lines([f"{path}:{line}: *{words}*"])
    assert "Known: partition, time, cpus, gpus, mem" in text
    assert not (repo.root / "outputs").exists()  # nothing ran, nothing was submitted


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("resources:\n  partition: debug\n  gpu: 1", "Did you mean 'gpus'?"),
        ("resources:\n  time: soon", "'soon' is not a duration"),
        ("resources:\n  mem: lots", "mem 'lots' is not a memory size"),
        ("resources:\n  cpus: 0", "cpus must be a whole number, not 0"),
        ("launcher: kubernetes", "launcher 'kubernetes' is not one of local, slurm"),
    ],
    ids=["unknown", "time", "mem", "cpus", "launcher"],
)
def test_bad_tool_resources_fail_its_experiments(
    project: Project, hydra_python: str, extra: str, words: str
) -> None:
    project.tool("t", METRICS_EXIT_TOOL, env=hydra_python, deps=None, extra=extra)
    project.config("a.yaml", "tool: t\nexperiment: a\n")
    project.config("b.yaml", "tool: t\nexperiment: b\nxstash:\n  launcher: slurm\n")
    result = project.pytester.runpytest("configs")
    result.assert_outcomes(errors=2)
    meta = project.root / "configs" / "meta.yaml"
    key = extra.split(":")[0]  # the error names the line of the tool's resources (launcher)
    lines = meta.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip().startswith(f"{key}:"))
    for config in ("a", "b"):
        result.stdout.fnmatch_lines(
            [
                f"{project.root}/configs/{config}.yaml:1: tool 't' is misconfigured in meta*",
                f"*{meta}:{line}: tool 't': *{words}*",
            ]
        )
    assert not (project.root / "outputs").exists()


# --- 9. sbatch refuses the job ---------------------------------------------------------------


def test_sbatch_refusal_is_an_error(repo: Project) -> None:
    repo.config(
        "nowhere.yaml",
        "tool: t\nexperiment: nowhere\nxstash:\n  launcher: slurm\n  resources:\n"
        "    partition: nonexistent\n",
    )
    result = repo.pytester.runpytest("configs")
    result.assert_outcomes(failed=1)
    run_dir, record = only_record(repo, "nowhere")
    result.stdout.fnmatch_lines(
        [
            "*experiment 'nowhere' (configs/nowhere.yaml): submitting the SLURM job failed: *",
            f"run directory: {run_dir}",
        ]
    )
    assert "nvalid partition" in result.stdout.str()  # sbatch's own reason
    assert record["status"] == "error"
    assert record["launcher"] == "slurm"
    assert record["error"].startswith("sbatch failed")
    assert "nvalid partition" in record["error"]
    assert "job_id" not in record
    assert record["ended"] >= record["started"]
    assert not (run_dir / "stdout.log").exists()
    result.stdout.fnmatch_lines(["*configs/nowhere.yaml::nowhere *t *error*"])
