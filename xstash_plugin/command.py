"""The command line a run sends to a Hydra tool: argv only, never a shell."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .runs import CONFIG_NAME
from .spec import Experiment

_PLAIN = re.compile(r"[A-Za-z0-9_/.\-+:@%~]+")


def hydra_quote(value: str) -> str:
    """Quote ``value`` for Hydra's override grammar so it arrives as exactly this string.

    Inside a quoted string Hydra unescapes only backslashes that precede the closing quote or
    a quote character; everything else (``,``, ``=``, ``$``, brackets, spaces) is literal.
    """
    if _PLAIN.fullmatch(value):
        return value
    out: list[str] = []
    backslashes = 0
    for char in value:
        if char == "\\":
            backslashes += 1
            continue
        if char == "'":
            out.append("\\" * (2 * backslashes) + "\\'")
        else:
            out.append("\\" * backslashes + char)
        backslashes = 0
    out.append("\\" * (2 * backslashes))  # backslashes before the closing quote
    return "'" + "".join(out) + "'"


def build_argv(
    python: str, experiment: Experiment, config_dir: Path, run_dir: Path
) -> tuple[str, ...]:
    """``<python> <entrypoint> --config-dir ... --config-name ... hydra.run.dir=...``."""
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
    )
