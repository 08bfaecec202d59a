"""Many experiments on a real SLURM cluster: job arrays, the queue cap, packed allocations.

The CI cluster (.ci/slurm-ci-up.sh) has MaxArraySize=25, so 40 experiments with the same
resources must go in as two arrays (25 + 15 tasks). ``sbatch`` is counted by a wrapper first on
PATH that logs each call and then runs the real one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from helpers import CONFIG_SLEEPER, Project, require_slurm

require_slurm()

# Plain Python (the tests are about submission, not the tool): sleeps its config's 'sleep'.
TOOL = (
    CONFIG_SLEEPER
    + """\
import json
json.dump({"score": 1.0}, open(run_dir + "/metrics.json", "w"))
"""
)


def max_array_size() -> int:
    out = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("MaxArraySize"))
    return int(line.split("=")[1])


@pytest.fixture
def sbatch_log(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every sbatch call of the test's pytest lands as a line in this file."""
    folder = tmp_path_factory.mktemp("shim")
    log = folder / "sbatch.log"
    log.touch()
    real = shutil.which("sbatch")
    shim = folder / "sbatch"
    shim.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return log


def sbatch_calls(log: Path) -> int:
    return len(log.read_text().splitlines())


def records(root: Path) -> list[dict[str, Any]]:
    found = sorted((root / "outputs").rglob("xstash.json"))
    return [json.loads(p.read_text()) for p in found]


def sweep_config(name: str, count: int, extra: str = "", top: str = "") -> str:
    values = ", ".join(str(i) for i in range(count))
    return (
        f"tool: sleepy\nexperiment: {name}\n{top}sleep: 0\ni: 0\n"
        f"xstash:\n  sweep:\n    i: [{values}]\n  expect: {{score: '>= 1'}}\n{extra}"
    )


def in_accounting(job_ids: set[str]) -> set[str]:
    """Which of these job ids (array tasks ``A_T``) sacct knows; it can lag slurmctld."""
    arrays = sorted({job.split("_")[0] for job in job_ids})
    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "JobID", "-j", ",".join(arrays)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if job_ids <= set(out) or time.monotonic() > deadline:
            return job_ids & set(out)
        time.sleep(0.5)


@pytest.fixture
def cluster(project: Project) -> Project:
    project.tool(
        "sleepy",
        TOOL,
        entrypoint="main.py",
        env="system",
        deps=None,
        extra="launcher: slurm\nresources: {time: 5m, mem: 100M}",
    )
    return project


def test_forty_experiments_go_in_as_arrays_split_by_max_array_size(
    cluster: Project, sbatch_log: Path
) -> None:
    limit = max_array_size()
    assert limit < 40, "the CI cluster is configured with a small MaxArraySize"
    cluster.config("many.yaml", sweep_config("many", 40))
    result = cluster.pytester.runpytest("configs", "--junitxml=junit.xml")
    result.assert_outcomes(passed=40)
    runs = records(cluster.root)
    assert len(runs) == 40 and {r["status"] for r in runs} == {"passed"}
    ids = {r["job_id"] for r in runs}
    arrays = {job.split("_")[0] for job in ids}
    # One sbatch per array; each array within MaxArraySize.
    expected = -(-40 // limit)
    assert sbatch_calls(sbatch_log) == expected == len(arrays)
    assert all("_" in job for job in ids) and len(ids) == 40
    for array in arrays:
        assert len([j for j in ids if j.startswith(array + "_")]) <= limit
    assert in_accounting(ids) == ids
    # Each task keeps its own record, logs and JUnit properties.
    assert all(Path(r["slurm_folder"]).is_dir() for r in runs)
    # (xunit2, pytest's default family, keeps them on the suite as '<node id>::job_id')
    root = ET.parse(cluster.root / "junit.xml").getroot()
    job_props = {
        p.get("value") for p in root.iter("property") if p.get("name", "").endswith("::job_id")
    }
    assert job_props == ids


def test_queue_cap_and_array_throttle(cluster: Project, sbatch_log: Path) -> None:
    cluster.write(
        "pytest.ini",
        "[pytest]\nxstash_slurm_max_jobs = 6\nxstash_slurm_array_parallelism = 2\n",
    )
    cluster.config("capped.yaml", sweep_config("capped", 14))
    result = cluster.pytester.runpytest("configs")
    result.assert_outcomes(passed=14)
    calls = sbatch_log.read_text().splitlines()
    # Never more than 6 queued: 14 tasks need at least 3 submissions; the first is 6 tasks.
    assert len(calls) >= 3
    scripts = [Path(line.split()[-1]).read_text() for line in calls]
    arrays = [m for s in scripts for m in re.findall(r"--array=0-(\d+)%(\d+)", s)]
    assert arrays, scripts[0]
    sizes = [int(last) + 1 for last, _ in arrays]
    assert max(sizes) <= 6 and sum(sizes) + (len(calls) - len(arrays)) == 14
    assert {int(throttle) for _, throttle in arrays} == {2}


def test_packed_run_of_forty_uses_at_most_two_allocations(
    cluster: Project, sbatch_log: Path
) -> None:
    cluster.write("pytest.ini", "[pytest]\nxstash_slurm_pack_jobs = 2\n")
    cluster.config(
        "packed.yaml",
        sweep_config("packed", 40, "  resources: {pack: true}\n", "estimated_runtime: 1s\n"),
    )
    result = cluster.pytester.runpytest("configs", "-n", "0")
    result.assert_outcomes(passed=40)
    runs = records(cluster.root)
    assert {r["status"] for r in runs} == {"passed"} and len(runs) == 40
    assert sbatch_calls(sbatch_log) <= 2
    assert all(r["packed"] is True for r in runs)
    assert len({r["job_id"] for r in runs}) <= 2
    # Each experiment ran in its own run directory with its own logs and timings.
    run_dirs = cluster.run_dirs("packed")
    assert len(run_dirs) == 40
    for run_dir in run_dirs:
        assert (run_dir / "stdout.log").exists() and (run_dir / "stderr.log").exists()
        assert (run_dir / "pack-result.json").exists()
    # Several at a time, within the allocation's 2 CPUs: never more than 2 overlap.
    results = [json.loads((d / "pack-result.json").read_text()) for d in run_dirs]
    spans = sorted((r["started"], r["ended"]) for r in results)
    overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert 1 <= overlap <= 2


def test_pack_below_packs_only_short_experiments(cluster: Project, sbatch_log: Path) -> None:
    cluster.write("pytest.ini", "[pytest]\nxstash_slurm_pack_below = 2m\n")
    cluster.config("short.yaml", sweep_config("short", 6, top="estimated_runtime: 5s\n"))
    cluster.config(
        "long.yaml",
        "tool: sleepy\nexperiment: long\nestimated_runtime: 10m\nsleep: 1\n"
        "xstash:\n  expect: {score: '>= 1'}\n",
    )
    result = cluster.pytester.runpytest("configs")
    result.assert_outcomes(passed=7)
    by_name = {r["experiment"]: r for r in records(cluster.root)}
    assert by_name["long"].get("packed") is None
    short = [r for r in records(cluster.root) if r["experiment"] == "short"]
    assert all(r["packed"] is True for r in short) and len({r["job_id"] for r in short}) == 1
    assert sbatch_calls(sbatch_log) == 2  # one allocation, one job for 'long'


def test_packed_allocation_killed_by_its_time_limit_leaves_honest_records(
    cluster: Project,
) -> None:
    # Estimated at 1 s each, the allocation asks for a minute; two of them sleep far longer.
    for name, sleep in (("quick", 0), ("stuck_a", 600), ("stuck_b", 600)):
        cluster.config(
            f"{name}.yaml",
            f"tool: sleepy\nexperiment: {name}\nestimated_runtime: 1s\nsleep: {sleep}\n"
            "xstash:\n  resources: {pack: true}\n"
            "  expect: {score: '>= 1'}\n",
        )
    result = cluster.pytester.runpytest("configs", "-rA")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        ["*stuck_a*its shared allocation (SLURM job *) ended TIMEOUT before it finished*"]
    )
    by_name = {r["experiment"]: r for r in records(cluster.root)}
    assert by_name["quick"]["status"] == "passed"
    for name in ("stuck_a", "stuck_b"):
        record = by_name[name]
        assert record["status"] == "error" and record["slurm_state"] == "TIMEOUT"
        assert "ended TIMEOUT" in record["error"] and record["packed"] is True
        run_dir = cluster.run_dirs(name)[0]
        assert (run_dir / "stdout.log").exists() and (run_dir / "stderr.log").exists()
        # The allocation noted that its end killed the tool (not a crash of the tool).
        assert json.loads((run_dir / "pack-result.json").read_text())["allocation_ended"]
    # They can be resumed: --xstash-reuse keeps the passed one and runs the others again.
    for name in ("stuck_a", "stuck_b"):
        path = cluster.root / "configs" / f"{name}.yaml"
        path.write_text(path.read_text().replace("sleep: 600", "sleep: 0"))
    again = cluster.pytester.runpytest("configs", "--xstash-reuse")
    again.assert_outcomes(passed=3)
    assert len(cluster.run_dirs("quick")) == 1


@pytest.mark.parametrize("packed", [False, True], ids=["array", "packed"])
def test_detach_then_attach(cluster: Project, sbatch_log: Path, packed: bool) -> None:
    extra = "  resources: {pack: true}\n" if packed else ""
    cluster.config("d.yaml", sweep_config("d", 5, extra).replace("sleep: 0", "sleep: 3"))
    detached = cluster.pytester.runpytest("configs", "--xstash-detach")
    detached.assert_outcomes(skipped=5)
    first = records(cluster.root)
    assert [r["status"] for r in first] == ["submitted"] * 5
    assert sbatch_calls(sbatch_log) == 1
    attached = cluster.pytester.runpytest("configs")
    attached.assert_outcomes(passed=5)
    assert sbatch_calls(sbatch_log) == 1  # nothing submitted again
    second = records(cluster.root)
    assert len(second) == 5 and {r["status"] for r in second} == {"passed"}
    assert {r["job_id"] for r in second} == {r["job_id"] for r in first}
