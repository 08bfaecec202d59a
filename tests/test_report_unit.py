"""report.render as plain functions: a metric named like a fixed column keeps both columns."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from xstash_plugin.report.rows import render

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
