"""JUnit XML that strict consumers accept: under xunit2 (pytest's default family) every
experiment's properties are testsuite properties named ``<nodeid>::<name>``, and the file
validates against the xunit2 schema pytest checks itself with (``tests/data/junit-10.xsd``,
copied from pytest); under xunit1 and legacy they stay in the testcase. Serial and under -n 2,
where the controller writes the file from the workers' reports.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from helpers import METRICS_EXIT_TOOL, Project

SCHEMA = Path(__file__).parent / "data" / "junit-10.xsd"

GOOD = """\
tool: m
experiment: good
description: passes
tags: [paper, fig1]
estimated_runtime: 5s
metrics: {"acc": 0.95, "train": {"loss": 0.2}}
xstash:
  expect:
    acc: ">= 0.9"
    train.loss: {"ref": 0.25, "tol": 0.1}
"""

BAD = """\
tool: m
experiment: bad
code: 3
metrics: {"acc": 0.5}
xstash:
  expect:
    acc: ">= 0.9"
"""

IDS = {"good": "configs/good.yaml::good", "bad": "configs/bad.yaml::bad"}
COMMON = ("tool", "experiment", "config", "tags", "description", "estimated_runtime")
RUN = ("run_dir", "exit_code", "duration")


@pytest.fixture
def repo(project: Project, hydra_python: str) -> Project:
    project.tool("m", METRICS_EXIT_TOOL, env=hydra_python, deps=None)
    project.config("good.yaml", GOOD)
    project.config("bad.yaml", BAD)
    return project


def run(repo: Project, family: str, workers: int, *paths: str) -> pytest.RunResult:
    args = [*(paths or ("configs",)), "--junitxml=r.xml", "-o", f"junit_family={family}"]
    args += ["--xstash-report=r.json", "-p", "no:cacheprovider"]
    if workers:
        result = repo.pytester.runpytest_subprocess(*args, "-n", str(workers))
        result.stdout.fnmatch_lines([f"*created: {workers}/{workers} workers*"])
        return result
    return repo.pytester.runpytest(*args)


def case_properties(root: ET.Element) -> dict[str, dict[str, str]]:
    """testcase name -> the properties inside it."""
    return {
        case.get("name", ""): {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        for case in root.iter("testcase")
    }


def suite_properties(root: ET.Element) -> list[tuple[str, str]]:
    """The testsuite's own properties, in order."""
    (suite,) = root.iter("testsuite")
    return [
        (p.get("name", ""), p.get("value", ""))
        for props in suite.findall("properties")
        for p in props.iter("property")
    ]


def check_properties(props: dict[str, str], name: str) -> None:
    """What each experiment carries, wherever the family puts it."""
    assert set(COMMON + RUN) <= set(props), props
    assert Path(props["run_dir"]).is_dir()
    assert float(props["duration"]) >= 0
    assert props["tool"] == "m"
    assert props["experiment"] == name
    assert props["config"] == f"configs/{name}.yaml"
    if name == "good":
        assert props["tags"] == "paper,fig1"
        assert props["description"] == "passes"
        assert props["estimated_runtime"] == "5s"
        assert props["exit_code"] == "0"
        assert {k: v for k, v in props.items() if k.startswith(("metric.", "expect."))} == {
            "metric.acc": "0.95",
            "metric.train.loss": "0.2",
            "expect.acc": "ok: 0.95 vs >= 0.9",
            "expect.train.loss": "ok: 0.2 vs 0.25 ± 0.1",
        }
    else:
        assert props["tags"] == props["description"] == props["estimated_runtime"] == ""
        assert props["exit_code"] == "3"


def check_report_file(repo: Project) -> None:
    """The results file does not depend on where JUnit puts the properties."""
    rows = {row["experiment"]: row for row in json.loads((repo.root / "r.json").read_text())}
    assert {name: row["status"] for name, row in rows.items()} == {
        "good": "passed",
        "bad": "failed",
    }
    assert rows["good"]["metrics"] == {"acc": 0.95, "train": {"loss": 0.2}}
    assert rows["bad"]["exit_code"] == 3


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
def test_xunit2_is_valid_and_carries_every_property_on_the_suite(
    repo: Project, workers: int
) -> None:
    result = run(repo, "xunit2", workers)
    result.assert_outcomes(passed=1, failed=1)
    path = repo.root / "r.xml"
    xmlschema.XMLSchema(SCHEMA).validate(path)  # raises, saying where, when invalid
    root = ET.parse(path).getroot()
    cases = case_properties(root)
    assert cases == {"good": {}, "bad": {}}, "no <properties> in a testcase under xunit2"
    suite = suite_properties(root)
    for name, nodeid in IDS.items():
        prefix = f"{nodeid}::"
        mine = [(key[len(prefix) :], value) for key, value in suite if key.startswith(prefix)]
        names = [key for key, _ in mine]
        assert len(names) == len(set(names)), f"{name}: a property written twice: {names}"
        assert names[: len(COMMON)] == list(COMMON), "in the order the item added them"
        check_properties(dict(mine), name)
    assert all(key.startswith(tuple(f"{i}::" for i in IDS.values())) for key, _ in suite)
    check_report_file(repo)


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
def test_xunit1_keeps_the_properties_in_each_testcase(repo: Project, workers: int) -> None:
    result = run(repo, "xunit1", workers)
    result.assert_outcomes(passed=1, failed=1)
    root = ET.parse(repo.root / "r.xml").getroot()
    assert suite_properties(root) == []
    cases = case_properties(root)
    assert set(cases) == {"good", "bad"}
    for name, props in cases.items():
        check_properties(props, name)
    check_report_file(repo)


def test_legacy_is_xunit1(repo: Project) -> None:
    run(repo, "legacy", 0).assert_outcomes(passed=1, failed=1)
    root = ET.parse(repo.root / "r.xml").getroot()
    assert suite_properties(root) == []
    assert set(case_properties(root)["good"]) >= set(COMMON + RUN)


def test_other_tests_keep_their_properties(repo: Project) -> None:
    """xstash moves its experiments' properties only: a Python test's own properties stay where
    pytest puts them (under xunit2 pytest itself warns that record_property does not fit)."""
    repo.write(
        "unit/test_plain.py",
        """\
        def test_plain(record_property):
            record_property("mine", "kept")
        """,
    )
    result = run(repo, "xunit2", 0, "configs", "unit")
    result.assert_outcomes(passed=2, failed=1)
    root = ET.parse(repo.root / "r.xml").getroot()
    cases = case_properties(root)
    assert cases["test_plain"] == {"mine": "kept"}
    assert cases["good"] == cases["bad"] == {}
    assert ("configs/good.yaml::good::tool", "m") in suite_properties(root)
