"""The seed's command-line scripts, run as real subprocesses in a copy of the template."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Project

REPO = Path(__file__).resolve().parent.parent

SEED_LINES = [
    "🎉 SUCCESS: Hydra integration working!",
    "📝 Message from config: Hello from top-level ExperimentStash config! Integration working"
    " perfectly!",
    "✅ Top-level configs integrated successfully!",
]


def _script(project: Project, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    scripts = project.root / "scripts"
    if not scripts.exists():
        shutil.copytree(REPO / "scripts", scripts)
    return subprocess.run(
        [sys.executable, str(scripts / name), *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def seed(project: Project, hydra_python: str) -> Project:
    """The template's seed tool and config, with the tool on the session's hydra python."""
    shutil.copytree(
        REPO / "tools" / "hydra-test-tool" / "src", project.root / "tools" / "t" / "src"
    )
    project.tool(
        "hydra-test-tool",
        main=(REPO / "tools/hydra-test-tool/src/main.py").read_text(),
        env=hydra_python,
        deps=None,
        extra="pass_experiment: true",
    )
    shutil.copy(REPO / "configs" / "test_integration.yaml", project.root / "configs")
    project.config("sub/other.yaml", "tool: hydra-test-tool\nexperiment: other\nmessage: x\n")
    return project


def test_run_experiment_prints_the_seed_lines(seed: Project) -> None:
    proc = _script(seed, "run_experiment", "hydra-test-tool", "test_integration")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    positions = [lines.index(line) for line in SEED_LINES]
    assert positions == sorted(positions)
    assert "1 passed" in proc.stdout
    (run_dir,) = seed.run_dirs("test_integration")
    assert (run_dir / "xstash.json").is_file()


def test_run_experiment_in_a_subfolder(seed: Project) -> None:
    proc = _script(seed, "run_experiment", "hydra-test-tool", "sub/other")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Message from config: x" in proc.stdout


def test_validate_only_runs_nothing(seed: Project) -> None:
    proc = _script(seed, "run_experiment", "hydra-test-tool", "test_integration", "--validate-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "configs/test_integration.yaml::test_integration" in proc.stdout
    assert "is valid" in proc.stdout
    assert "SUCCESS" not in proc.stdout
    assert seed.run_dirs("test_integration") == []


def test_validate_only_reports_a_bad_config(seed: Project) -> None:
    seed.config("bad.yaml", "tool: hydra-test-tool\nexperiment: bad\ntags: [skip]\n")
    proc = _script(seed, "run_experiment", "hydra-test-tool", "bad", "--validate-only")
    assert proc.returncode != 0
    assert "configs/bad.yaml:3: tag 'skip' is reserved by pytest" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("hydra-tst-tool", "test_integration"),
            "Tool not found in meta config: 'hydra-tst-tool'; registered: hydra-test-tool. "
            "Did you mean 'hydra-test-tool'?",
        ),
        (("hydra-test-tool", "test_integraton"), "Config file not found: "),
        (("hydra-test-tool", "../../etc/passwd"), "points outside"),
        (("hydra-test-tool", "/etc/passwd"), "must be a path relative to"),
    ],
)
def test_run_experiment_refusals(seed: Project, args: tuple[str, ...], message: str) -> None:
    proc = _script(seed, "run_experiment", *args)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seed.run_dirs("test_integration") == []


def test_config_for_another_tool_is_refused(seed: Project, hydra_python: str) -> None:
    seed.tool("other-tool", env=hydra_python, deps=None)
    proc = _script(seed, "run_experiment", "other-tool", "test_integration")
    assert proc.returncode == 1
    assert "is a config for tool 'hydra-test-tool', not 'other-tool'" in proc.stderr


def test_config_not_found_suggests_the_closest(seed: Project) -> None:
    proc = _script(seed, "run_experiment", "hydra-test-tool", "test_integraton")
    assert "Did you mean 'test_integration'?" in proc.stderr


def test_validate_setup_all_and_list(seed: Project) -> None:
    proc = _script(seed, "validate_setup.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 valid config(s), 0 invalid config(s)" in proc.stdout
    listing = _script(seed, "validate_setup.py", "--list-configs")
    assert listing.returncode == 0
    assert "configs/test_integration.yaml::test_integration" in listing.stdout
    assert "configs/sub/other.yaml::other" in listing.stdout
    assert "est=1m" in listing.stdout


def test_validate_setup_reports_bad_configs(seed: Project) -> None:
    seed.config("broken.yaml", "tool: hydra-test-tool\nexperiment: [not, a, name]\n")
    proc = _script(seed, "validate_setup.py")
    assert proc.returncode == 1
    assert "configs/broken.yaml:2: experiment name" in proc.stdout
    assert "2 valid config(s), 1 invalid config(s)" in proc.stdout


def test_validate_setup_tool(seed: Project) -> None:
    proc = _script(seed, "validate_setup.py", "--tool", "hydra-test-tool")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hydra-core 1.3.8" in proc.stdout
    unknown = _script(seed, "validate_setup.py", "--tool", "nope")
    assert unknown.returncode == 1
    assert "Tool not found in meta config: 'nope'" in unknown.stderr


def test_validate_setup_tool_builds_a_uv_env(project: Project) -> None:
    project.tool("uvtool")
    proc = _script(project, "validate_setup.py", "--tool", "uvtool")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project.root / "tools" / "uvtool" / ".venv" / "bin" / "python").exists()
    assert "hydra-core 1.3.8" in proc.stdout
