"""Seeds: ``xstash.seeds`` runs every point once per seed, and judges the seeds as one result.

Each seed is its own test item (``exp[lr=0.1-seed=3]``: own run directory, record, metrics);
each point also gets one aggregate item (``exp::mean[lr=0.1]``) whose statistics (n, mean, std,
sem, CI, min, max) are checked here against SciPy on the values the tool really wrote. The
tool is a real Hydra app with a primary config of its own name (``train``) whose metric is a
draw from a known distribution given the seed; the real-app-shaped tool of tests/helpers.py
runs seeded too.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
from helpers import Project, error_messages
from test_stats import scipy_bootstrap

from xstash_plugin.run.stats import BOOTSTRAP_SEED, RESAMPLES

# accuracy ~ N(mu, sigma) given the seed; fails when <root>/fail-<seed> exists (a transient
# fault), kills its pytest worker when seed == kill_worker, sleeps `sleep` * (1 + seed % 3).
SEED_TOOL = """\
import json, os, random, signal, sys, time
import hydra
from hydra.core.hydra_config import HydraConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg):
    rng = random.Random(cfg.seed)
    accuracy = rng.gauss(cfg.mu, cfg.sigma)
    loss = rng.expovariate(10.0)
    time.sleep(cfg.sleep * (1 + cfg.seed % 3))
    if cfg.seed == cfg.kill_worker:
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)
    if os.path.exists(os.path.join(ROOT, f"fail-{cfg.seed}")):
        print("diverged", flush=True)
        sys.exit(1)
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"accuracy": accuracy, "loss": loss, "eval": {"f1": accuracy / 2}}, f)

if __name__ == "__main__":
    main()
"""
TRAIN_YAML = "seed: 0\nmu: 0.9\nsigma: 0.02\nsleep: 0.0\nkill_worker: -1\n"


def seed_project(project: Project, python: str) -> Project:
    folder = project.tool("seeder", SEED_TOOL, entrypoint="src/main.py", env=python, deps=None)
    (folder / "src" / "conf").mkdir(exist_ok=True)
    (folder / "src" / "conf" / "train.yaml").write_text(TRAIN_YAML)
    return project


def experiment(name: str, xstash: str, body: str = "") -> str:
    head = f"tool: seeder\nexperiment: {name}\ndefaults:\n  - train\n  - _self_\n"
    return f"{head}{body}xstash:\n{xstash}"


def report_rows(project: Project, name: str = "r.json") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((project.root / name).read_text())
    return rows


def aggregates(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["id"].split("::", 1)[1]: row for row in rows if row.get("kind") == "aggregate"}


PYTEST = [sys.executable, "-m", "pytest"]
WORKERS = [pytest.param([], id="serial"), pytest.param(["-n", "2"], id="n2")]


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_aggregate_statistics_equal_scipys(
    project: Project, hydra_python: str, method: str, workers: list[str]
) -> None:
    seed_project(project, hydra_python)
    project.config(
        "s.yaml",
        experiment(
            "exp",
            f"  sweep:\n    mu: [0.8, 0.9]\n  seeds: [0, 1, 2, 17, 42]\n  ci: {method}\n"
            "  expect:\n    accuracy: '>= 0.5'\n",
        ),
    )
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "--xstash-report", "r.json", *workers
    )
    result.assert_outcomes(passed=12)
    rows = report_rows(project)
    found = aggregates(rows)
    assert sorted(found) == ["exp::mean[mu=0.8]", "exp::mean[mu=0.9]"]
    for mu in (0.8, 0.9):
        row = found[f"exp::mean[mu={mu}]"]
        seeds = [r for r in rows if r.get("group") == row["id"]]
        assert [r["seed"] for r in seeds] == [0, 1, 2, 17, 42]
        values = [r["metrics"]["accuracy"] for r in seeds]
        # The seed reached the tool: each value is that seed's draw.
        assert values == [random.Random(s).gauss(mu, 0.02) for s in (0, 1, 2, 17, 42)]
        stats = row["stats"]["accuracy"]
        assert (stats["n"], row["n"], row["ci_method"]) == (5, 5, method)
        assert stats["mean"] == pytest.approx(np.mean(values), rel=1e-12, abs=1e-12)
        assert stats["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-9)
        assert stats["sem"] == pytest.approx(scipy.stats.sem(values), rel=1e-9)
        assert (stats["min"], stats["max"]) == (min(values), max(values))
        if method == "t":
            low, high = scipy.stats.t.interval(
                0.95, len(values) - 1, loc=np.mean(values), scale=scipy.stats.sem(values)
            )
        else:
            res, _ = scipy_bootstrap(values, 0.95, RESAMPLES, BOOTSTRAP_SEED)
            low, high = res.confidence_interval
        assert stats["ci_low"] == pytest.approx(low, rel=1e-9, abs=1e-9)
        assert stats["ci_high"] == pytest.approx(high, rel=1e-9, abs=1e-9)
        assert row["stats"]["eval.f1"]["mean"] == pytest.approx(np.mean(values) / 2, rel=1e-12)
        assert row["metrics"]["eval"]["f1"] == pytest.approx(np.mean(values) / 2, rel=1e-12)


@pytest.mark.parametrize("workers", WORKERS)
def test_aggregates_pass_and_fail_on_their_statistics(
    project: Project, hydra_python: str, workers: list[str]
) -> None:
    seed_project(project, hydra_python)
    cases = {
        "mean_ok": "accuracy: {mean: '>= 0.85'}",
        "mean_bad": "accuracy: {mean: '>= 0.95'}",
        "ci_low_ok": "accuracy: {ci_low: '>= 0.85'}",
        "std_bad": "accuracy: {std: '<= 0.001'}",
        "plain_on_mean": "accuracy: {ref: 0.92, tol: 0.05}",
    }
    for name, expect in cases.items():
        project.config(f"{name}.yaml", experiment(name, f"  seeds: 4\n  expect:\n    {expect}\n"))
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "--junitxml", "j.xml", *workers
    )
    result.assert_outcomes(passed=5 * 4 + 3, failed=2)
    result.stdout.fnmatch_lines(
        [
            "FAILED configs/mean_bad.yaml::mean_bad::mean*",
            "FAILED configs/std_bad.yaml::std_bad::mean*",
        ],
        consecutive=False,
    )
    out = result.stdout.str()
    assert "1 of 1 expectation(s) on the statistics over 4 seeds failed" in out
    assert "accuracy (std)" in out and "accuracy (mean)" in out
    # xunit2 (pytest's default) carries them as testsuite properties named per test.
    suite = ET.parse(project.root / "j.xml").getroot().find("testsuite")
    assert suite is not None
    prefix = "configs/mean_ok.yaml::mean_ok::mean::"
    mean_ok = {
        str(p.get("name"))[len(prefix) :]: p.get("value")
        for p in suite.iter("property")
        if str(p.get("name")).startswith(prefix)
    }
    for key in ("stat.accuracy.mean", "stat.accuracy.ci_low", "stat.accuracy.ci_high"):
        float(str(mean_ok[key]))
    assert mean_ok["stat.accuracy.n"] == "4"
    assert mean_ok["expect.accuracy.mean"].startswith("ok: ")


@pytest.mark.parametrize("workers", WORKERS)
def test_a_failed_seed_fails_its_aggregate(
    project: Project, hydra_python: str, workers: list[str]
) -> None:
    seed_project(project, hydra_python)
    project.write("fail-3", "")
    project.config("s.yaml", experiment("exp", "  seeds: 5\n  expect:\n    accuracy: '>= 0.5'\n"))
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "--xstash-report", "r.json", *workers
    )
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*exp::mean: 1 of 5 seeds did not pass, so the seeds are not judged as one result*",
            "*seed 3 failed (exit code 1): see exp[[]seed=3[]]*",
        ]
    )
    row = aggregates(report_rows(project))["exp::mean"]
    assert row["status"] == "failed" and row["n"] == 4
    assert row["stats"]["accuracy"]["n"] == 4  # over the seeds that passed, and says so
    assert [r["status"] for r in row["seed_runs"]] == ["passed"] * 3 + ["failed", "passed"]


def test_a_seed_whose_worker_was_killed_fails_its_aggregate(
    project: Project, hydra_python: str
) -> None:
    seed_project(project, hydra_python)
    project.config(
        "s.yaml",
        experiment("exp", "  seeds: 4\n", body="kill_worker: 2\n"),
    )
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "-n", "2", "--xstash-report", "r.json"
    )
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(["*seed 2 error*"])
    row = aggregates(report_rows(project))["exp::mean"]
    assert row["status"] == "failed"
    assert {r["seed"]: r["status"] for r in row["seed_runs"]}[2] == "error"


@pytest.mark.parametrize("workers", WORKERS)
def test_k_selects_some_seeds(project: Project, hydra_python: str, workers: list[str]) -> None:
    """`-k "seed_0 or seed_1"`: two seeds per point run, their aggregates are not selected;
    with `or mean` the aggregates run and say which seeds are missing."""
    seed_project(project, hydra_python)
    project.config("s.yaml", experiment("exp", "  sweep:\n    mu: [0.8, 0.9]\n  seeds: 5\n"))
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "-k", "seed_0 or seed_1", *workers
    )
    result.assert_outcomes(passed=4)
    assert result.ret == 0

    project.config("s.yaml", experiment("exp", "  sweep:\n    mu: [0.8, 0.9]\n  seeds: 6\n"))
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "-k", "seed_0 or seed_5 or mean", "-rs", *workers
    )
    # seed 0 ran before (same run key): it stands in. Seeds 1-4 ran before too; seed 5 runs
    # now. Seeds 2, 3, 4 have no run: each aggregate is incomplete (skipped), and says why.
    result.assert_outcomes(passed=4, skipped=2)
    result.stdout.fnmatch_lines(
        ["*exp::mean[[]mu=0.8[]]: incomplete, 3 of 6 seeds have no result: seed 2: not selected*"]
    )


@pytest.mark.parametrize("workers", WORKERS)
def test_lf_reruns_the_failed_seed_and_judges_with_the_others(
    project: Project, hydra_python: str, workers: list[str]
) -> None:
    seed_project(project, hydra_python)
    project.write("fail-3", "")  # a transient fault: gone before the rerun
    project.config("s.yaml", experiment("exp", "  seeds: 5\n"))
    args = ["configs", "--xstash-report", "r.json", *workers]
    project.pytester.runpytest(*args).assert_outcomes(passed=4, failed=2)
    (project.root / "fail-3").unlink()
    result = project.pytester.runpytest(*args, "--lf")
    result.assert_outcomes(passed=2)  # seed 3 and the aggregate; the others are not run
    row = aggregates(report_rows(project))["exp::mean"]
    assert row["status"] == "passed" and row["n"] == 5
    came = {r["seed"]: r["from"] for r in row["seed_runs"]}
    assert came[3] is None  # ran in this session
    assert all(came[s] for s in (0, 1, 2, 4)), came  # earlier passed runs, named


def test_reuse_takes_seeds_one_by_one(project: Project, hydra_python: str) -> None:
    seed_project(project, hydra_python)
    project.config("s.yaml", experiment("exp", "  seeds: 4\n"))
    project.pytester.runpytest("configs", "-p", "no:cacheprovider").assert_outcomes(passed=5)
    project.config("s.yaml", experiment("exp", "  seeds: 5\n"))
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "--xstash-reuse", "--xstash-report", "r.json"
    )
    result.assert_outcomes(passed=6)
    rows = report_rows(project)
    seeds = {r["seed"]: r for r in rows if "seed" in r}
    assert [s for s, r in sorted(seeds.items()) if r.get("reused_from")] == [0, 1, 2, 3]
    assert seeds[4]["status"] == "passed" and not seeds[4].get("reused_from")
    assert aggregates(rows)["exp::mean"]["n"] == 5
    assert len(project.run_dirs("s")) == 5  # four from the first session, one new


@pytest.mark.parametrize("workers", ["1", "2", "4"])
def test_no_deadlock_and_every_aggregate_reported(
    project: Project, hydra_python: str, workers: str
) -> None:
    """3 points x 5 seeds, runs of different lengths: a real pytest-xdist session, bounded."""
    seed_project(project, hydra_python)
    project.config(
        "s.yaml",
        experiment("exp", "  sweep:\n    sleep: [0.0, 0.1, 0.3]\n  seeds: 5\n"),
    )
    started = time.monotonic()
    proc = subprocess.run(
        [*PYTEST, "configs", "-p", "no:cacheprovider", "-n", workers, "--xstash-report", "r.json"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "18 passed" in proc.stdout
    assert time.monotonic() - started < 300
    rows = report_rows(project)
    assert sorted(r["status"] for r in aggregates(rows).values()) == ["passed"] * 3


def test_x_stops_without_hanging(project: Project, hydra_python: str) -> None:
    seed_project(project, hydra_python)
    project.write("fail-0", "")
    project.config("s.yaml", experiment("exp", "  sweep:\n    mu: [0.8, 0.9]\n  seeds: 3\n"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "configs", "-p", "no:cacheprovider", "-n", "2", "-x"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # -x: the session stops after the first failure (xdist reports it as interrupted).
    assert proc.returncode in (1, 2) and "stopping after 1 failures" in proc.stdout


def test_seeded_real_app(project: Project, hydra_python: str) -> None:
    """A tool shaped like a real Hydra app (primary config `train`, groups, `_target_`): the
    seed reaches `cfg.seed`, composed at collection, judged by the aggregate."""
    project.real_app(env=hydra_python, primary="train")
    project.config(
        "app.yaml",
        "tool: app\nexperiment: app_seeds\ndefaults:\n  - train\n  - override model: tree\n"
        "  - _self_\nxstash:\n  seeds: [0, 10, 20]\n  expect:\n    accuracy: {mean: '>= 0.8'}\n",
    )
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "-n", "2", "--xstash-report", "r.json"
    )
    result.assert_outcomes(passed=4)
    row = aggregates(report_rows(project))["app_seeds::mean"]
    # Tree(depth=3) on iris (noise 0.1): 0.7 + 0.15 - 0.05 + seed * 1e-4
    expected = [round(0.8 + s * 1e-4, 4) for s in (0, 10, 20)]
    assert row["stats"]["accuracy"]["mean"] == pytest.approx(sum(expected) / 3, abs=1e-12)


CASES: dict[str, tuple[str, str, str]] = {
    # file: (xstash block, expected message, expected fix)
    "text.yaml": (
        "  seeds: five\n",
        "xstash.seeds must be a count or a list of integers",
        "seeds: 5",
    ),
    "one.yaml": ("  seeds: 1\n", "xstash.seeds: 1 seeds (give 2 to 1000)", "seeds: 5"),
    "empty.yaml": ("  seeds: []\n", "xstash.seeds is empty: statistics need two", "seeds: 5"),
    "twice.yaml": ("  seeds: [1, 2, 1]\n", "seed 1 is listed twice", "list each seed once"),
    "bool.yaml": ("  seeds: [1, true]\n", "seed True is not an integer", "seeds: 5"),
    "swept.yaml": (
        "  sweep:\n    seed: [1, 2]\n  seeds: 3\n",
        "the seed key 'seed' is also swept",
        "sweep other keys",
    ),
    "stat.yaml": (
        "  seeds: 3\n  expect:\n    accuracy: {meen: '>= 0.9'}\n",
        "unknown key 'meen'",
        "write a comparison",
    ),
    "statname.yaml": (
        "  seeds: 3\n  expect:\n    accuracy: {mean: '>= 0.9', stdev: '< 1'}\n",
        "unknown statistic 'stdev'. Did you mean 'std'?",
        "statistics over seeds: n, mean, std",
    ),
    "noseeds.yaml": (
        "  expect:\n    accuracy: {ci_low: '>= 0.9'}\n",
        "is on the statistic 'ci_low' over seeds, but the experiment has no xstash.seeds",
        "add xstash.seeds",
    ),
    "ci.yaml": ("  seeds: 3\n  ci: normal\n", "xstash.ci is 'normal'", "t, bootstrap"),
    "key.yaml": ("  seeds: 3\n  seed_key: 'a b'\n", "xstash.seed_key 'a b' is not", "Hydra"),
    "dir.yaml": ("  seeds: 3\n  direction: {loss: down}\n", "direction of 'loss' is 'down'", "max"),
    "effect.yaml": (
        "  min_effect: {acc: -1}\n",
        "min_effect of 'acc' is -1, not a non-negative number",
        "min_effect: {accuracy: 0.005}",
    ),
}


@pytest.mark.parametrize("workers", WORKERS)
def test_bad_seed_settings_fail_their_own_collection(
    project: Project, hydra_python: str, workers: list[str]
) -> None:
    seed_project(project, hydra_python)
    for name, (block, _, _) in CASES.items():
        project.config(name, experiment(name.split(".")[0], block))
    project.config("good.yaml", experiment("good", "  seeds: 2\n"))
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "--continue-on-collection-errors", *workers
    )
    result.assert_outcomes(passed=3, errors=len(CASES))
    for name, (_, what, fix) in CASES.items():
        messages = error_messages(result, name)
        assert messages, name
        line, message, hint = messages[0]
        assert what in message, (name, message)
        assert fix in hint, (name, hint)
        # The line is the offending key's, within the xstash block (lines 6..).
        assert line >= 6, (name, line)


REPO = Path(__file__).resolve().parent.parent
SHIPPED_TABLE = Path(__file__).parent / "data" / "seeds_table.tex"


def test_the_shipped_seeds_example(pytester: pytest.Pytester) -> None:
    """The README's command on a copy of the repository's seeds example (the tiny-trainer tool,
    whose uv environment is built from its cache): 15 seed items, 3 aggregates, a results page
    with a CI band per line, and a LaTeX table equal to the golden file."""
    (pytester.path / "configs" / "examples").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "examples" / "seeds.yaml", pytester.path / "configs/examples")
    shutil.copytree(
        REPO / "tools" / "tiny-trainer",
        pytester.path / "tools" / "tiny-trainer",
        ignore=shutil.ignore_patterns(".venv", "__pycache__", "uv.lock"),
    )
    (pytester.path / "configs" / "meta.yaml").write_text(
        "tools:\n  tiny-trainer:\n    path: tools/tiny-trainer\n"
        '    entrypoint: "-m trainer.main"\n    preload: true\n'
    )
    result = pytester.runpytest(
        "configs/examples/seeds.yaml",
        "-n",
        "2",
        "--xstash-report",
        "results.html",
        "--xstash-report",
        "table.tex",
    )
    result.assert_outcomes(passed=18)
    page = (pytester.path / "results.html").read_text()
    # One plot per metric (accuracy, loss, capacity), each a line with its CI band.
    assert page.count('class="ci-band"') == 3
    table = (pytester.path / "table.tex").read_text()
    # After a deliberate change: copy the new table.tex over tests/data/seeds_table.tex and
    # read the diff.
    assert table == SHIPPED_TABLE.read_text()
    assert r"\mathbf{0.944 \pm 0.036}" in table  # the best accuracy (lr 0.1) in bold


def test_reports_fold_seeds_under_their_aggregate(project: Project, hydra_python: str) -> None:
    """Terminal table, .md and .csv: one row per point with mean ± half the CI and n, its
    seeds under it; .csv also has the interval's ends and std per metric."""
    seed_project(project, hydra_python)
    project.config("s.yaml", experiment("exp", "  sweep:\n    mu: [0.8, 0.9]\n  seeds: 3\n"))
    result = project.pytester.runpytest(
        "configs",
        "-p",
        "no:cacheprovider",
        "--xstash-report",
        "r.csv",
        "--xstash-report",
        "r.md",
        "--xstash-report",
        "r.json",
    )
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(
        [
            "experiment * status  n  duration *",
            "configs/s.yaml::exp::mean[[]mu=0.8[]] * passed  3 * 0.8 * ± *",
            "  exp[[]mu=0.8-seed=0[]] * passed * 0.8 * 0 *",
            "  exp[[]mu=0.8-seed=1[]] *",
            "  exp[[]mu=0.8-seed=2[]] *",
            "configs/s.yaml::exp::mean[[]mu=0.9[]] *",
        ]
    )
    rows = report_rows(project)
    found = aggregates(rows)["exp::mean[mu=0.9]"]
    with open(project.root / "r.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["kind"] for r in table] == (["aggregate"] + [""] * 3) * 2
    first = table[4]  # mu=0.9's aggregate, then its seeds
    assert first["id"] == found["id"] and first["n"] == "3"
    stats = found["stats"]["accuracy"]
    assert float(first["accuracy"]) == pytest.approx(stats["mean"], rel=1e-5)
    assert float(first["accuracy.ci_low"]) == pytest.approx(stats["ci_low"], rel=1e-5)
    assert float(first["accuracy.ci_high"]) == pytest.approx(stats["ci_high"], rel=1e-5)
    assert [r["group"] for r in table[5:]] == [found["id"]] * 3
    md = (project.root / "r.md").read_text().splitlines()
    aggregate_line = next(line for line in md if found["id"] in line)
    half = (stats["ci_high"] - stats["ci_low"]) / 2
    assert f"{stats['mean']:.4g} ± {half:.2g}" in aggregate_line
