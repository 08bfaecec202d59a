"""Longest-first ordering: estimates first, longest first; the rest after, in file order."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from helpers import CONFIG_SLEEPER, Project

from xstash_plugin.ordering import load_durations, longest_first, save_durations


def test_longest_first_keeps_file_order_for_ties_and_unknowns() -> None:
    items = ["a", "b", "c", "d", "e", "f"]
    estimates = [None, 5.0, 60.0, None, 5.0, 0.5]
    assert longest_first(items, estimates) == ["c", "b", "e", "f", "a", "d"]


def test_durations_file_merges_and_ignores_reused_and_garbage(tmp_path) -> None:
    save_durations(tmp_path, [{"id": "x", "duration": 2.0}, {"id": "y", "duration": None}])
    save_durations(
        tmp_path,
        [{"id": "z", "duration": 1.5}, {"id": "x", "duration": 9.0, "reused_from": "old"}],
    )
    assert load_durations(tmp_path) == {"x": 2.0, "z": 1.5}
    (tmp_path / ".xstash" / "durations.json").write_text("{not json")
    assert load_durations(tmp_path) == {}


@pytest.fixture
def five(project: Project) -> Project:
    project.tool("sleeper", CONFIG_SLEEPER, entrypoint="main.py", env="system", deps=None)
    # File order is the worst order: the long ones come last.
    for name, estimate in [("a", None), ("b", "1s"), ("c", "2s"), ("d", None), ("e", "1m")]:
        line = f"estimated_runtime: {estimate}\n" if estimate else ""
        project.config(f"{name}.yaml", f"tool: sleeper\nexperiment: {name}\n{line}sleep: 0\n")
    return project


def collected(result: pytest.RunResult) -> list[str]:
    return [line.split("::")[-1] for line in result.outlines if "::" in line]


def test_collection_order_is_longest_first(five: Project) -> None:
    result = five.pytester.runpytest("--collect-only", "-q", "configs")
    assert collected(result) == ["e", "c", "b", "a", "d"]
    result = five.pytester.runpytest("--collect-only", "-q", "configs", "--xstash-order=file")
    assert collected(result) == ["a", "b", "c", "d", "e"]
    five.pytester.makeini("[pytest]\nxstash_order = file\n")
    result = five.pytester.runpytest("--collect-only", "-q", "configs")
    assert collected(result) == ["a", "b", "c", "d", "e"]


def test_bad_order_setting_is_a_usage_error(five: Project) -> None:
    five.pytester.makeini("[pytest]\nxstash_order = shortest\n")
    result = five.pytester.runpytest("--collect-only", "-q", "configs")
    result.stderr.fnmatch_lines(["*xstash_order = 'shortest': use one of longest, file*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_durations_learned_from_the_last_session_order_the_next(
    five: Project, workers: list[str]
) -> None:
    # 'd' has no estimate and takes longest: after one session, it is known to.
    five.config("d.yaml", "tool: sleeper\nexperiment: d\nsleep: 1.2\n")
    first = five.pytester.runpytest("configs", *workers, "--junitxml=first.xml")
    first.assert_outcomes(passed=5)
    learned = json.loads((five.root / "outputs" / ".xstash" / "durations.json").read_text())
    assert set(learned) == {f"configs/{n}.yaml::{n}" for n in "abcde"}
    assert learned["configs/d.yaml::d"] >= 1.2
    # The results table and the JUnit report keep the file order.
    names = [c.get("name") for c in ET.parse(five.root / "first.xml").iter("testcase")]
    assert sorted(names) == list("abcde")
    result = five.pytester.runpytest("--collect-only", "-q", "configs")
    # Config estimates e (1m), c (2s), then d's learned 1.2 s before b's 1s; a (learned ~0 s)
    # now has an estimate too, ahead of nothing.
    assert collected(result) == ["e", "c", "d", "b", "a"]


def test_under_xdist_the_longest_experiments_go_to_different_workers(project: Project) -> None:
    # xdist's own load scheduler would start worker 1 with the first consecutive items: here
    # both long experiments; each worker must get one of them.
    project.tool("sleeper", CONFIG_SLEEPER, entrypoint="main.py", env="system", deps=None)
    for index in range(8):
        project.config(f"short{index}.yaml", f"tool: sleeper\nexperiment: short{index}\nsleep: 0\n")
    for name in ("long_a", "long_b"):
        project.config(
            f"{name}.yaml",
            f"tool: sleeper\nexperiment: {name}\nestimated_runtime: 1m\nsleep: 1\n",
        )
    result = project.pytester.runpytest("configs", "-n", "2")
    result.assert_outcomes(passed=10)
    workers = {
        name: json.loads((project.run_dirs(name)[0] / "xstash.json").read_text())["worker_pid"]
        for name in ("long_a", "long_b")
    }
    assert workers["long_a"] != workers["long_b"]
