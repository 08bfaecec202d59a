"""Preloaded tools (``preload: true``): each run is a fork of a process that imported the tool
once. The execution tests (test_run, test_timeouts, test_records, test_crash) run in both
modes; these tests cover what is particular to preloading."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from helpers import Project, failure_report

# A real Hydra tool. Its top level notes the pid that runs it: once in each preload server
# (the import), and once in each run (which executes the entry as __main__, as a plain run
# does). Each run notes who it is, where, with what argv and environment.
PROBE = """\
import json, os, sys
import hydra
from hydra.core.hydra_config import HydraConfig

TOOL = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(TOOL, "imports.log"), "a") as f:
    f.write(f"{os.getpid()}\\n")

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    out = HydraConfig.get().runtime.output_dir
    info = {"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0),
            "sid": os.getsid(0), "cwd": os.getcwd(), "argv": sys.argv,
            "mark": os.environ.get("XSTASH_TEST_MARK"), "x": cfg.x,
            "main": __name__, "modules": "hydra" in sys.modules}
    with open(os.path.join(out, "probe.json"), "w") as f:
        json.dump(info, f)
    print("ran", cfg.x)
    if cfg.x == "kill-parent":
        os.kill(os.getppid(), 9)
        import time; time.sleep(30)
    if cfg.x == "fail":
        sys.exit(5)

if __name__ == "__main__":
    main()
"""


@pytest.fixture
def preloaded(pytester: pytest.Pytester, hydra_python: str) -> Project:
    project = Project(pytester, preload=True)
    project.tool("probe", PROBE, env=hydra_python, deps=None)
    # These tests count who imported the tool (preload servers, runs); composing at collection
    # imports it once more, in a process of its own (tests/test_compose.py counts those).
    pytester.makeini("[pytest]\nxstash_compose = off\n")
    return project


def imports(project: Project) -> list[int]:
    path = project.root / "tools" / "probe" / "imports.log"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def servers(project: Project, done: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[int]:
    """Pids that executed the tool's top level but were not runs: the preload servers."""
    ran = {probe.get("pid") for _, probe in done}
    return [pid for pid in imports(project) if pid not in ran]


def runs(project: Project, config: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(record, probe) of each run of ``configs/<config>``."""
    out = []
    for run_dir in project.run_dirs(config):
        probe = run_dir / "probe.json"
        record = json.loads((run_dir / "xstash.json").read_text())
        record["_dir"] = str(run_dir)
        out.append(
            (
                record,
                json.loads(probe.read_text()) if probe.exists() else {},
            )
        )
    return out


def sweep(project: Project, values: list[str]) -> None:
    project.config(
        "s.yaml",
        f"tool: probe\nexperiment: s\nx: a\nxstash:\n  sweep:\n    x: {json.dumps(values)}\n",
    )


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_runs_are_forks_of_one_import_per_process(
    preloaded: Project, workers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XSTASH_TEST_MARK", "from-the-session")
    sweep(preloaded, ["a", "b", "c", "d"])
    result = preloaded.pytester.runpytest("configs", *workers, "--junitxml=out.xml")
    result.assert_outcomes(passed=4)
    done = runs(preloaded, "s")
    preloads = servers(preloaded, done)
    # One import per pytest process that ran experiments: 1 without xdist, at most 2 with -n 2.
    assert 1 <= len(preloads) <= (2 if workers else 1)
    assert sorted(probe["x"] for _, probe in done) == ["a", "b", "c", "d"]
    tool_dir = str(preloaded.root / "tools" / "probe")
    for record, probe in done:
        assert record["preloaded"] is True
        assert record["status"] == "passed"
        assert record["tool_pid"] == probe["pid"]
        assert probe["ppid"] in preloads  # forked from a preload server...
        assert probe["pid"] in imports(preloaded)  # ...its top level ran as __main__ again
        assert probe["pgid"] == probe["sid"] == probe["pid"]  # its own session and group
        assert probe["cwd"] == tool_dir
        assert probe["mark"] == "from-the-session"
        assert probe["main"] == "__main__"
        assert probe["argv"][0].endswith("src/main.py")
        assert "--config-name" in probe["argv"]
        assert (Path(record["_dir"]) / "stdout.log").read_text().strip() == f"ran {probe['x']}"
    assert len({probe["pid"] for _, probe in done}) == 4
    cases = list(ET.parse(preloaded.root / "out.xml").iter("testcase"))
    assert len(cases) == 4
    assert all(c.find("failure") is None for c in cases)


def test_exit_codes_and_reports_are_those_of_a_plain_run(preloaded: Project) -> None:
    sweep(preloaded, ["ok", "fail"])
    result = preloaded.pytester.runpytest("configs", "-p", "no:xdist")
    result.assert_outcomes(passed=1, failed=1)
    report = failure_report(result, "s[x=fail]")
    assert "tool 'probe' exited with code 5" in report
    records = {probe["x"]: record for record, probe in runs(preloaded, "s")}
    assert records["fail"]["exit_code"] == 5
    assert records["fail"]["preloaded"] is True


def test_server_dying_mid_run_is_an_error_and_the_next_run_gets_a_new_one(
    preloaded: Project,
) -> None:
    preloaded.config("a.yaml", "tool: probe\nexperiment: a\nx: kill-parent\n")
    preloaded.config("b.yaml", "tool: probe\nexperiment: b\nx: fine\n")
    result = preloaded.pytester.runpytest("configs", "-p", "no:xdist", "--xstash-order=file")
    result.assert_outcomes(passed=1, failed=1)
    report = failure_report(result, "a")
    assert "the preload process of this tool died while the run" in report
    assert "remove 'preload: true' from tool 'probe'" in report
    ((record, _),) = runs(preloaded, "a")
    assert record["status"] == "error"
    assert "exit status is lost" in record["error"]
    ((record_b, probe_b),) = runs(preloaded, "b")
    preloads = servers(preloaded, runs(preloaded, "a") + runs(preloaded, "b"))
    assert len(preloads) == 2  # b got a fresh server
    assert record_b["preloaded"] is True and probe_b["ppid"] == preloads[1]


UNGUARDED = """\
import os, sys
TOOL = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(TOOL, "imports.log"), "a") as f:
    f.write(f"{os.getpid()}\\n")
print("ran without a guard")
"""


def test_entry_without_main_guard_is_not_preloaded_but_runs(preloaded: Project) -> None:
    preloaded.tool("probe", UNGUARDED, env="system", deps=None)
    sweep(preloaded, ["a", "b"])
    result = preloaded.pytester.runpytest("configs", "-p", "no:xdist")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*XstashWarning: tool 'probe' cannot be preloaded, its runs start plainly: *main.py "
            "has no 'if __name__ == \"__main__\":' block, so importing it would run the tool*"
        ]
    )
    assert result.stdout.str().count("cannot be preloaded") == 1  # said once, not per run
    assert len(imports(preloaded)) == 2  # each run ran it once; preloading never did
    assert all(record["preloaded"] is False for record, _ in runs(preloaded, "s"))


BROKEN_IMPORT = """\
import hydra
import no_such_module_anywhere

if __name__ == "__main__":
    pass
"""


def test_tool_that_cannot_be_imported_warns_and_fails_as_it_would_plainly(
    preloaded: Project,
) -> None:
    preloaded.tool("probe", BROKEN_IMPORT, env="system", deps=None)
    preloaded.config("a.yaml", "tool: probe\nexperiment: a\n")
    result = preloaded.pytester.runpytest("configs", "-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*tool 'probe' cannot be preloaded, its runs start plainly: importing the tool failed*"]
    )
    report = failure_report(result, "a")
    assert "exited with code 1" in report
    assert "ModuleNotFoundError" in report
