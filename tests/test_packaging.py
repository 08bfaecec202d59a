"""The plugin registers once: through its entry point when installed, else via conftest.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import Project

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_like(project: Project, hydra_python: str) -> Project:
    shutil.copy(REPO / "conftest.py", project.root / "conftest.py")
    project.tool("t", env=hydra_python, deps=None)
    project.config("a.yaml", "tool: t\nexperiment: a\n")
    return project


def test_installed_and_repo_conftest_register_once(repo_like: Project) -> None:
    result = repo_like.pytester.runpytest_subprocess("configs", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["plugins:*xstash-*"])
    result.stdout.no_fnmatch_line("*already registered*")


def test_repo_conftest_loads_the_plugin_without_entry_points(
    repo_like: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = repo_like.pytester.runpytest_subprocess("configs", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["configs/a.yaml::a PASSED*"])


def test_without_conftest_and_entry_points_nothing_is_collected(
    repo_like: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo_like.root / "conftest.py").unlink()
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = repo_like.pytester.runpytest_subprocess("configs")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_hydra_stays_out_of_the_orchestrator() -> None:
    """hydra-core belongs to the tools: importing it costs every pytest process (and xdist
    worker) ~0.3 s and loads a pytest plugin. Neither a dependency nor an import of ours."""
    import importlib.metadata
    import subprocess
    import sys

    requirements = importlib.metadata.requires("xstash") or []
    assert not [r for r in requirements if r.lower().startswith(("hydra", "hydra-core"))]
    probe = (
        "import sys, xstash_plugin.plugin, xstash_plugin.run.items,"
        " xstash_plugin.launchers.preload;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'antlr4')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
