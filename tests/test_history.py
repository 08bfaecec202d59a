"""History and regressions, end to end: every session is recorded in the history store, and
``--xstash-baseline REF`` compares each metric with the results recorded at REF.

A temporary git repository (main: the baseline; a work branch with one commit that improves
the metric, one that regresses it, and one that is neutral but noisier), a real Hydra tool
whose metric is a draw from N(mu, sigma) given the seed, with and without seeds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from helpers import Project

from xstash_plugin.history.store import HistoryStore

XSTASH = str(Path(sys.executable).parent / "xstash")  # the console script pip installed

TOOL = """\
import json, os, random
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg):
    rng = random.Random(cfg.seed * 1000 + cfg.draw)
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"accuracy": rng.gauss(cfg.mu, cfg.sigma), "steps": 100}, f)

if __name__ == "__main__":
    main()
"""


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_repo(project: Project, python: str) -> Path:
    folder = project.tool("trainer", TOOL, entrypoint="src/main.py", env=python, deps=None)
    (folder / "src" / "conf").mkdir(exist_ok=True)
    (folder / "src" / "conf" / "train.yaml").write_text("seed: 0\nmu: 0.9\nsigma: 0.005\ndraw: 0\n")
    root = project.root
    (root / ".gitignore").write_text("outputs/\n*.json\n.pytest_cache/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "ci@example.org")
    git(root, "config", "user.name", "CI")
    return root


def experiment(mu: float, seeds: bool, sigma: float = 0.005, draw: int = 0) -> str:
    block = "  seeds: 5\n" if seeds else ""
    return (
        "tool: trainer\nexperiment: exp\ndefaults:\n  - train\n  - _self_\n"
        f"mu: {mu}\nsigma: {sigma}\ndraw: {draw}\n"
        f"xstash:\n{block}  expect:\n    accuracy: '>= 0.5'\n"
    )


def commit(project: Project, message: str, text: str) -> str:
    project.config("exp.yaml", text)
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", message)
    return git(project.root, "rev-parse", "HEAD")


def run(project: Project, *args: str) -> pytest.RunResult:
    return project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "--xstash-report", "r.json", *args
    )


def outcomes(project: Project) -> dict[str, str]:
    rows: list[dict[str, Any]] = json.loads((project.root / "r.json").read_text())
    found = {}
    for row in rows:
        for comparison in row.get("baseline") or []:
            if comparison["metric"] == "accuracy":
                found[row["id"].split("::", 1)[1]] = comparison["outcome"]
    return found


@pytest.mark.parametrize("seeds", [True, False], ids=["seeds", "single"])
def test_a_regression_fails_only_when_it_is_real(
    project: Project, hydra_python: str, seeds: bool
) -> None:
    root = make_repo(project, hydra_python)
    if not seeds:  # single runs: a relative tolerance stands in for the noise
        project.write("pytest.ini", "[pytest]\nxstash_baseline_tol = 0.02\n")
    base = commit(project, "baseline", experiment(0.9, seeds))
    passed = 6 if seeds else 1
    run(project).assert_outcomes(passed=passed)
    aggregate = "exp::mean" if seeds else "exp"

    git(root, "checkout", "-q", "-b", "work")
    commit(project, "improve", experiment(0.95, seeds))
    result = run(project, "--xstash-baseline", "main")
    result.assert_outcomes(passed=passed)
    assert outcomes(project)[aggregate] == "improved"

    bad = commit(project, "regress", experiment(0.85, seeds))
    result = run(project, "--xstash-baseline", "main")
    result.assert_outcomes(passed=passed - 1, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*{aggregate}: 1 metric(s) regressed against the baseline main ({base[:7]})*",
            "*metric*baseline*now*difference*95% CI*p*outcome*",
            "*accuracy*regressed (higher is better)*",
        ]
    )
    assert outcomes(project)[aggregate] == "regressed"
    # Every session is in the store: `xstash history` lists the regressing commit.
    history = subprocess.run(
        [XSTASH, "history", "exp", "--history", str(root / "outputs/.xstash/history.sqlite")],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert history.returncode == 0, history.stderr
    assert bad[:10] in history.stdout

    commit(project, "neutral, noisier", experiment(0.9, seeds, sigma=0.01, draw=1))
    result = run(project, "--xstash-baseline", "main", "--xstash-report", "page.html")
    result.assert_outcomes(passed=passed)
    assert outcomes(project)[aggregate] == "unchanged"
    # The results page plots each metric over the recorded commits, the baseline marked.
    page = (root / "page.html").read_text()
    history = page[page.index('<section id="history">') :]
    assert history.count("<figure") == 2  # accuracy and steps
    assert f"baseline {base[:7]}" in history


def test_baseline_last_and_a_results_file_and_warn(project: Project, hydra_python: str) -> None:
    make_repo(project, hydra_python)
    commit(project, "one", experiment(0.9, True))
    run(project).assert_outcomes(passed=6)
    (project.root / "r.json").rename(project.root / "before.json")
    commit(project, "two", experiment(0.8, True))
    result = run(project, "--xstash-baseline", "last")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*regressed against the baseline the last session on main*"])
    result = run(project, "--xstash-baseline", "before.json")
    result.assert_outcomes(passed=5, failed=1)
    result = run(project, "--xstash-baseline", "before.json", "--xstash-baseline-warn")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*XstashWarning: exp::mean: 1 metric(s) regressed*"])


def test_an_unknown_baseline_is_a_warning_not_a_failure(
    project: Project, hydra_python: str
) -> None:
    make_repo(project, hydra_python)
    commit(project, "one", experiment(0.9, False))
    result = run(project, "--xstash-baseline", "no-such-branch")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*XstashWarning: --xstash-baseline: 'no-such-branch' is not a*"])
    result = run(project, "--xstash-baseline", "main")  # main has no recorded results yet
    result.assert_outcomes(passed=1)


def test_every_session_is_recorded(project: Project, hydra_python: str) -> None:
    root = make_repo(project, hydra_python)
    head = commit(project, "one", experiment(0.9, True))
    run(project, "-n", "2").assert_outcomes(passed=6)
    store = HistoryStore(root / "outputs" / ".xstash" / "history.sqlite")
    try:
        runs = store.runs_at_commit(head)
    finally:
        store.close()
    assert sorted(r.seed for r in runs) == [0, 1, 2, 3, 4]  # seed runs, not the aggregate
    assert {r.branch for r in runs} == {"main"} and {r.experiment for r in runs} == {"exp"}
    assert all(r.point == {} and "accuracy" in r.metrics for r in runs)


def test_a_broken_store_is_a_warning(project: Project, hydra_python: str) -> None:
    root = make_repo(project, hydra_python)
    commit(project, "one", experiment(0.9, False))
    broken = root / "broken.sqlite"
    broken.write_bytes(b"this is not a database" * 100)
    result = run(project, "--xstash-history", str(broken))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*warning: this session's results were not recorded*"])


def test_the_console_script_is_declared() -> None:
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("xstash") == "xstash_plugin.cli:main"


def test_history_names_the_commit_that_introduced_a_step(tmp_path: Path) -> None:
    """`xstash history` over 24 commits whose accuracy drops by 8 sigma at commit 16."""
    import random

    from xstash_plugin.history.store import Session, StoredRun

    store_path = tmp_path / "history.sqlite"
    rng = random.Random(7)
    store = HistoryStore(store_path)
    commits = [f"{i:02d}" + "c" * 38 for i in range(24)]
    for i, sha in enumerate(commits):
        level = 0.9 if i < 16 else 0.82
        run = StoredRun(
            nodeid="configs/exp.yaml::exp",
            experiment="exp",
            config="configs/exp.yaml",
            point={},
            seed=None,
            status="passed",
            metrics={"accuracy": rng.gauss(level, 0.01)},
            run_key=None,
            tool_commit=sha,
            tool_dirty=False,
            repo_commit=sha,
            branch="main",
            dependency_hash=None,
            host="h",
            launcher="local",
            started=1000.0 + i,
            ended=1000.5 + i,
            run_dir=None,
            session=f"s{i}",
        )
        store.record(Session(f"s{i}", sha, "main", 1000.0 + i, 1000.5 + i, "h"), [run])
    store.close()
    done = subprocess.run(
        [XSTASH, "history", "exp", "--metric", "accuracy", "--history", str(store_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    flagged = [line for line in done.stdout.splitlines() if "step" in line]
    assert len(flagged) == 1 and flagged[0].startswith(commits[16][:10]), done.stdout
