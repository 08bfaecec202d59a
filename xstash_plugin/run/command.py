"""(split from command.py)"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.overrides import hydra_quote
from xstash_plugin.run.rundir import CONFIG_NAME


def build_argv(
    python: str,
    experiment: Experiment,
    config_dir: Path,
    run_dir: Path,
    overrides: Sequence[str] = (),
) -> tuple[str, ...]:
    """``<python> <entrypoint> --config-dir .. --config-name .. hydra.run.dir=.. <overrides>``."""
    searchpath = [f"file://{experiment.folder}"]
    hydra_block: Any = experiment.payload.get("hydra")
    if isinstance(hydra_block, dict) and isinstance(hydra_block.get("searchpath"), list):
        searchpath += [str(p) for p in hydra_block["searchpath"]]
    return (
        python,
        *experiment.tool.entrypoint,
        "--config-dir",
        str(config_dir),
        "--config-name",
        CONFIG_NAME,
        f"hydra.run.dir={hydra_quote(str(run_dir))}",
        f"hydra.job.name={experiment.name}",
        "hydra.searchpath=[" + ",".join(hydra_quote(p) for p in searchpath) + "]",
        *overrides,
    )
