"""Exactly what ran: the tool environment's resolved packages (``uv pip freeze``), kept once per
distinct environment under the output root and named by hash in every record; ``xstash env RUN_DIR``
prints them as a requirements.txt that rebuilds the environment; a dirty tool folder's
uncommitted diff saved with the run as ``tool.diff``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import METRICS_EXIT_TOOL, Project

from xstash_plugin.run.envs import find_uv, uv_environ

ENVIRONMENTS = Path("outputs") / ".xstash" / "environments"


def record_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "xstash.json").read_text())
    return data


def in_order(project: Project, config: str) -> list[Path]:
    """The run directories of ``configs/<config>``, by when each run started."""
    return sorted(project.run_dirs(config), key=lambda d: record_of(d)["started"])


def xstash_env(run_dir: Path) -> subprocess.CompletedProcess[str]:
    """``xstash env RUN_DIR`` (the CLI's entry point, as a module of this interpreter)."""
    return subprocess.run(
        [sys.executable, "-m", "xstash_plugin.cli", "env", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )


def uv(*args: str) -> str:
    proc = subprocess.run(
        [find_uv(), *args], capture_output=True, text=True, env=uv_environ(), check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def packages(python: Path | str) -> str:
    return uv("pip", "freeze", "--python", str(python))


def git(folder: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    proc = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, env=env, check=True
    )
    return proc.stdout


@pytest.mark.slow_integration
def test_xstash_env_rebuilds_the_same_environment(project: Project, tmp_path: Path) -> None:
    folder = project.tool("u", METRICS_EXIT_TOOL)  # a uv environment from its pyproject.toml
    for name in ("one", "two", "three"):
        project.config(f"{name}.yaml", f"tool: u\nexperiment: {name}\nmetrics: {{acc: 1}}\n")
    result = project.pytester.runpytest_subprocess("configs", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    records = [record_of(d) for name in ("one", "two", "three") for d in project.run_dirs(name)]
    hashes = {r["environment_hash"] for r in records}
    assert len(hashes) == 1, "one environment, whichever worker ran the experiment"
    (kept,) = (project.root / ENVIRONMENTS).iterdir()  # written once per distinct environment
    (digest,) = hashes
    assert kept.name == f"{digest}.txt"
    assert {r["environment_path"] for r in records} == {str(kept)}
    built = packages(folder / ".venv" / "bin" / "python")
    assert "hydra-core==1.3.8" in built
    assert kept.read_text().endswith(built)

    printed = xstash_env(project.run_dirs("two")[0])
    assert printed.returncode == 0, printed.stderr
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(printed.stdout)
    fresh = tmp_path / "fresh"
    uv("venv", "--python", sys.executable, str(fresh))
    uv("pip", "install", "--python", str(fresh / "bin" / "python"), "-r", str(requirements))
    assert packages(fresh / "bin" / "python") == built


@pytest.mark.slow_integration
def test_a_changed_environment_is_kept_beside_the_first(project: Project) -> None:
    folder = project.tool("u", METRICS_EXIT_TOOL)
    project.config("e.yaml", "tool: u\nexperiment: e\n")
    project.pytester.runpytest("configs", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"hydra-core', '"six==1.16.0", "hydra-core'))
    project.pytester.runpytest("configs", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    first, second = (record_of(d) for d in in_order(project, "e"))
    assert first["environment_hash"] != second["environment_hash"]
    assert len(list((project.root / ENVIRONMENTS).iterdir())) == 2
    old, new = (xstash_env(d).stdout for d in in_order(project, "e"))
    assert "six==1.16.0" in new and "six" not in old
    assert "hydra-core==1.3.8" in old


def test_interpreters_xstash_does_not_build_are_recorded_too(
    project: Project, hydra_python: str
) -> None:
    project.tool("t", METRICS_EXIT_TOOL, env=hydra_python, deps=None)
    project.config("p.yaml", "tool: t\nexperiment: p\n")
    project.pytester.runpytest("configs", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    (run_dir,) = project.run_dirs("p")
    printed = xstash_env(run_dir)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.endswith(packages(hydra_python))
    version = ".".join(map(str, sys.version_info[:3]))  # hydra_python is a venv of this Python
    assert f"# python {version}\n" in printed.stdout
    assert record_of(run_dir)["environment_hash"] in printed.stdout.splitlines()[0]


def test_xstash_env_says_what_is_missing(project: Project, hydra_python: str) -> None:
    empty = project.root / "empty"
    empty.mkdir()
    printed = xstash_env(empty)
    assert printed.returncode == 1
    assert "holds no run record (xstash.json)" in printed.stderr
    assert printed.stdout == ""

    project.tool("t", METRICS_EXIT_TOOL, env=hydra_python, deps=None)
    project.config("p.yaml", "tool: t\nexperiment: p\n")
    project.pytester.runpytest("configs", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    (run_dir,) = project.run_dirs("p")
    (kept,) = (project.root / ENVIRONMENTS).iterdir()
    kept.unlink()
    printed = xstash_env(run_dir)
    assert printed.returncode == 1
    assert f"environment {kept.stem} of the run in {run_dir} is not in" in printed.stderr

    record = record_of(run_dir)
    del record["environment_hash"], record["environment_path"]
    (run_dir / "xstash.json").write_text(json.dumps(record))
    printed = xstash_env(run_dir)
    assert printed.returncode == 1
    assert "names no environment" in printed.stderr


def test_xstash_env_finds_a_moved_output_root(project: Project, hydra_python: str) -> None:
    project.tool("t", METRICS_EXIT_TOOL, env=hydra_python, deps=None)
    project.config("p.yaml", "tool: t\nexperiment: p\n")
    project.pytester.runpytest("configs", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    (run_dir,) = project.run_dirs("p")
    moved = project.root / "archive"
    (project.root / "outputs").rename(moved)
    printed = xstash_env(moved / run_dir.relative_to(project.root / "outputs"))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.endswith(packages(hydra_python))


def test_the_uncommitted_diff_of_a_dirty_tool_is_saved(project: Project, hydra_python: str) -> None:
    folder = project.tool("t", METRICS_EXIT_TOOL, env=hydra_python, deps=None)
    project.config("p.yaml", "tool: t\nexperiment: p\n")
    project.write(".gitignore", "outputs/\n")
    git(project.root, "init", "-q")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "init")
    args = ("configs", "-p", "no:cacheprovider")
    project.pytester.runpytest(*args).assert_outcomes(passed=1)  # clean: no diff
    (project.root / "notes.txt").write_text("outside the tool folder\n")
    (folder / "scratch.txt").write_text("untracked: not in git diff\n")
    project.pytester.runpytest(*args).assert_outcomes(passed=1)  # dirty, but no tracked change
    main = folder / "src" / "main.py"
    main.write_text(main.read_text().replace("tool done", "tool finished"))
    project.pytester.runpytest(*args).assert_outcomes(passed=1)
    clean, untracked, dirty = in_order(project, "p")
    assert record_of(clean)["git"]["dirty"] is False
    assert record_of(untracked)["git"]["dirty"] is True
    for run_dir in (clean, untracked):
        assert "tool_diff" not in record_of(run_dir)
        assert not (run_dir / "tool.diff").exists()
    assert record_of(dirty)["tool_diff"] == "tool.diff"
    diff = (dirty / "tool.diff").read_text()
    assert '-    print("tool done", flush=True)' in diff
    assert '+    print("tool finished", flush=True)' in diff
    assert "scratch.txt" not in diff and "notes.txt" not in diff
    # It is a patch: on a clean checkout it brings the change back.
    git(project.root, "checkout", "--", "tools")
    assert "tool done" in main.read_text()
    git(project.root, "apply", str(dirty / "tool.diff"))
    assert "tool finished" in main.read_text()


def test_a_huge_diff_is_cut(project: Project, hydra_python: str) -> None:
    folder = project.tool("t", METRICS_EXIT_TOOL, env=hydra_python, deps=None)
    project.config("p.yaml", "tool: t\nexperiment: p\n")
    (folder / "data.txt").write_text("x\n")
    git(project.root, "init", "-q")
    git(project.root, "add", "tools")
    git(project.root, "commit", "-qm", "init")
    (folder / "data.txt").write_text(
        "".join(f"line {i:07d} of a big change\n" for i in range(60_000))
    )
    project.pytester.runpytest("configs", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    (run_dir,) = project.run_dirs("p")
    diff = (run_dir / "tool.diff").read_text()
    assert 1_000_000 < len(diff.encode()) <= (1 << 20) + 1000
    assert diff.endswith("# xstash: cut here, the diff is longer than 1,048,576 bytes\n")
    assert diff.splitlines()[-2].startswith("+line ")  # cut at a line's end
