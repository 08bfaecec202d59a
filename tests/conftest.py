"""Shared fixtures for xstash's own tests: build small repositories (configs + tools) in pytester.

Tools here are real Hydra applications in real uv environments unless a test is about the
orchestrator's own reaction to a misbehaving tool (then a small plain script is enough).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import COLORLOG_PIN, HYDRA_PIN, Project

from xstash_plugin.run.envs import find_uv, uv_environ

pytest_plugins = ["pytester"]

# pytester points HOME at a temporary folder; keep uv's package cache where it really is so
# building a tool environment stays a local copy instead of a download.
os.environ.setdefault("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv"))


@pytest.fixture(scope="session")
def hydra_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A python with hydra-core and hydra-colorlog, made once per test session (for tools using
    ``env: <path>``); bytecode is compiled, so imports stay fast under PYTHONDONTWRITEBYTECODE."""
    venv = tmp_path_factory.mktemp("hydra-env") / ".venv"
    uv = find_uv()
    env = uv_environ()
    subprocess.run(
        [uv, "venv", "--python", sys.executable, str(venv)],
        check=True,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--compile-bytecode",
            "--python",
            str(venv / "bin" / "python"),
            HYDRA_PIN,
            COLORLOG_PIN,
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    return str(venv / "bin" / "python")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules that set ``BOTH_LAUNCH_MODES = True`` run each test twice: tools started
    plainly, and tools forked from a preload server (``preload: true``): everything observable
    must be the same."""
    if getattr(metafunc.module, "BOTH_LAUNCH_MODES", False) and "project" in metafunc.fixturenames:
        metafunc.parametrize("launch_mode", ["plain", "preload"], indirect=True)


@pytest.fixture
def launch_mode(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "plain"))


@pytest.fixture
def project(pytester: pytest.Pytester, launch_mode: str) -> Iterator[Project]:
    yield Project(pytester, preload=launch_mode == "preload")


SKIP_IN_RECORD_SCAN = {".venv", ".xstash", ".git", "node_modules", "__pycache__"}


@pytest.fixture(autouse=True)
def records_match_their_schema(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every run record a test's pytester repository ends up with validates against the JSON
    Schema shipped in the package (xstash_plugin/run/record.schema.json)."""
    if "pytester" not in request.fixturenames:
        yield
        return
    root = request.getfixturevalue("pytester").path  # (set up now: torn down after this)
    yield
    import jsonschema

    from xstash_plugin.run.record import SCHEMA_PATH

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_IN_RECORD_SCAN]
        if "xstash.json" in files:
            path = Path(folder) / "xstash.json"
            try:
                data = json.loads(path.read_text())
            except ValueError:
                continue  # a test that writes a broken record on purpose
            if not isinstance(data, dict):
                continue  # (another kind of broken record, planted on purpose)
            errors = sorted(validator.iter_errors(data), key=str)
            assert not errors, f"{path} does not match the record schema: {errors[0].message}"
