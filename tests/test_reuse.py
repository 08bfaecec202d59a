"""--xstash-reuse: unchanged runs are not run again; resume falls out of it."""

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

# A real Hydra tool that appends a line to <project>/runs.log on every run (outside its own
# folder: a file written there would be a change of the tool's code) and writes metrics.
MAIN = """\
import json, os, time
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    with open(os.path.join(REPO, "runs.log"), "a") as f:
        f.write(HydraConfig.get().job.name + "\\n")
    time.sleep(float(cfg.get("sleep", 0)))
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"score": float(cfg.get("score", 1.0))}, f)

if __name__ == "__main__":
    main()
"""


@pytest.fixture
def repo(project: Project, hydra_python: str) -> Project:
    project.tool("t", MAIN, env=hydra_python, deps=None)
    project.write("data/train.csv", "a,b\n1,2\n")
    project.config(
        "a.yaml",
        """\
        tool: t
        experiment: a
        tags: [demo]
        description: first
        score: 0.9
        xstash:
          inputs: [data/train.csv]
          expect: {score: ">= 0.5"}
        """,
    )
    return project


def runs(project: Project) -> list[str]:
    log = project.root / "runs.log"
    return log.read_text().split() if log.exists() else []


def run(project: Project, *args: str) -> pytest.RunResult:
    return project.pytester.runpytest("configs", "--xstash-reuse", "-v", *args)


def test_second_run_is_reused_and_the_tool_not_started(repo: Project) -> None:
    first = run(repo)
    first.assert_outcomes(passed=1)
    assert runs(repo) == ["a"]
    second = run(repo, "--junitxml=r.xml", "--xstash-report", "r.json")
    second.assert_outcomes(passed=1)
    assert runs(repo) == ["a"], "a reused run must not start the tool"
    second.stdout.fnmatch_lines(
        [
            "configs/a.yaml::a PASSED (reused)*",
            "*1 of 1 experiment(s) reused a passed run with the same run key*",
        ]
    )
    (run_dir,) = repo.run_dirs("a")
    (row,) = json.loads((repo.root / "r.json").read_text())
    assert row["status"] == "reused"
    assert row["reused_from"] == str(run_dir)
    assert f'reused_from" value="{run_dir}"' in (repo.root / "r.xml").read_text()
    record = json.loads((run_dir / "xstash.json").read_text())
    assert len(record["run_key"]) == 32


def test_without_the_option_it_runs_again(repo: Project) -> None:
    run(repo).assert_outcomes(passed=1)
    repo.pytester.runpytest("configs").assert_outcomes(passed=1)
    assert runs(repo) == ["a", "a"]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


CHANGES = {
    "tool code": lambda p: _edit(p.root / "tools/t/src/main.py", "time.sleep", "time.sleep "),
    "dependency": lambda p: (p.root / "tools/t/requirements.txt").write_text("numpy\n"),
    "config value": lambda p: _edit(p.root / "configs/a.yaml", "score: 0.9", "score: 0.8"),
    "sweep value": lambda p: _edit(
        p.root / "configs/a.yaml", "  inputs:", "  sweep: {+x: [1]}\n  inputs:"
    ),
    "input file": lambda p: (p.root / "data/train.csv").write_text("a,b\n1,3\n"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_to_a_key_ingredient_runs_again(repo: Project, change: str) -> None:
    run(repo).assert_outcomes(passed=1)
    CHANGES[change](repo)
    run(repo).assert_outcomes(passed=1)
    assert len(runs(repo)) == 2, f"a change of the {change} must cause a rerun"


def test_an_override_is_part_of_the_key(repo: Project) -> None:
    run(repo).assert_outcomes(passed=1)
    run(repo, "--xstash-override", "+extra=1").assert_outcomes(passed=1)
    run(repo, "--xstash-override", "+extra=1").assert_outcomes(passed=1)
    assert len(runs(repo)) == 2


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("tags: [demo]", "tags: [demo, paper]"),
        ("description: first", "description: second"),
        ('score: ">= 0.5"', 'score: ">= 0.6"'),
        ("tool: t\n", "tool: t\nestimated_runtime: 5m\n"),
    ],
    ids=["tags", "description", "expectation", "estimate"],
)
def test_what_does_not_decide_the_result_is_not_in_the_key(
    repo: Project, old: str, new: str
) -> None:
    run(repo).assert_outcomes(passed=1)
    _edit(repo.root / "configs/a.yaml", old, new)
    run(repo).assert_outcomes(passed=1)
    assert runs(repo) == ["a"]


def test_a_tightened_expectation_fails_the_reused_run(repo: Project) -> None:
    run(repo).assert_outcomes(passed=1)
    _edit(repo.root / "configs/a.yaml", 'score: ">= 0.5"', 'score: ">= 0.95"')
    result = run(repo)
    result.assert_outcomes(failed=1)
    assert runs(repo) == ["a"]
    result.stdout.fnmatch_lines(
        [
            "*1 of 1 expectation(s) failed on the reused run*not run again*",
            "score*>= 0.95*0.9*FAIL*",
        ]
    )


def test_failed_runs_are_never_reused(repo: Project) -> None:
    _edit(repo.root / "configs/a.yaml", 'score: ">= 0.5"', 'score: ">= 0.95"')
    run(repo).assert_outcomes(failed=1)
    run(repo).assert_outcomes(failed=1)
    assert runs(repo) == ["a", "a"]


def test_corrupt_record_is_ignored_with_a_warning(repo: Project) -> None:
    run(repo).assert_outcomes(passed=1)
    broken = repo.root / "outputs/configs/a/20000101-000000-broken"
    broken.mkdir()
    (broken / "xstash.json").write_text('{"status": "passed", "run_key": ')
    listing = repo.root / "outputs/configs/a/20000101-000000-list"
    listing.mkdir()
    (listing / "xstash.json").write_text("[1, 2]")
    result = run(repo)
    result.assert_outcomes(passed=1)
    assert runs(repo) == ["a"]
    result.stdout.fnmatch_lines(["*XstashWarning: ignoring the unreadable run record*broken*"])
    assert "Traceback" not in result.stdout.str()


def test_git_keys_see_uncommitted_and_untracked_changes(repo: Project) -> None:
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "init"],
    ):
        subprocess.run(["git", *args], cwd=repo.root, check=True)
    run(repo).assert_outcomes(passed=1)
    run(repo).assert_outcomes(passed=1)
    assert runs(repo) == ["a"]
    (repo.root / "tools/t/src/helper.py").write_text("X = 1\n")  # untracked
    run(repo).assert_outcomes(passed=1)
    assert len(runs(repo)) == 2


def _records(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((root / "outputs").rglob("xstash.json"))]


def test_interrupt_then_resume_runs_only_the_unfinished(repo: Project) -> None:
    for name in ("b", "c"):
        repo.config(f"{name}.yaml", f"tool: t\nexperiment: {name}\n")
    repo.config("d_slow.yaml", "tool: t\nexperiment: d_slow\nsleep: 60\n")
    repo.config("e.yaml", "tool: t\nexperiment: e\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "configs", "--xstash-reuse", "-p", "no:cacheprovider"],
        cwd=repo.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "d_slow" not in runs(repo) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "d_slow" in runs(repo)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert runs(repo) == ["a", "b", "c", "d_slow"]
    assert sorted(r["status"] for r in _records(repo.root)) == ["interrupted"] + ["passed"] * 3
    _edit(repo.root / "configs/d_slow.yaml", "sleep: 60", "sleep: 0")
    result = run(repo)
    result.assert_outcomes(passed=5)
    assert runs(repo) == ["a", "b", "c", "d_slow", "d_slow", "e"]


def test_concurrent_sessions_share_one_output_root(repo: Project) -> None:
    for i in range(5):
        repo.config(f"p{i}.yaml", f"tool: t\nexperiment: p{i}\nsleep: 0.2\n")
    args = [sys.executable, "-m", "pytest", "configs", "-n", "2", "-p", "no:cacheprovider"]
    procs = [
        subprocess.Popen(args, cwd=repo.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    records = _records(repo.root)
    assert len(records) == 12  # 6 configs x 2 sessions, each its own run directory
    assert {r["status"] for r in records} == {"passed"}
    assert len({r["session"] for r in records}) == 2
    for config in ["a", *(f"p{i}" for i in range(5))]:
        assert len(repo.run_dirs(config)) == 2
