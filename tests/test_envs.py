"""Tool environments: real uv environments from pyproject.toml / requirements.txt, the system
interpreter, one sync per tool per session (also under xdist), and a sync that fails."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import Project

# Plain Python on purpose: the dev environment has no Hydra, and `env: system` is about which
# interpreter runs, nothing else. It finds its run directory in the Hydra override xstash sends.
WHICH_PYTHON = """\
import json, os, sys
arg = next(a for a in sys.argv if a.startswith("hydra.run.dir="))
run_dir = arg.split("=", 1)[1].strip("'")
with open(os.path.join(run_dir, "seen.json"), "w") as f:
    json.dump({"python": sys.executable, "cwd": os.getcwd(),
               "virtual_env": os.environ.get("VIRTUAL_ENV")}, f)
"""

MISSING_PACKAGE = "definitely-not-a-real-package-xstash"


def sync_log(project: Project) -> list[dict[str, Any]]:
    path = project.root / "outputs" / ".xstash" / "envs" / "sync.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_seen(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "seen.json").read_text())
    return data


@pytest.mark.slow_integration
@pytest.mark.parametrize("deps", ["pyproject", "requirements"])
def test_uv_env_is_built_and_used(
    project: Project, deps: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python itself may not write bytecode here (as in many container images): the .pyc files
    # checked below can only come from xstash asking uv to compile the environment.
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    folder = project.tool("uvtool", deps=deps)
    project.config("uv.yaml", "tool: uvtool\nexperiment: in_venv\nmessage: hi\n")
    result = project.pytester.runpytest("configs", "-v")
    result.assert_outcomes(passed=1)
    venv_python = folder / ".venv" / "bin" / "python"
    assert venv_python.exists()
    (run_dir,) = project.run_dirs("uv")
    seen = read_seen(run_dir)
    assert seen["python"] == str(venv_python)
    assert seen["job"] == "in_venv"
    assert seen["cfg"] == {"message": "hi"}
    assert Path(seen["cwd"]).resolve() == folder.resolve()
    (line,) = sync_log(project)
    assert line["tool"] == "uvtool"
    assert line["ok"] is True
    assert (folder / "uv.lock").exists() == (deps == "pyproject")
    # Runs import Hydra from bytecode compiled when the environment was built.
    (hydra_package,) = (folder / ".venv").glob("lib/python*/site-packages/hydra")
    compiled = {p.name.split(".")[0] for p in (hydra_package / "__pycache__").glob("*.pyc")}
    assert {"__init__", "main", "utils"} <= compiled


def test_system_env_uses_pytest_interpreter(project: Project) -> None:
    folder = project.tool("sys", WHICH_PYTHON, env="system", deps=None)
    project.config("sys.yaml", "tool: sys\nexperiment: on_system\n")
    result = project.pytester.runpytest("configs")
    result.assert_outcomes(passed=1)
    (run_dir,) = project.run_dirs("sys")
    seen = read_seen(run_dir)
    assert seen["python"] == sys.executable  # in-process pytester: this very interpreter
    assert seen["virtual_env"] is None
    assert Path(seen["cwd"]).resolve() == folder.resolve()
    assert not (folder / ".venv").exists()
    assert sync_log(project) == []


@pytest.mark.slow_integration
def test_xdist_syncs_each_tool_once_per_session(project: Project) -> None:
    for tool in ("alpha", "beta"):
        project.tool(tool)
        for index in range(3):
            project.config(
                f"{tool}/e{index}.yaml",
                f"tool: {tool}\nexperiment: {tool}_{index}\nindex: {index}\n",
            )
    sessions: list[str] = []
    # Bytecode is compiled by the first sync, then only when a tool's dependency files change.
    compiled = [{"alpha": True, "beta": True}, {"alpha": False, "beta": False}]
    compiled.append({"alpha": True, "beta": False})
    for index, expected in enumerate(compiled):
        if index == 2:
            pyproject = project.root / "tools" / "alpha" / "pyproject.toml"
            pyproject.write_text(pyproject.read_text() + "# a change\n")
        result = project.pytester.runpytest_subprocess("configs", "-n", "2")
        result.assert_outcomes(passed=6)
        result.stdout.fnmatch_lines(["*created: 2/2 workers*"])
        new = [line for line in sync_log(project) if line["session"] not in sessions]
        assert Counter(line["tool"] for line in new) == {"alpha": 1, "beta": 1}, new
        assert all(line["ok"] for line in new)
        assert {line["tool"]: line["compiled"] for line in new} == expected
        (session,) = {line["session"] for line in new}
        sessions.append(session)
    assert len(sync_log(project)) == 6
    for tool in ("alpha", "beta"):
        assert len(project.run_dirs(f"{tool}/e0")) == 3


@pytest.mark.slow_integration
@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
@pytest.mark.parametrize("compose", ["on", "off"])
def test_failed_sync_fails_only_that_tool(
    project: Project, hydra_python: str, workers: int, compose: str
) -> None:
    broken = project.tool("broken")
    (broken / "pyproject.toml").write_text(
        '[project]\nname = "broken"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
        f'dependencies = ["{MISSING_PACKAGE}==9.9"]\n[tool.uv]\npackage = false\n'
    )
    project.tool("fine", env=hydra_python, deps=None)
    project.config("b1.yaml", "tool: broken\nexperiment: broken_one\n")
    project.config("b2.yaml", "tool: broken\nexperiment: broken_two\n")
    project.config("ok.yaml", "tool: fine\nexperiment: fine_one\n")
    args = ["configs", "-rf", f"--xstash-compose={compose}", "--continue-on-collection-errors"]
    if workers:
        result = project.pytester.runpytest_subprocess(*args, "-n", str(workers))
    else:
        result = project.pytester.runpytest(*args)
    text = result.stdout.str()
    assert "Traceback" not in text
    # uv ran once for the broken tool, however many experiments and workers asked for it.
    assert [(line["tool"], line["ok"]) for line in sync_log(project)] == [("broken", False)]
    if compose == "on":
        # Composing at collection needs the environment: the tool's experiments fail their
        # collection with uv's message; the other tool's experiment runs.
        result.assert_outcomes(passed=1, errors=2)
        for config in ("b1", "b2"):
            section = text.split(f"ERROR collecting configs/{config}.yaml")[1]
            assert "tool 'broken' cannot compose this experiment: preparing the" in section
            assert MISSING_PACKAGE in section.split("uv says:")[1]
        assert len(project.run_dirs("ok")) == 1
        return
    result.assert_outcomes(passed=1, failed=2)
    for name in ("broken_one", "broken_two"):
        # Both experiments carry uv's own message, though uv ran once (see sync.log).
        section = text.split(f"broken: {name} _")[1]
        assert "preparing the environment of tool 'broken' failed" in section
        assert MISSING_PACKAGE in section.split("uv says:")[1]
    # Nothing is lost: each broken run still leaves a record saying what happened.
    for config in ("b1", "b2"):
        (run_dir,) = project.run_dirs(config)
        record = json.loads((run_dir / "xstash.json").read_text())
        assert record["status"] == "error"
        assert MISSING_PACKAGE in record["error"]
    assert len(project.run_dirs("ok")) == 1
