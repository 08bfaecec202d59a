"""Metrics and expectations: what a tool measured, held to ``xstash.expect``, and reported
(the failure table, JUnit properties, the end-of-session table, and --xstash-report files).

The tool is a real Hydra application on the session's ``hydra_python``; it writes whatever the
experiment's ``metrics`` key holds into its run directory, so each test chooses the measured
values in the experiment YAML itself.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from helpers import Project, failure_report

# Writes cfg.metrics to cfg.metrics_path (default metrics.json) in Hydra's output dir, as JSON
# or, by suffix, YAML; sleeps cfg.sleep seconds; exits with cfg.code.
METRICS_TOOL = """\
import json, os, sys, time
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    conf = OmegaConf.to_container(cfg, resolve=True)
    time.sleep(float(conf.get("sleep", 0)))
    if "metrics" in conf:
        out = HydraConfig.get().runtime.output_dir
        path = os.path.join(out, conf.get("metrics_path", "metrics.json"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            if path.endswith((".yaml", ".yml")):
                f.write(OmegaConf.to_yaml(cfg.metrics))
            else:
                json.dump(conf["metrics"], f)
    sys.exit(int(conf.get("code", 0)))

if __name__ == "__main__":
    main()
"""

TABLE_HEADER = re.compile(r"^metric {2,}expected {2,}measured {2,}verdict$")


@pytest.fixture
def repo(project: Project, hydra_python: str) -> Project:
    """A repository with the metrics-writing Hydra tool 'm'."""
    project.tool("m", METRICS_TOOL, env=hydra_python, deps=None)
    return project


def experiment(
    name: str,
    *,
    metrics: dict[str, Any] | None = None,
    expect: dict[str, Any] | None = None,
    metrics_file: str | None = None,
    **extra: Any,
) -> str:
    """An experiment YAML for tool 'm' (flow values are JSON, which is YAML)."""
    lines = ["tool: m", f"experiment: {name}"]
    lines += [f"{key}: {json.dumps(value)}" for key, value in extra.items()]
    if metrics is not None:
        lines.append(f"metrics: {json.dumps(metrics)}")
    xstash = []
    if metrics_file is not None:
        xstash.append(f"  metrics: {metrics_file}")
    if expect is not None:
        xstash.append("  expect:")
        xstash += [f"    {metric}: {json.dumps(spec)}" for metric, spec in expect.items()]
    if xstash:
        lines += ["xstash:", *xstash]
    return "\n".join(lines) + "\n"


def verdict_rows(report: str) -> list[list[str]]:
    """The rows (cells split on runs of 2+ spaces) of the verdict table in ``report``."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if TABLE_HEADER.match(line))
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("metrics: "):
            return rows
        rows.append(re.split(r" {2,}", line))
    raise AssertionError(f"the verdict table does not end with the metrics path:\n{report}")


def measured_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def read_record(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "xstash.json").read_text())
    return data


# --- 1. every kind of expectation, passing and failing ------------------------------------

# (spec, passing values, failing values, how the table describes the expectation)
KINDS = [
    pytest.param(">= 0.9", [0.9, 1.0], [0.89], ">= 0.9", id="cmp-ge"),
    pytest.param("<= 0.5", [0.5, -3], [0.51], "<= 0.5", id="cmp-le"),
    pytest.param("> 0.5", [0.51, 7], [0.5], "> 0.5", id="cmp-gt"),
    pytest.param("< 0.5", [0.49, -1], [0.5], "< 0.5", id="cmp-lt"),
    pytest.param("== 3", [3, 3.0], [4], "== 3", id="cmp-eq"),
    pytest.param("!= 0", [1, -0.5], [0], "!= 0", id="cmp-ne"),
    pytest.param({"ref": 0.31, "tol": 0.05}, [0.35, 0.27], [0.37, 0.25], "0.31 ± 0.05", id="tol"),
    pytest.param({"ref": 0.31, "rel": 0.1}, [0.33, 0.29], [0.35], "0.31 ± 10%", id="rel"),
    pytest.param(
        {"ref": 100, "lower": -0.1}, [90.5, 5000], [89.5], "[90, inf] (ref 100)", id="lower"
    ),
    pytest.param(
        {"ref": 100, "upper": 0.3}, [129.5, -50], [130.5], "[-inf, 130] (ref 100)", id="upper"
    ),
    pytest.param(
        {"ref": 100, "lower": -0.1, "upper": 0.3},
        [90.5, 129.5],
        [89.5, 131],
        "[90, 130] (ref 100)",
        id="both",
    ),
]


@pytest.mark.parametrize(("spec", "passing", "failing", "described"), KINDS)
def test_expectation_kinds(
    repo: Project,
    spec: str | dict[str, float],
    passing: list[float],
    failing: list[float],
    described: str,
) -> None:
    # A failing metric comes before a passing one: every expectation is checked and shown.
    values = {f"pass{i}": v for i, v in enumerate(passing)}
    values.update({f"fail{i}": v for i, v in enumerate(failing)})
    order = sorted(values, key=lambda m: (int(m[-1]), m.startswith("pass")))
    metrics = {m: values[m] for m in order}
    repo.config(
        "kind.yaml",
        experiment("kind", metrics=metrics, expect={m: spec for m in order}),
    )
    result = repo.pytester.runpytest("configs")
    result.assert_outcomes(failed=1)
    report = failure_report(result, "kind")
    assert f"{len(failing)} of {len(order)} expectation(s) failed" in report
    rows = verdict_rows(report)
    assert [row[0] for row in rows] == order
    for metric, expected, measured, verdict in rows:
        assert expected == described
        assert measured == measured_text(values[metric])
        assert verdict == ("ok" if metric.startswith("pass") else "FAIL"), rows
    (run_dir,) = repo.run_dirs("kind")
    record = read_record(run_dir)
    assert record["status"] == "failed"
    assert record["exit_code"] == 0  # the tool did its job; the numbers failed
    assert record["metrics"] == metrics
    assert {v["metric"]: v["ok"] for v in record["expectations"]} == {
        m: m.startswith("pass") for m in order
    }
    assert f"metrics: {run_dir / 'metrics.json'}" in report


def test_all_kinds_passing_pass(repo: Project) -> None:
    specs: list[tuple[Any, float]] = [
        (">= 0.9", 0.95),
        ("<= 0.5", 0.5),
        ("> 0.5", 0.6),
        ("< 0.5", 0.4),
        ("== 3", 3),
        ("!= 0", 2),
        (3, 3),  # a bare number means ==
        ({"ref": 0.31, "tol": 0.05}, 0.3),
        ({"ref": 0.31, "rel": 0.1}, 0.32),
        ({"ref": 100, "lower": -0.1}, 95),
        ({"ref": 100, "upper": 0.3}, 120),
        ({"ref": 100, "lower": -0.1, "upper": 0.3}, 100),
    ]
    metrics = {f"m{i}": value for i, (_, value) in enumerate(specs)}
    expect = {f"m{i}": spec for i, (spec, _) in enumerate(specs)}
    repo.config("ok.yaml", experiment("all_ok", metrics=metrics, expect=expect))
    result = repo.pytester.runpytest("configs")
    result.assert_outcomes(passed=1)
    (run_dir,) = repo.run_dirs("ok")
    record = read_record(run_dir)
    assert record["status"] == "passed"
    assert record["metrics_error"] is None
    assert len(record["expectations"]) == len(specs)
    assert all(v["ok"] for v in record["expectations"]), record["expectations"]


# --- 2. the metrics file and the metrics in it ---------------------------------------------


@pytest.mark.parametrize(
    ("metrics_file", "expected_file"),
    [("out/m.json", "out/m.json"), (None, "metrics.json")],
    ids=["declared", "implied-by-expect"],
)
def test_missing_metrics_file_fails_naming_it(
    repo: Project, metrics_file: str | None, expected_file: str
) -> None:
    expect = None if metrics_file else {"acc": ">= 0.9"}
    repo.config(
        "nofile.yaml", experiment("nofile", expect=expect, metrics_file=metrics_file)
    )  # the tool writes nothing: the config has no `metrics`
    result = repo.pytester.runpytest("configs")
    result.assert_outcomes(failed=1)
    (run_dir,) = repo.run_dirs("nofile")
    report = failure_report(result, "nofile")
    assert f"metrics file {run_dir / expected_file} does not exist" in report
    assert "HydraConfig.get().runtime.output_dir" in report
    record = read_record(run_dir)
    assert record["status"] == "failed"
    assert record["exit_code"] == 0
    assert record["metrics"] is None
    assert f"{run_dir / expected_file} does not exist" in record["metrics_error"]


def test_no_metrics_declared_and_none_written_passes(repo: Project) -> None:
    repo.config("plain.yaml", experiment("plain"))
    repo.pytester.runpytest("configs").assert_outcomes(passed=1)
    (run_dir,) = repo.run_dirs("plain")
    record = read_record(run_dir)
    assert record["status"] == "passed"
    assert record["metrics"] is None
    assert record["metrics_error"] is None
    assert record["expectations"] == []


def test_missing_and_non_numeric_metrics_fail(repo: Project) -> None:
    repo.config(
        "odd.yaml",
        experiment(
            "odd",
            metrics={"acc": 0.95, "name": "abc", "quoted": "0.9", "flag": True},
            expect={
                "name": ">= 0",
                "acc": ">= 0.9",
                "loss": "< 1",
                "quoted": ">= 0.5",
                "flag": "== 1",
            },
        ),
    )
    result = repo.pytester.runpytest("configs")
    result.assert_outcomes(failed=1)
    report = failure_report(result, "odd")
    assert "4 of 5 expectation(s) failed" in report
    assert verdict_rows(report) == [
        ["name", ">= 0", "abc", "FAIL (not a number: a string)"],
        ["acc", ">= 0.9", "0.95", "ok"],
        ["loss", "< 1", "-", "FAIL (missing)"],
        ["quoted", ">= 0.5", "0.9", "FAIL (not a number: a string)"],  # even if it looks numeric
        ["flag", "== 1", "True", "FAIL (not a number: a boolean)"],
    ]
    (run_dir,) = repo.run_dirs("odd")
    notes = {v["metric"]: v["note"] for v in read_record(run_dir)["expectations"]}
    assert notes == {
        "name": "not a number: a string",
        "acc": "",
        "loss": "missing",
        "quoted": "not a number: a string",
        "flag": "not a number: a boolean",
    }


def test_nested_metrics_addressed_with_dots(repo: Project) -> None:
    repo.config(
        "nested.yaml",
        experiment(
            "nested",
            metrics={"train": {"loss": 0.2, "acc": 0.8}, "eval": {"top": {"k5": 0.99}}},
            expect={"train.loss": "< 0.5", "train.acc": ">= 0.9", "eval.top.k5": ">= 0.95"},
            metrics_file="out/m.json",
            metrics_path="out/m.json",
        ),
    )
    result = repo.pytester.runpytest("configs")
    result.assert_outcomes(failed=1)
    report = failure_report(result, "nested")
    assert verdict_rows(report) == [
        ["train.loss", "< 0.5", "0.2", "ok"],
        ["train.acc", ">= 0.9", "0.8", "FAIL"],
        ["eval.top.k5", ">= 0.95", "0.99", "ok"],
    ]
    (run_dir,) = repo.run_dirs("nested")
    assert f"metrics: {run_dir / 'out' / 'm.json'}" in report


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml_metrics_file(repo: Project, suffix: str) -> None:
    name = f"results/m{suffix}"
    metrics = {"acc": 0.93, "train": {"loss": 0.12}, "steps": 300}
    repo.config(
        "yml.yaml",
        experiment(
            "yml",
            metrics=metrics,
            expect={"acc": {"ref": 0.9, "tol": 0.05}, "train.loss": "< 0.2", "steps": "== 300"},
            metrics_file=name,
            metrics_path=name,
        ),
    )
    repo.pytester.runpytest("configs").assert_outcomes(passed=1)
    (run_dir,) = repo.run_dirs("yml")
    assert (run_dir / name).read_text().startswith("acc: 0.93\n")  # really YAML, not JSON
    record = read_record(run_dir)
    assert record["status"] == "passed"
    assert record["metrics"] == metrics
    assert [v["measured"] for v in record["expectations"]] == [0.93, 0.12, 300]


# --- 3. bad expectations are collection errors with file:line -----------------------------


@pytest.mark.parametrize(
    ("block", "line", "message"),
    [
        ('  expect:\n    acc: "=> 3"\n', 6, "expectation for 'acc': '=> 3' is not a comparison"),
        (
            '  expect:\n    acc: ">= abc"\n',
            6,
            "expectation for 'acc': 'abc' in '>= abc' is not a number",
        ),
        (
            "  expect:\n    loss: {ref: 0.31, tol: 0.05, rel: 0.1}\n",
            6,
            "expectation for 'loss': give 'tol' (absolute) or 'rel' (relative), not both",
        ),
        (
            "  expect:\n    loss: {tol: 0.05}\n",
            6,
            "expectation for 'loss': a mapping needs 'ref'",
        ),
        ("  metrics: /etc/passwd\n", 5, "metrics file '/etc/passwd' is outside the run directory"),
        ("  metrics: ../x.json\n", 5, "metrics file '../x.json' is outside the run directory"),
    ],
    ids=["unknown-operator", "non-numeric-bound", "tol-and-rel", "no-ref", "absolute", "parent"],
)
def test_bad_expectations_are_collection_errors(
    project: Project, block: str, line: int, message: str
) -> None:
    project.tool("m", "raise SystemExit('must not run')\n", env="system", deps=None)
    project.config("good.yaml", "tool: m\nexperiment: good\n")
    path = project.config("bad.yaml", "tool: m\nexperiment: bad\nseed: 1\nxstash:\n" + block)
    result = project.pytester.runpytest("configs", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting configs/bad.yaml*"])
    assert f"{path}:{line}: {message}" in result.stdout.str()
    assert "  fix: " in result.stdout.str()
    assert "configs/good.yaml::good" in result.outlines
    assert "Traceback" not in result.stdout.str()


# --- 4. report files ----------------------------------------------------------------------


def three_experiments(repo: Project) -> None:
    repo.config(
        "suite/alpha.yaml",
        experiment(
            "alpha",
            metrics={"acc": 0.91, "loss": 0.3},
            expect={"acc": ">= 0.9"},
            estimated_runtime="1m",
        ),
    )
    repo.config(
        "suite/beta.yaml",
        experiment("beta", metrics={"acc": 0.5}, expect={"acc": ">= 0.9"}),
    )
    repo.config(
        "suite/gamma.yaml",
        experiment("gamma", metrics={"train": {"loss": 0.25}, "epochs": 3}),
    )


EXPECTED_ROWS = {
    "alpha": ("passed", {"acc": "0.91", "loss": "0.3", "train.loss": "", "epochs": ""}),
    "beta": ("failed", {"acc": "0.5", "loss": "", "train.loss": "", "epochs": ""}),
    "gamma": ("passed", {"acc": "", "loss": "", "train.loss": "0.25", "epochs": "3"}),
}
FIXED_COLUMNS = [
    "id",
    "experiment",
    "config",
    "tool",
    "status",
    "duration",
    "estimated_runtime",
    "exit_code",
]


def parse_report(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows of a .csv or .md report, as text."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        rows = list(reader)
        return list(reader.fieldnames or []), rows
    lines = text.splitlines()
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[:1] + lines[2:])
    assert re.fullmatch(r"\|( --- \|)+", lines[1]), lines[1]

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line[1:-1].split(" | ")]

    header = cells(lines[0])
    return header, [dict(zip(header, cells(line), strict=True)) for line in lines[2:]]


def assert_run_dir(run_dir: str, name: str) -> None:
    path = Path(run_dir)
    assert path.is_dir(), run_dir
    assert read_record(path)["experiment"] == name


@pytest.mark.parametrize("suffix", [".csv", ".md", ".json"])
def test_report_file_under_xdist(repo: Project, suffix: str) -> None:
    three_experiments(repo)
    result = repo.pytester.runpytest_subprocess(
        "configs", "-n", "2", "--xstash-report", f"reports/r{suffix}"
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*created: 2/2 workers*"])
    path = repo.root / "reports" / f"r{suffix}"
    result.stdout.fnmatch_lines([f"results written to {path}"])
    if suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        assert [row["experiment"] for row in rows] == ["alpha", "beta", "gamma"]
        for row in rows:
            status, _ = EXPECTED_ROWS[row["experiment"]]
            assert row["status"] == status
            assert row["tool"] == "m"
            assert row["config"] == f"configs/suite/{row['experiment']}.yaml"
            assert_run_dir(row["run_dir"], row["experiment"])
        alpha, beta, gamma = rows
        assert alpha["metrics"] == {"acc": 0.91, "loss": 0.3}
        assert alpha["estimated_runtime"] == "1m"
        assert alpha["verdicts"][0]["ok"] is True
        assert beta["metrics"] == {"acc": 0.5}
        assert beta["verdicts"][0]["ok"] is False
        assert gamma["metrics"] == {"train": {"loss": 0.25}, "epochs": 3}
        return
    columns, rows = parse_report(path)
    assert columns[: len(FIXED_COLUMNS)] == FIXED_COLUMNS
    assert columns[-1] == "run_dir"
    metric_columns = columns[len(FIXED_COLUMNS) : -1]
    assert metric_columns[0] == "acc"  # metrics with expectations come first
    assert sorted(metric_columns) == sorted(["acc", "loss", "train.loss", "epochs"])
    assert [row["experiment"] for row in rows] == ["alpha", "beta", "gamma"]
    for row in rows:
        name = row["experiment"]
        status, metrics = EXPECTED_ROWS[name]
        assert row["id"] == f"configs/suite/{name}.yaml::{name}"
        assert row["status"] == status
        assert row["exit_code"] == "0"
        assert float(row["duration"]) > 0
        assert {m: row[m] for m in metric_columns} == metrics
        assert_run_dir(row["run_dir"], name)
    assert rows[0]["estimated_runtime"] == "1m"


def test_report_suffix_must_be_known(repo: Project) -> None:
    repo.config("a.yaml", experiment("a"))
    result = repo.pytester.runpytest("configs", "--xstash-report", "r.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--xstash-report r.txt*one of .csv, .json, .md*"])
    assert not (repo.root / "r.txt").exists()
    assert repo.run_dirs("a") == []


# --- 5. the terminal table and the slow warning ----------------------------------------------


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
def test_terminal_table_and_slow_warning(repo: Project, workers: int) -> None:
    repo.config(
        "quick.yaml",
        experiment(
            "quick",
            metrics={"acc": 0.91, "train": {"loss": 0.2}},
            expect={"acc": ">= 0.9"},
            estimated_runtime="60s",
        ),
    )
    repo.config(
        "slow.yaml",
        experiment("slow", metrics={"acc": 0.3}, estimated_runtime="0.1s", sleep=0.5),
    )
    if workers:
        result = repo.pytester.runpytest_subprocess("configs", "-n", str(workers))
        result.stdout.fnmatch_lines([f"*created: {workers}/{workers} workers*"])
    else:
        result = repo.pytester.runpytest("configs")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*xstash results*",
            "experiment *tool *status *duration *estimate *acc *train.loss",
            "configs/quick.yaml::quick *m *passed *.?s *60s *0.91 *0.2",
            "configs/slow.yaml::slow *m *passed *.?s *0.1s *0.3",
            "warning: configs/slow.yaml::slow took *s, more than twice its estimated_runtime "
            "0.1s: update the estimate",
        ]
    )
    warnings = [line for line in result.outlines if line.startswith("warning: ")]
    assert len(warnings) == 1, warnings
    took = re.search(r"took ([\d.]+)s", warnings[0])
    assert took and float(took[1]) >= 0.5


# --- 6. JUnit properties --------------------------------------------------------------------


def junit_properties(path: Path) -> dict[str, dict[str, str]]:
    """testcase name -> its properties."""
    root = ET.parse(path).getroot()
    return {
        case.get("name", ""): {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        for case in root.iter("testcase")
    }


def test_junit_metric_and_expect_properties(repo: Project) -> None:
    repo.config(
        "good.yaml",
        experiment(
            "good",
            metrics={"acc": 0.95, "train": {"loss": 0.2}, "note": "fine"},
            expect={"acc": ">= 0.9", "train.loss": {"ref": 0.25, "tol": 0.1}},
        ),
    )
    repo.config(
        "bad.yaml",
        experiment(
            "bad",
            metrics={"acc": 0.5, "name": "abc"},
            expect={"acc": ">= 0.9", "loss": "< 1", "name": ">= 0"},
        ),
    )
    result = repo.pytester.runpytest("configs", "--junitxml=r.xml", "-o", "junit_family=xunit1")
    result.assert_outcomes(passed=1, failed=1)
    cases = junit_properties(repo.root / "r.xml")
    good, bad = cases["good"], cases["bad"]
    assert {k: v for k, v in good.items() if k.startswith(("metric.", "expect."))} == {
        "metric.acc": "0.95",
        "metric.train.loss": "0.2",
        "metric.note": "fine",
        "expect.acc": "ok: 0.95 vs >= 0.9",
        "expect.train.loss": "ok: 0.2 vs 0.25 ± 0.1",
    }
    assert {k: v for k, v in bad.items() if k.startswith(("metric.", "expect."))} == {
        "metric.acc": "0.5",
        "expect.acc": "FAIL: 0.5 vs >= 0.9",
        "metric.name": "abc",
        "expect.loss": "FAIL (missing): - vs < 1",
        "expect.name": "FAIL (not a number: a string): abc vs >= 0",
    }
