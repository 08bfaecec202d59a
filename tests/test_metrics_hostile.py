"""Metrics files no tool should write, but some will: each run still gets a verdict and a final
record, and nothing xstash writes is invalid JSON or grows with the file.

The tool here is a plain script (the test is about xstash's reaction to what it finds in the run
directory): it writes the metrics file its config's ``case`` names, then exits 0.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from helpers import Project

MAX_METRICS = 1000  # xstash_plugin.run.judge.MAX_METRICS: values a record keeps
MAX_METRIC_CHARS = 1000  # xstash_plugin.run.judge.MAX_METRIC_CHARS: longer values are elided

WRITER = """\
import json, sys
run_dir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("hydra.run.dir="))
config = next(a for a in sys.argv if a.endswith("xstash_config"))  # --config-dir
case = open(config + "/xstash_experiment.yaml").read().split("case:")[1].split()[0]
if case == "deep":
    text = '{"a": ' * 100000 + "1" + "}" * 100000
elif case == "bigint":
    text = '{"accuracy": 1' + "0" * 4000 + "}"
elif case == "nonfinite":
    text = '{"a": NaN, "b": Infinity, "c": 1e400, "d": -Infinity, "ok": 0.95}'
elif case == "many":
    text = json.dumps({f"m{i:05d}": i for i in range(20000)})
elif case == "huge":
    text = json.dumps({"log": "x" * 5_000_000, "accuracy": 0.97})
open(run_dir + "/metrics.json", "w").write(text)
print("wrote", case)
"""


def strict_json(path: Path) -> Any:
    """``path`` parsed as strict JSON: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def writer(project: Project) -> Project:
    project.tool("writer", WRITER, env="system", deps=None)
    return project


def config(project: Project, case: str, expect: str = "") -> None:
    body = f"tool: writer\nexperiment: {case}\ncase: {case}\n"
    if expect:
        body += f"xstash:\n  expect:\n{expect}"
    project.config(f"{case}.yaml", body)


def record(project: Project, case: str) -> dict[str, Any]:
    (run_dir,) = project.run_dirs(case)
    data: dict[str, Any] = strict_json(run_dir / "xstash.json")
    return data


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "n2"])
def test_hostile_metrics_fail_their_run_cleanly(writer: Project, workers: list[str]) -> None:
    config(writer, "deep", "    a: '>= 0'\n")
    config(writer, "bigint", "    accuracy: '>= 0.9'\n")
    config(
        writer,
        "nonfinite",
        "    a: '!= 0.5'\n    b: '>= 0.9'\n    c: '>= 0.9'\n    d: '<= 0'\n    ok: '>= 0.9'\n",
    )
    result = writer.pytester.runpytest_subprocess(
        "configs", *workers, "--junitxml=r.xml", "--xstash-report=r.json", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(failed=3)
    text = result.stdout.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text
    result.stdout.fnmatch_lines(["*metrics file *metrics.json is nested too deeply to be read*"])
    # A number no float holds, NaN and the infinities fail every expectation on them.
    result.stdout.fnmatch_lines(["accuracy*>= 0.9*<an integer of 13,288 bits>*not a finite*"])
    for metric, measured in (("a", "NaN"), ("b", "Infinity"), ("c", "Infinity")):
        result.stdout.fnmatch_lines([f"{metric} *{measured} *FAIL (not a finite number)"])
    result.stdout.fnmatch_lines(["ok *>= 0.9 *0.95 *ok"])
    deep = record(writer, "deep")
    assert deep["status"] == "failed" and "nested too deeply" in deep["metrics_error"]
    bigint = record(writer, "bigint")
    assert bigint["status"] == "failed"
    assert bigint["metrics"] == {"accuracy": "<an integer of 13,288 bits>"}
    nonfinite = record(writer, "nonfinite")
    assert nonfinite["status"] == "failed"
    assert nonfinite["metrics"] == {
        "a": "NaN",
        "b": "Infinity",
        "c": "Infinity",
        "d": "-Infinity",
        "ok": 0.95,
    }
    notes = {v["metric"]: v["note"] for v in nonfinite["expectations"]}
    assert notes == {
        "a": "not a finite number",
        "b": "not a finite number",
        "c": "not a finite number",
        "d": "not a finite number",
        "ok": "",
    }
    rows = strict_json(writer.root / "r.json")  # the report file is strict JSON too
    assert {row["status"] for row in rows} == {"failed"}
    cases = list(ET.parse(writer.root / "r.xml").iter("testcase"))
    assert len(cases) == 3 and all(c.find("failure") is not None for c in cases)


def test_many_and_huge_metrics_are_capped_in_records_and_reports(writer: Project) -> None:
    config(writer, "many")
    config(writer, "huge", "    accuracy: '>= 0.9'\n")
    result = writer.pytester.runpytest(
        "configs", "--junitxml=r.xml", "--xstash-report=r.html", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)
    many = record(writer, "many")
    assert len(many["metrics"]) == MAX_METRICS
    assert list(many["metrics"])[:2] == ["m00000", "m00001"]
    assert "20,000 values: the first 1,000 are kept" in many["metrics_note"]
    (run_dir,) = writer.run_dirs("many")
    assert len(json.loads((run_dir / "metrics.json").read_text())) == 20000  # the file is whole
    huge = record(writer, "huge")
    assert huge["metrics"]["accuracy"] == 0.97
    assert len(huge["metrics"]["log"]) <= MAX_METRIC_CHARS + 40
    assert "(5,000,000 chars)" in huge["metrics"]["log"]
    # Nothing that reports the run copies the 5 MB value.
    assert (writer.root / "r.html").stat().st_size < 2_000_000
    assert (writer.root / "r.xml").stat().st_size < 1_000_000
    assert len(result.stdout.str()) < 200_000
