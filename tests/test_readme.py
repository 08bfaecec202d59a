"""The README's commands run as written.

The first shell block (install, then run) runs in a fresh venv made from a copy of the
repository; the tag-selection examples (``pytest ... -m "..."``) are collected in the repository
under ``--strict-markers``; every path and config name the README's commands give exists.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

# What a fresh clone of the repository holds (as .gitignore says): no environments, outputs,
# caches, build products or lock files.
IGNORED_ANYWHERE = (
    ".git",
    ".venv",
    ".venv-*",
    "outputs",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "*.egg-info",
    "build",
    "dist",
    "uv.lock",
    "pylock*.toml",
    "poetry.lock",
    "Pipfile.lock",
)
IGNORED_AT_ROOT = ("*.xml", "results.*")


def shell_blocks(text: str) -> list[str]:
    """The bodies of the fenced ``bash``/``sh`` blocks, in order."""
    return re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, re.M | re.S)


def command_lines(block: str) -> list[str]:
    return [line.strip() for line in block.splitlines() if line.strip()]


def readme_commands() -> list[list[str]]:
    """Every command of every shell block as argv (comments dropped; ``a && b`` is two)."""
    found = []
    for block in shell_blocks(README):
        for line in command_lines(block):
            for part in line.split("&&"):
                argv = shlex.split(part, comments=True)
                if argv:
                    found.append(argv)
    return found


def is_placeholder(word: str) -> bool:
    """A name the reader fills in (``<tool>``) or a file of their own (``my_experiment``)."""
    return "<" in word or "my_" in word or "my-" in word


TAG_SELECTIONS = [argv for argv in readme_commands() if argv[0] == "pytest" and "-m" in argv[1:]]


def clean_environ() -> dict[str, str]:
    """This process's environment without what pytest, xdist or this venv put there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    return env


def test_readme_has_a_tag_selection_example() -> None:
    assert TAG_SELECTIONS, "no `pytest ... -m` command in README.md's shell blocks"


@pytest.mark.parametrize("argv", TAG_SELECTIONS, ids=shlex.join)
def test_tag_selection_is_accepted_under_strict_markers(argv: list[str], tmp_path: Path) -> None:
    """pytest refuses a `-m` expression naming an unregistered marker under --strict-markers
    (pyproject's addopts); xstash registers the tags of the configs it collects."""
    command = [
        sys.executable,
        "-m",
        *argv,
        "--strict-markers",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "--xstash-compose=off",  # markers do not depend on composing; no tool environment
        f"--xstash-output-root={tmp_path / 'outputs'}",
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=clean_environ(), capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Unknown marker" not in output, output
    counts = re.search(r"^(\d+)/(\d+) tests collected \((\d+) deselected\)", output, re.M)
    assert counts, output
    selected, _, deselected = (int(n) for n in counts.groups())
    assert selected > 0 and deselected > 0, output


def test_paths_and_configs_in_readme_commands_exist() -> None:
    tools = (ROOT / "configs" / "meta.yaml").read_text(encoding="utf-8")
    checked = 0
    for argv in readme_commands():
        if argv[0] == "pytest":
            for word in argv[1:]:
                if word.split("/")[0] in ("configs", "tests") and not is_placeholder(word):
                    assert (ROOT / word).exists(), f"{shlex.join(argv)}: no {word}"
                    checked += 1
        if argv[:2] == ["python3", "scripts/run_experiment"]:
            tool, config = argv[2:4]
            if is_placeholder(tool) or is_placeholder(config):
                continue
            path = ROOT / "configs" / f"{config}.yaml"
            assert path.is_file(), f"{shlex.join(argv)}: no {path}"
            assert f"\n  {tool}:" in tools, f"{shlex.join(argv)}: no tool {tool}"
            assert re.search(rf"^tool: {re.escape(tool)}$", path.read_text(), re.M)
            checked += 1
    assert checked >= 10, checked


@pytest.mark.parametrize("doc", ["README.md", "BENCHMARKS.md"])
def test_files_the_docs_name_exist(doc: str) -> None:
    """Every file or folder of the repository's code the docs name in `backticks` is there
    (config paths in the prose are often examples of a reader's own, so they are left out)."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    named = re.findall(r"`((?:xstash_plugin|tests|bench|scripts|tools|\.ci)/[^`\s:]*)`", text)
    assert named
    missing = [path for path in named if not is_placeholder(path) and not (ROOT / path).exists()]
    assert not missing, f"{doc} names files that do not exist: {missing}"


def ignore_as_git_does(folder: str, names: list[str]) -> set[str]:
    patterns = IGNORED_ANYWHERE + (IGNORED_AT_ROOT if Path(folder) == ROOT else ())
    return {name for name in names if any(Path(name).match(p) for p in patterns)}


@pytest.mark.slow_integration
def test_first_shell_block_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    """Each line of the README's first shell block, as written, in a new venv over a copy of
    the repository. The plugin's own suite (`pytest tests ...`, which holds this test) is only
    collected there (`--collect-only` added): running it is what CI does with the same line."""
    lines = command_lines(shell_blocks(README)[0])
    assert lines and lines[0].startswith("pip install -e . && pytest configs"), lines
    expected = re.search(r"\*\*Expected output\*\*.*?\n```\n(.*?)```", README, re.S)
    assert expected, "README.md has no **Expected output** block"
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=ignore_as_git_does, symlinks=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = clean_environ()
    for index, line in enumerate(lines):
        suite = re.search(r"\bpytest tests\b", line) is not None
        command = line + " --collect-only -q" if suite else line
        result = subprocess.run(
            ["bash", "-c", f"set -eo pipefail\n. '{venv}/bin/activate'\n{command}"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"line {index + 1} of the first block failed:\n{output}"
        if suite:
            assert re.search(r"^\d+ tests collected in ", result.stdout, re.M), output
        elif index == 0:
            assert re.search(r"^1 passed in ", result.stdout, re.M), output
            for shown in command_lines(expected.group(1)):
                assert shown in result.stdout, f"{shown!r} not in:\n{output}"
    assert (venv / "bin" / "pytest").exists()
