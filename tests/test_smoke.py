from __future__ import annotations

import json

from helpers import Project


def test_experiment_runs_real_hydra_tool(project: Project, hydra_python: str) -> None:
    project.tool("echo", env=hydra_python, deps=None)
    project.config(
        "exp.yaml",
        """\
        tool: echo
        experiment: first
        message: hi
        params: {lr: 0.1}
        """,
    )
    result = project.pytester.runpytest("configs", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["configs/exp.yaml::first PASSED*"])
    (run_dir,) = project.run_dirs("exp")
    seen = json.loads((run_dir / "seen.json").read_text())
    assert seen["job"] == "first"
    assert seen["cfg"] == {"message": "hi", "params": {"lr": 0.1}}
