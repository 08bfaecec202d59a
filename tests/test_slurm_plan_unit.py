"""The pure parts of SLURM arrays and packing (no cluster needed): grouping, splitting, spreading
over allocations, and the pack runner's own bookkeeping on this machine."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from xstash_plugin.launchers import pack
from xstash_plugin.launchers.slurm import sbatch_parameters
from xstash_plugin.launchers.slurm_batch import chunks, group_key
from xstash_plugin.run.slurm_plan import spread


def test_equal_resources_share_a_group_whatever_their_names() -> None:
    a = sbatch_parameters({"cpus": 2, "time": 600}, None, "a")
    b = sbatch_parameters({"cpus": 2, "time": 600}, None, "b")
    c = sbatch_parameters({"cpus": 4, "time": 600}, None, "a")
    d = sbatch_parameters({"cpus": 2}, 600.0, "a")  # the timeout is the job's time limit
    assert group_key(a) == group_key(b) == group_key(d)
    assert group_key(a) != group_key(c)


def test_chunks_respect_the_size() -> None:
    assert [len(c) for c in chunks(list(range(40)), 25)] == [25, 15]
    assert [len(c) for c in chunks(list(range(3)), 1)] == [1, 1, 1]
    assert list(chunks([], 5)) == []


def test_spread_is_longest_first_into_the_least_loaded() -> None:
    weights = [10.0, 1.0, 1.0, 9.0, 2.0, 2.0]
    bins = spread(weights, 2)
    loads = sorted(sum(weights[i] for i in b) for b in bins)
    assert loads == [12.0, 13.0]
    assert sorted(i for b in bins for i in b) == list(range(6))
    assert spread([1.0], 4) == [[0]]  # no empty allocation


def test_pack_runner_runs_each_task_in_its_own_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the allocation's node does, here: at most SLURM_CPUS_ON_NODE at once, a result
    file per task, a timeout per task."""
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "2")
    script = (
        "import sys, time, os, json\n"
        "start = time.time(); time.sleep(float(sys.argv[1]))\n"
        "json.dump([start, time.time()], open('span.json', 'w'))\n"
    )
    tasks = []
    for i, seconds in enumerate([0.5, 0.5, 0.5, 30]):
        run_dir = tmp_path / f"r{i}"
        run_dir.mkdir()
        tasks.append(
            pack.PackTask(
                argv=(sys.executable, "-c", script, str(seconds)),
                cwd=str(run_dir),
                changed={},
                removed=(),
                run_dir=str(run_dir),
                timeout=2.0 if seconds > 10 else None,
                grace=0.5,
                cookie=f"c{i}",
            )
        )
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert pack.run_pack(tasks) == 4
    finally:
        signal.signal(signal.SIGTERM, previous)
    results = [json.loads((Path(t.run_dir) / pack.RESULT_NAME).read_text()) for t in tasks]
    assert [r["returncode"] for r in results[:3]] == [0, 0, 0]
    assert results[3]["timed_out"] is True and "allocation_ended" not in results[3]
    spans = [json.loads((Path(t.run_dir) / "span.json").read_text()) for t in tasks[:3]]
    overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert overlap <= 2  # the allocation's two CPUs, never three tasks at once
    assert all(r["slots"]["cpus"] == 1 for r in results)
    assert os.path.exists(Path(tasks[0].run_dir) / "stdout.log")
