"""report.render as plain functions: a metric named like a fixed column keeps both columns."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from xstash_plugin.config.expectations import Expectation
from xstash_plugin.report.files import render
from xstash_plugin.run.judge import judge

ROW: dict[str, Any] = {
    "id": "configs/a.yaml::a",
    "experiment": "a",
    "config": "configs/a.yaml",
    "tool": "t",
    "status": "passed",
    "duration": 1.5,
    "estimated_runtime": "1s",
    "exit_code": 0,
    "metrics": {"status": 7, "train": {"loss": 0.25}},
    "verdicts": [{"metric": "train.loss", "expected": "< 1", "measured": 0.25, "ok": True}],
    "run_dir": "/tmp/run",
}


def test_csv_keeps_a_metric_named_like_a_fixed_column() -> None:
    text = render(Path("r.csv"), [ROW])
    (record,) = list(csv.DictReader(io.StringIO(text)))
    assert record["status"] == "passed"
    assert record["metrics.status"] == "7"
    assert record["train.loss"] == "0.25"
    assert list(record)[-1] == "run_dir"


def test_markdown_columns_are_unique_and_metrics_with_expectations_come_first() -> None:
    header = render(Path("r.md"), [ROW]).splitlines()[0]
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert len(cells) == len(set(cells))
    assert cells.index("train.loss") < cells.index("metrics.status")


def test_json_rows_keep_nested_metrics() -> None:
    (row,) = json.loads(render(Path("r.json"), [ROW]))
    assert row["metrics"] == {"status": 7, "train": {"loss": 0.25}}


def test_expectation_bounds_reach_the_record_as_data() -> None:
    expectations = [
        Expectation("acc", "cmp", op=">=", value=0.9),
        Expectation("loss", "tol", value=0.25, ref=0.5),
        Expectation("n", "bounds", ref=100, lower=-0.1, upper=None),
        Expectation("k", "cmp", op="!=", value=0),
    ]
    verdicts = judge(expectations, {"acc": 0.95, "loss": 0.3, "n": 120, "k": 1})
    # What a run's record keeps (strict JSON: no infinite bound).
    stored = json.loads(json.dumps([v.as_dict() for v in verdicts], allow_nan=False))
    assert [v["expected"] for v in stored] == [
        ">= 0.9",
        "0.5 ± 0.25",
        "[90, inf] (ref 100)",
        "!= 0",
    ]
    assert [v["bounds"] for v in stored] == [
        {"low": 0.9, "high": None},
        {"low": 0.25, "high": 0.75},
        {"low": 90.0, "high": None},
        None,  # no region: nothing to shade
    ]
