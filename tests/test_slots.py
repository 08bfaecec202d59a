"""Local resource slots (launchers/slots.py): the inventory, the shared allocation table (no GPU
held twice, waiting, dead holders reclaimed, shares of one GPU), and real sessions under
``-n 4`` / ``-n 2`` on a faked 4-GPU machine (``xstash_gpus = 0,1,2,3``), shares of a faked
one-GPU machine, and ``-n auto``."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import random
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from helpers import Project

from xstash_plugin.config.resources import ResourceError, check_resources
from xstash_plugin.launchers.slots import (
    Grant,
    Inventory,
    NeverFits,
    SlotTable,
    Want,
    bound_by_visible,
    check_fits,
    detect_gpus,
    parse_gpus,
    parse_mem,
    parse_nvidia_smi,
)
from xstash_plugin.run.demands import gpu_jobs
from xstash_plugin.session import STATE_KEY

SMI = """\
0, GPU-aaaa1111-0000-0000-0000-000000000000, 81920 MiB
1, GPU-bbbb2222-0000-0000-0000-000000000000, 81920 MiB
2, GPU-cccc3333-0000-0000-0000-000000000000, 81920 MiB
3, GPU-dddd4444-0000-0000-0000-000000000000, 81920 MiB
"""
FOUR = Inventory(gpus=("0", "1", "2", "3"), cpus=8, mem=16 * 1024**3)


def test_nvidia_smi_output_and_cuda_visible_devices() -> None:
    gpus = parse_nvidia_smi(SMI)
    assert [i for i, _ in gpus] == ["0", "1", "2", "3"]
    assert bound_by_visible(gpus, None) == ("0", "1", "2", "3")
    assert bound_by_visible(gpus, "2,0") == ("2", "0")
    assert bound_by_visible(gpus, "GPU-dddd4444-0000-0000-0000-000000000000,1") == ("3", "1")
    assert bound_by_visible(gpus, "") == ()
    assert bound_by_visible(gpus, "-1") == ()
    assert bound_by_visible(gpus, "1,7,2") == ("1",)  # CUDA stops at an invalid entry

    def smi(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 0, SMI, "")

    def missing(argv: list[str], **kwargs: Any) -> Any:
        raise FileNotFoundError(argv[0])

    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "1,3"}, smi) == ("1", "3")
    assert detect_gpus({}, smi) == ("0", "1", "2", "3")
    assert detect_gpus({}, missing) == ()


def test_ini_values_parse() -> None:
    assert parse_gpus("0,1,2,3") == ("0", "1", "2", "3")
    assert parse_gpus("none") == ()
    assert parse_mem("16G") == 16 * 1024**3
    assert parse_mem("512") == 512 * 1024**2
    with pytest.raises(ValueError):
        parse_gpus("0,,1")


def test_check_fits_says_what_the_machine_has() -> None:
    assert check_fits({"gpus": 4, "cpus": 8, "mem": 16 * 1024}, FOUR) is None
    assert check_fits({"partition": "gpu"}, FOUR) is None
    problem = check_fits({"gpus": 5, "mem": 32 * 1024}, FOUR)
    assert problem is not None
    assert "gpus: 5" in problem and "mem: 32768 MiB" in problem
    assert "GPUs 0,1,2,3 (4), 8 CPUs, 16384 MiB" in problem


def test_grant_environment() -> None:
    grant = Grant("t", ("1", "3"), 4, 0)
    env = grant.environ({"OMP_NUM_THREADS": "2", "PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == "1,3"
    assert env["OMP_NUM_THREADS"] == "2"  # the user's own stays
    assert env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "4"
    assert Grant("t", (), 0, 0).environ({})["CUDA_VISIBLE_DEVICES"] == ""  # gpus: 0
    assert "CUDA_VISIBLE_DEVICES" not in Grant("t", None, 2, 0).environ({})  # no gpus named
    assert Grant("t", ("0",), 2, 5).as_dict() == {"gpus": ["0"], "cpus": 2, "mem": 5}


def test_acquire_release_and_blocking(tmp_path: Path) -> None:
    table = SlotTable(tmp_path / "slots", FOUR, poll=0.02)
    first = table.acquire(Want(gpus=3, cpus=2))
    assert first.gpus == ("0", "1", "2")
    assert Want.of({"gpus": 0}) == Want(gpus=0)
    assert Want.of({"partition": "x"}) is None
    got: list[Grant] = []
    waiter = threading.Thread(target=lambda: got.append(table.acquire(Want(gpus=2))))
    waiter.start()
    time.sleep(0.3)
    assert not got  # one GPU free, two asked for: it waits
    table.release(first)
    waiter.join(timeout=5)
    assert got and got[0].gpus == ("0", "1")
    assert [h["gpus"] for h in table.holders()] == [["0", "1"]]
    table.release(got[0])
    assert table.holders() == []
    with pytest.raises(NeverFits, match="gpus: 5"):  # never waits for what cannot be
        table.acquire(Want(gpus=5))


def test_gpus_below_one_are_a_share_of_one_gpu() -> None:
    assert check_resources({"gpus": 0.5}) == {"gpus": 0.5}
    assert check_resources({"gpus": 0.25, "cpus": 2}) == {"gpus": 0.25, "cpus": 2}
    assert check_resources({"gpus": 2}) == {"gpus": 2}
    for bad in (1.5, 2.0, 0.0, -0.5, True, "0.5"):
        with pytest.raises(ResourceError, match="share of one GPU between 0 and 1") as caught:
            check_resources({"gpus": bad})
        assert caught.value.key == "gpus"
    assert Want.of({"gpus": 0.5}) == Want(gpus=0.5)
    grant = Grant("t", ("1",), 0, 0, 0.5)
    assert grant.as_dict() == {"gpus": ["1"], "cpus": 0, "mem": 0, "gpu_share": 0.5}
    assert grant.environ({})["CUDA_VISIBLE_DEVICES"] == "1"
    assert check_fits({"gpus": 0.5}, Inventory((), 8, 1024**3)) is not None  # no GPU to share
    assert check_fits({"gpus": 0.5}, Inventory(("0",), 8, 1024**3)) is None


def test_shares_fill_one_gpu_before_the_next_and_whole_gpus_stay_whole(tmp_path: Path) -> None:
    table = SlotTable(tmp_path / "slots", Inventory(("0", "1"), 8, 1024**3), poll=0.02)
    halves = [table.acquire(Want(gpus=0.5)) for _ in range(2)]
    assert [h.gpus for h in halves] == [("0",), ("0",)]  # GPU 1 stays whole
    whole = table.acquire(Want(gpus=1))
    assert whole.gpus == ("1",)
    quarter: list[Grant] = []
    waiter = threading.Thread(target=lambda: quarter.append(table.acquire(Want(gpus=0.25))))
    waiter.start()
    time.sleep(0.3)
    assert not quarter  # GPU 0 is full, GPU 1 is not shared with a whole-GPU run
    table.release(halves[0])
    waiter.join(timeout=5)
    assert quarter and quarter[0].gpus == ("0",) and quarter[0].share == 0.25
    shares = sorted(h.get("share") or 1.0 for h in table.holders() if h["gpus"] == ["0"])
    assert shares == [0.25, 0.5]
    table.release(whole)
    assert table.acquire(Want(gpus=0.25)).gpus == ("0",)  # the fullest GPU that has room
    assert table.acquire(Want(gpus=0.5)).gpus == ("1",)


def test_a_whole_gpu_run_waits_for_a_shared_gpu_to_empty(tmp_path: Path) -> None:
    table = SlotTable(tmp_path / "slots", Inventory(("0",), 8, 1024**3), poll=0.02, overtakes=0)
    half = table.acquire(Want(gpus=0.5))
    got: list[Grant] = []
    whole = threading.Thread(target=lambda: got.append(table.acquire(Want(gpus=1))))
    whole.start()
    time.sleep(0.3)
    assert not got
    # The whole-GPU run reserves GPU 0 (overtakes=0): a later share must not slip in.
    late: list[Grant] = []
    share = threading.Thread(target=lambda: late.append(table.acquire(Want(gpus=0.5))))
    share.start()
    time.sleep(0.3)
    assert not late and not got
    table.release(half)
    whole.join(timeout=5)
    assert got and got[0].gpus == ("0",) and got[0].share is None
    time.sleep(0.3)
    assert not late
    table.release(got[0])
    share.join(timeout=5)
    assert late and late[0].gpus == ("0",)


@pytest.mark.parametrize("overtakes", [0, 1])
def test_a_waiting_two_gpu_run_is_overtaken_a_bounded_number_of_times(
    tmp_path: Path, overtakes: int
) -> None:
    """A 1-GPU run may overtake an earlier 2-GPU waiter only ``overtakes`` times; then the GPU
    that frees up is kept for the 2-GPU run."""
    table = SlotTable(tmp_path / "slots", FOUR, poll=0.02, overtakes=overtakes)
    held = [table.acquire(Want(gpus=1)) for _ in range(3)]
    order: list[str] = []

    def take(name: str, gpus: int) -> None:
        grant = table.acquire(Want(gpus=gpus))
        order.append(name)
        time.sleep(0.9)
        table.release(grant)

    big = threading.Thread(target=take, args=("big", 2), daemon=True)
    big.start()
    time.sleep(0.6)  # GPU 3 is free: not enough for big
    smalls = [threading.Thread(target=take, args=(f"small{i}", 1), daemon=True) for i in range(2)]
    for small in smalls:
        small.start()
        time.sleep(0.3)
    time.sleep(0.6)
    # overtakes=0: GPU 3 is kept for big; overtakes=1: small0 takes it, small1 must wait.
    assert order == ["small0"][:overtakes]
    time.sleep(0.9)  # small0 (if it ran) is done: big reserves GPU 3, small1 still waits
    assert order == ["small0"][:overtakes]
    table.release(held[0])
    big.join(timeout=15)
    for small in smalls:
        small.join(timeout=15)
    assert order[: overtakes + 1] == [*["small0"][:overtakes], "big"]
    assert sorted(order) == ["big", "small0", "small1"]


def _hold_and_sleep(folder: str, ready: Any) -> None:
    table = SlotTable(Path(folder), FOUR, poll=0.02)
    table.acquire(Want(gpus=4, cpus=8))
    ready.set()
    time.sleep(60)


def test_a_killed_holder_is_reclaimed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_hold_and_sleep, args=(str(tmp_path / "slots"), ready))
    child.start()
    assert ready.wait(30)
    table = SlotTable(tmp_path / "slots", FOUR, poll=0.02)
    assert len(table.holders()) == 1
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    grant = table.acquire(Want(gpus=4, cpus=8))
    assert grant.gpus == ("0", "1", "2", "3")


def _contend(folder: str, seed: int, out: Any) -> None:
    rng = random.Random(seed)
    table = SlotTable(Path(folder), FOUR, poll=0.005)
    for _ in range(10):
        grant = table.acquire(Want(gpus=rng.choice((1, 2))))
        start = time.time()
        time.sleep(rng.uniform(0.0, 0.02))
        out.put((grant.gpus, start, time.time()))
        table.release(grant)


def test_no_gpu_is_held_twice_under_contention(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    procs = [
        context.Process(target=_contend, args=(str(tmp_path / "slots"), seed, out))
        for seed in range(8)
    ]
    for proc in procs:
        proc.start()
    intervals = [out.get(timeout=120) for _ in range(80)]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert_no_overlap([(list(g), s, e) for g, s, e in intervals])


def assert_no_overlap(intervals: list[tuple[list[str], float, float]]) -> None:
    by_gpu: dict[str, list[tuple[float, float]]] = {}
    for gpus, start, end in intervals:
        for gpu in gpus:
            by_gpu.setdefault(gpu, []).append((start, end))
    for gpu, spans in by_gpu.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"GPU {gpu} held twice at {start}"


# --- real sessions --------------------------------------------------------------------------

SLOT_TOOL = """\
import json, os, signal, time
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg):
    start = time.time()
    if cfg.kill_worker:
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)
    time.sleep(cfg.sleep)
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, "slot.json"), "w") as f:
        json.dump({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "want": cfg.want,
                   "omp": os.environ.get("OMP_NUM_THREADS"), "start": start, "end": time.time()}, f)

if __name__ == "__main__":
    main()
"""


def slot_project(project: Project, python: str) -> Project:
    folder = project.tool("slotted", SLOT_TOOL, entrypoint="src/main.py", env=python, deps=None)
    (folder / "src" / "conf").mkdir(exist_ok=True)
    (folder / "src" / "conf" / "train.yaml").write_text("sleep: 0.5\nwant: 1\nkill_worker: 0\n")
    project.write("pytest.ini", "[pytest]\nxstash_gpus = 0,1,2,3\nxstash_cpus = 8\n")
    return project


def slot_config(name: str, gpus: float, sleep: float, kill: bool = False) -> str:
    return (
        f"tool: slotted\nexperiment: {name}\ndefaults:\n  - train\n  - _self_\n"
        f"sleep: {sleep}\nwant: {gpus}\nkill_worker: {int(kill)}\n"
        f"xstash:\n  launcher: local\n  resources: {{gpus: {gpus}, cpus: 2}}\n"
    )


def slot_runs(project: Project) -> list[dict[str, Any]]:
    found = sorted((project.root / "outputs").rglob("slot.json"))
    return [json.loads(path.read_text()) for path in found]


def check_runs(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        gpus = run["cuda"].split(",")
        assert len(set(gpus)) == len(gpus) == run["want"], run
        assert set(gpus) <= {"0", "1", "2", "3"}
        assert run["omp"] == "2"
    assert_no_overlap([(r["cuda"].split(","), r["start"], r["end"]) for r in runs])


@pytest.mark.parametrize("workers", ["4", "2"])
def test_parallel_runs_share_four_gpus(project: Project, hydra_python: str, workers: str) -> None:
    slot_project(project, hydra_python)
    for i in range(12):
        project.config(f"e{i:02d}.yaml", slot_config(f"e{i:02d}", 1 + i % 2, 0.5 + 0.05 * i))
    started = time.time()
    result = project.pytester.runpytest_subprocess(
        "configs", "-p", "no:cacheprovider", "-n", workers
    )
    wall = time.time() - started
    result.assert_outcomes(passed=12)
    runs = slot_runs(project)
    assert len(runs) == 12
    check_runs(runs)
    # 18 GPU-runs of ~0.8 s on 4 GPUs is ~4 s of work; startup and Hydra dominate: loose.
    assert wall < 120
    assert (project.root / "outputs" / ".xstash" / "slots" / "table.json").exists()
    table = json.loads((project.root / "outputs" / ".xstash" / "slots" / "table.json").read_text())
    assert table == {"held": [], "queue": []}


def test_the_controller_reads_what_each_experiment_asks_of_this_machines_gpus(
    project: Project, hydra_python: str
) -> None:
    """run/demands.py, as the xdist controller calls it: GPUs of the local launcher only, the
    config's estimate, else the last run's duration, else the median of the others."""
    slot_project(project, hydra_python)
    project.config(
        "a.yaml", slot_config("a", 2, 0.1).replace("sleep:", "estimated_runtime: 30s\nsleep:")
    )
    project.config("b.yaml", slot_config("b", 0.5, 0.1))
    project.config("c.yaml", slot_config("c", 1, 0.1).replace("launcher: local", "launcher: slurm"))
    project.config("d.yaml", slot_config("d", 1, 0.1))
    durations = project.root / "outputs" / ".xstash" / "durations.json"
    durations.parent.mkdir(parents=True)
    durations.write_text(json.dumps({"configs/b.yaml::b": 12.0}))
    config = project.pytester.parseconfigure(project.root / "configs")
    ids = [f"configs/{name}.yaml::{name}" for name in "abcd"]
    ids.append("configs/s.yaml::s::mean")  # an aggregate holds nothing
    planned = gpu_jobs(config.stash[STATE_KEY], ids)
    assert planned is not None
    gpus, jobs = planned
    assert gpus == 4
    assert [(job.gpus, job.seconds) for job in jobs.values()] == [
        (2.0, 30.0),
        (0.5, 12.0),
        (0.0, 21.0),  # SLURM's GPUs are not this machine's; no estimate: the median
        (1.0, 21.0),
        (0.0, 0.0),
    ]
    # Nothing asks for a GPU here: nothing to plan.
    assert gpu_jobs(config.stash[STATE_KEY], ids[2:3]) is None


def test_the_controller_starts_a_run_only_when_its_gpus_are_free(
    project: Project, hydra_python: str
) -> None:
    """Four runs that each take all four GPUs, under -n 4: the xdist controller lets one run
    at a time and hands the worker that runs it the next one, so one worker runs them all.
    (Handed out blindly, each worker would take one and three would sit waiting for GPUs.)"""
    slot_project(project, hydra_python)
    for i in range(4):
        project.config(f"e{i}.yaml", slot_config(f"e{i}", 4, 0.2))
    result = project.pytester.runpytest_subprocess(
        "configs", "-p", "no:cacheprovider", "-n", "4", "--junitxml=report.xml"
    )
    result.assert_outcomes(passed=4)
    check_runs(slot_runs(project))
    records = [json.loads(p.read_text()) for p in (project.root / "outputs").rglob("xstash.json")]
    assert len(records) == 4
    assert len({record["worker_pid"] for record in records}) == 1, records
    cases = ET.parse(project.root / "report.xml").getroot().iter("testcase")
    assert sorted(case.get("name") for case in cases) == ["e0", "e1", "e2", "e3"]


def test_a_killed_workers_slots_are_reclaimed(project: Project, hydra_python: str) -> None:
    """The run that kills its worker holds all four GPUs: were they not reclaimed, no other
    run could ever start."""
    slot_project(project, hydra_python)
    project.config("a_kill.yaml", slot_config("a_kill", 4, 0.1, kill=True))
    for i in range(6):
        project.config(f"e{i}.yaml", slot_config(f"e{i}", 2, 0.3))
    result = project.pytester.runpytest_subprocess(
        "configs", "-p", "no:cacheprovider", "-n", "2", timeout=240
    )
    result.assert_outcomes(passed=6, failed=1)
    runs = slot_runs(project)
    assert len(runs) == 6
    check_runs(runs)
    table = json.loads((project.root / "outputs" / ".xstash" / "slots" / "table.json").read_text())
    assert table == {"held": [], "queue": []}


@pytest.mark.parametrize("launch_mode", ["preload"], indirect=True)
def test_preloaded_runs_get_their_gpus(project: Project, hydra_python: str) -> None:
    """A run forked from a preload server gets the grant's environment too (the server sets
    the request's environment in the fork)."""
    slot_project(project, hydra_python)
    for i in range(4):
        project.config(f"e{i}.yaml", slot_config(f"e{i}", 1 + i % 2, 0.3))
    result = project.pytester.runpytest_subprocess(
        "configs", "-p", "no:cacheprovider", "-n", "2", timeout=240
    )
    result.assert_outcomes(passed=4)
    records = [json.loads(p.read_text()) for p in (project.root / "outputs").rglob("xstash.json")]
    assert len(records) == 4 and all(record["preloaded"] for record in records)
    runs = slot_runs(project)
    assert len(runs) == 4
    check_runs(runs)


def test_a_run_asking_for_more_than_the_machine_has_is_a_collection_error(
    project: Project, hydra_python: str
) -> None:
    """It could never start: collection refuses it at its resources line, saying what the
    machine has; the other configs still run."""
    slot_project(project, hydra_python)
    project.config("big.yaml", slot_config("big", 8, 0.1))
    project.config("ok.yaml", slot_config("ok", 1, 0.1))
    result = project.pytester.runpytest_subprocess(
        "configs",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        "--continue-on-collection-errors",
        timeout=120,
    )
    result.assert_outcomes(passed=1, errors=1)
    line = next(
        i
        for i, text in enumerate(slot_config("big", 8, 0.1).splitlines(), 1)
        if text.strip().startswith("resources:")
    )
    result.stdout.fnmatch_lines(
        [
            f"*configs/big.yaml:{line}: resources ask for more than this machine has (gpus: 8)*"
            "it has GPUs 0,1,2,3 (4), 8 CPUs*"
        ]
    )


def test_runs_with_half_a_gpu_share_it_two_at_a_time(project: Project, hydra_python: str) -> None:
    """One faked GPU, four runs asking half of it and one asking all of it, under -n 4: the
    halves really run two at a time on GPU 0, never three, and the whole-GPU run alone."""
    slot_project(project, hydra_python)
    project.write("pytest.ini", "[pytest]\nxstash_gpus = 0\nxstash_cpus = 8\n")
    for i in range(4):
        project.config(f"half{i}.yaml", slot_config(f"half{i}", 0.5, 4.0))
    project.config("whole.yaml", slot_config("whole", 1, 1.0))
    result = project.pytester.runpytest_subprocess(
        "configs", "-p", "no:cacheprovider", "-n", "4", timeout=240
    )
    result.assert_outcomes(passed=5)
    runs = slot_runs(project)
    assert sorted(run["want"] for run in runs) == [0.5, 0.5, 0.5, 0.5, 1]
    assert all(run["cuda"] == "0" and run["omp"] == "2" for run in runs)
    together = [[r for r in runs if r["start"] <= run["start"] < r["end"]] for run in runs]
    assert max(len(held) for held in together) == 2  # shared by two, never by three
    (whole,) = (run for run in runs if run["want"] == 1)
    for half in (run for run in runs if run["want"] == 0.5):
        assert half["end"] <= whole["start"] or half["start"] >= whole["end"], (half, whole)
    records = [json.loads(p.read_text()) for p in (project.root / "outputs").rglob("xstash.json")]
    slots = {record["experiment"]: record["slots"] for record in records}
    assert slots["half0"] == {"gpus": ["0"], "cpus": 2, "mem": 0, "gpu_share": 0.5}
    assert slots["whole"] == {"gpus": ["0"], "cpus": 2, "mem": 0}


def test_a_share_of_a_gpu_is_refused_where_it_cannot_be_had(
    project: Project, hydra_python: str
) -> None:
    """gpus: 1.5 is no share of one GPU; gpus: 0.5 on SLURM, which allocates whole GPUs, is
    refused too: both at collection, at the config's resources line."""
    slot_project(project, hydra_python)
    project.config("odd.yaml", slot_config("odd", 1.5, 0.1))
    slurm = slot_config("on_slurm", 0.5, 0.1).replace("launcher: local", "launcher: slurm")
    project.config("on_slurm.yaml", slurm)
    project.config("ok.yaml", slot_config("ok", 0.5, 0.1))
    result = project.pytester.runpytest_subprocess(
        "configs", "-p", "no:cacheprovider", "--continue-on-collection-errors", timeout=120
    )
    result.assert_outcomes(passed=1, errors=2)
    line = next(
        i for i, text in enumerate(slurm.splitlines(), 1) if text.strip().startswith("resources:")
    )
    result.stdout.fnmatch_lines_random(
        [
            f"*configs/odd.yaml:{line}: xstash.resources: gpus must be a whole number*"
            "or a share of one GPU between 0 and 1*not 1.5*",
            f"*configs/on_slurm.yaml:{line}: gpus: 0.5 is a share of one GPU, which only the "
            "local launcher gives; slurm allocates whole GPUs*",
        ]
    )


def _workers(output: list[str]) -> int:
    line = next(line for line in output if line.startswith("created: "))
    return int(line.split()[1].split("/")[0])


def test_n_auto_starts_one_worker_per_gpu(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-n auto`` with GPUs (named in the ini): one worker per GPU, whatever the CPUs; without
    GPUs xdist's own count, the same as with xstash disabled."""
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    pytester.makeini("[pytest]\n")
    plain = pytester.runpytest_subprocess("-n", "auto", "-p", "no:cacheprovider", "-p", "no:xstash")
    default = _workers(plain.outlines)
    gpus = 3 if default != 3 else 4  # a count xdist would not pick by itself
    pytester.makeini(f"[pytest]\nxstash_gpus = {','.join(map(str, range(gpus)))}\n")
    with_gpus = pytester.runpytest_subprocess("-n", "auto", "-p", "no:cacheprovider")
    with_gpus.assert_outcomes(passed=1)
    assert _workers(with_gpus.outlines) == gpus
    pytester.makeini("[pytest]\nxstash_gpus = none\n")
    without = pytester.runpytest_subprocess("-n", "auto", "-p", "no:cacheprovider")
    without.assert_outcomes(passed=1)
    assert _workers(without.outlines) == default
