"""The login-node workflow on a real SLURM cluster: submit, walk away, collect later."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import CONFIG_SLEEPER, Project, require_slurm

require_slurm()

# Plain Python: sleeps for its config's 'sleep' seconds, writes metrics.
TOOL = (
    CONFIG_SLEEPER
    + """\
import json
json.dump({"score": 1.0}, open(run_dir + "/metrics.json", "w"))
print("done")
"""
)


def records(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((root / "outputs").rglob("xstash.json"))]


def jobs_named(name: str) -> list[str]:
    """Jobs of that name in accounting; sacct can lag a few seconds behind slurmctld."""
    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "JobID", "--name", name, "-S", "now-1hours"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if out or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


@pytest.fixture
def cluster_repo(project: Project) -> Project:
    project.tool(
        "sleepy",
        TOOL,
        entrypoint="main.py",
        env="system",
        deps=None,
        extra="launcher: slurm\nresources: {time: 5m, mem: 200M}",
    )
    tag = os.urandom(4).hex()  # job names unique to this test, to count submissions in sacct
    for i, sleep in enumerate((0, 4)):
        project.config(
            f"d{i}.yaml",
            f"tool: sleepy\nexperiment: d{i}_{tag}\nsleep: {sleep}\n"
            "xstash:\n  expect: {score: '>= 1'}\n",
        )
    project.tag = tag  # type: ignore[attr-defined]
    return project


def test_detach_then_attach_never_submits_twice(cluster_repo: Project) -> None:
    tag = cluster_repo.tag  # type: ignore[attr-defined]
    detached = cluster_repo.pytester.runpytest("configs", "--xstash-detach", "-rs")
    detached.assert_outcomes(skipped=2)
    detached.stdout.fnmatch_lines(["*detached: SLURM job * submitted; run the same pytest*"])
    first = records(cluster_repo.root)
    assert [r["status"] for r in first] == ["submitted", "submitted"]
    job_ids = sorted(r["job_id"] for r in first)
    # The second pass attaches (one job is still sleeping) and collects both results.
    attached = cluster_repo.pytester.runpytest("configs", "-v")
    attached.assert_outcomes(passed=2)
    second = records(cluster_repo.root)
    assert len(second) == 2, "attaching must not make new runs"
    assert sorted(r["job_id"] for r in second) == job_ids
    assert {r["status"] for r in second} == {"passed"}
    assert all(r["attached_by"] for r in second)
    # Both went in as one job array of two tasks (same resources), and only once.
    tasks = jobs_named(f"xstash-array-d0_{tag}")
    assert sorted(tasks) == job_ids, "a job was submitted twice"
    # A third session finds nothing left to attach to: it submits and runs anew.
    third = cluster_repo.pytester.runpytest("configs")
    third.assert_outcomes(passed=2)
    assert len(records(cluster_repo.root)) == 4


def test_session_without_xdist_submits_all_jobs_before_waiting(cluster_repo: Project) -> None:
    for i in range(2, 6):
        cluster_repo.config(f"d{i}.yaml", f"tool: sleepy\nexperiment: d{i}\nsleep: 2\n")
    result = cluster_repo.pytester.runpytest("configs")
    result.assert_outcomes(passed=6)
    found = records(cluster_repo.root)
    submitted = [r["started"] for r in found]
    # Every job was submitted (its record written) before the first one finished.
    assert max(submitted) < min(r["ended"] for r in found), found


def test_exitfirst_cancels_the_jobs_still_queued(cluster_repo: Project) -> None:
    cluster_repo.config("a0_fails.yaml", "tool: sleepy\nexperiment: a0_fails\nsleep: x\n")
    for i in range(2, 5):
        cluster_repo.config(f"d{i}.yaml", f"tool: sleepy\nexperiment: d{i}\nsleep: 60\n")
    result = cluster_repo.pytester.runpytest("configs", "-x")
    result.assert_outcomes(failed=1)
    found = {r["experiment"]: r for r in records(cluster_repo.root)}
    assert found["a0_fails"]["status"] == "failed"
    waiting = [r for name, r in found.items() if name.startswith("d") and name[1] in "234"]
    assert len(waiting) == 3
    for record in waiting:
        assert record["status"] == "interrupted", record
        assert record["slurm_state"] == "CANCELLED"
    deadline = time.monotonic() + 15
    ids = [r["job_id"] for r in waiting]
    while time.monotonic() < deadline:
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-j", ",".join(ids)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if not queue:
            break
        time.sleep(0.5)
    assert not queue, f"jobs still queued after -x: {queue}"
