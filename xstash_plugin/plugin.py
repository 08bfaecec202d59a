"""pytest hooks only: options, ini settings, collection of experiment YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest

from .items import ExperimentFile
from .registry import META_NAME
from .state import OUTPUT_ROOT_HELP, STATE_KEY, get_state, make_state

SUFFIXES = (".yaml", ".yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xstash", "xstash: experiment YAML files as tests")
    group.addoption(
        "--xstash-output-root",
        dest="xstash_output_root",
        default=None,
        metavar="DIR",
        help=OUTPUT_ROOT_HELP,
    )
    parser.addini("xstash_output_root", OUTPUT_ROOT_HELP, default="")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[STATE_KEY] = make_state(config)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(), "xstash-xdist")


class XdistHooks:
    """Registered only when pytest-xdist is active, so xstash never imports it."""

    @pytest.hookimpl
    def pytest_configure_node(self, node: object) -> None:
        config: pytest.Config = node.config  # type: ignore[attr-defined]
        node.workerinput["xstash_session_id"] = get_state(config).session_id  # type: ignore[attr-defined]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ExperimentFile | None:
    if file_path.suffix not in SUFFIXES or file_path.name == META_NAME:
        return None
    state = get_state(parent.config)
    root = state.configs_root(file_path.parent)
    if root is None:
        return None  # YAML outside any configs root is not an experiment
    if any(part.startswith("_") for part in file_path.relative_to(root).parts):
        return None  # shared Hydra fragments
    file: ExperimentFile = ExperimentFile.from_parent(parent, path=file_path, configs_root=root)
    return file
