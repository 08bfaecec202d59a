"""The ``xstash:`` block of an experiment: what xstash itself does with the experiment (its
metrics file and expectations, sweep, timeout, inputs, launcher and resources, and the keys it
adds to the tool's config on purpose). Never part of the tool's config.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from xstash_plugin.config.durations import DURATION_HELP, parse_duration
from xstash_plugin.config.expectations import Expectation, parse_expectations
from xstash_plugin.config.needs import Need, check_needs
from xstash_plugin.config.overrides import override_value
from xstash_plugin.config.resources import ResourceError, check_launcher, check_resources
from xstash_plugin.config.seeds import (
    Seeding,
    check_direction,
    check_min_effect,
    check_seeding,
)
from xstash_plugin.config.suggest import did_you_mean
from xstash_plugin.config.sweeps import Point, parse_sweep
from xstash_plugin.config.text import quote
from xstash_plugin.config.yamlio import YamlDoc
from xstash_plugin.errors import ConfigError

# Keys of the `xstash:` block this version implements, with their meaning (for hints).
XSTASH_KEYS: dict[str, str] = {
    "metrics": "file in the run directory the tool writes its metrics to (default metrics.json)",
    "expect": "metric name -> expectation ('>= 0.9', {ref: 0.31, tol: 0.05}, ...)",
    "sweep": "a grid {key: [values]} or a list of points [{key: value}]: one test per point",
    "timeout": "a duration ('90s', '2h'): then the tool's process tree is killed",
    "inputs": "files or folders (relative to the repository) whose contents decide the result",
    "launcher": "'local' or 'slurm' (default: the tool's launcher in meta.yaml, else local)",
    "resources": "SLURM resources: {partition, time, cpus, gpus, mem, nodes, account, ...}",
    "new_keys": "keys this experiment adds to the tool's config on purpose, e.g. [model.dropout]",
    "seeds": "a count (5: seeds 0..4) or a list of seeds: each point runs once per seed",
    "seed_key": "the override key the seed reaches the tool as (default seed)",
    "ci": "how the seeds' confidence interval is computed: t (default) or bootstrap",
    "direction": "which way each metric is better, e.g. {accuracy: max, loss: min}",
    "min_effect": "the smallest change a baseline comparison counts, e.g. {accuracy: 0.005}",
    "needs": "upstream experiments whose output this one uses: {name: configs/path.yaml}",
}
NEW_KEY = re.compile(r"[A-Za-z0-9_][\w-]*(\.[A-Za-z0-9_][\w-]*)*")


@dataclass(frozen=True, kw_only=True)
class XstashSettings:
    """What the ``xstash:`` block says, checked (defaults where it says nothing); every
    :class:`~xstash_plugin.config.experiment.Experiment` has these fields."""

    metrics_file: str | None = None  # declared in xstash.metrics (then it must exist)
    expectations: tuple[Expectation, ...] = ()
    points: tuple[Point, ...] = ()  # sweep points; empty: a single run
    timeout: float | None = None  # xstash.timeout, seconds
    inputs: tuple[str, ...] = ()  # xstash.inputs, relative to the repository
    launcher: str | None = None  # xstash.launcher
    resources: dict[str, Any] = field(default_factory=dict)  # xstash.resources
    resources_line: int | None = None  # where xstash.resources is (for the machine's limits)
    new_keys: tuple[str, ...] = ()  # xstash.new_keys: keys added to the tool's config on purpose
    # xstash.seeds: then `points` holds every (point, seed) run, and this the sweep's points
    seeding: Seeding | None = None
    direction: tuple[tuple[str, str], ...] = ()  # xstash.direction: metric -> max | min
    min_effect: tuple[tuple[str, float], ...] = ()  # xstash.min_effect (baseline comparison)
    needs: tuple[Need, ...] = ()  # xstash.needs: upstream experiments (config/needs.py)

    def fields(self) -> dict[str, Any]:
        """These settings by name (an Experiment is made with them)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(XstashSettings)}


def check_xstash(
    doc: YamlDoc, data: dict[str, Any], repo_root: Path, errors: list[ConfigError]
) -> XstashSettings:
    """The experiment's ``xstash:`` block; every problem found is added to ``errors``."""
    block = data.get("xstash")
    metrics_file, expectations, points, timeout = _check_xstash_block(doc, block, errors)
    inputs = _check_inputs(doc, block, repo_root, errors)
    launcher, resources = _check_launch(doc, block, errors)
    new_keys = _check_new_keys(doc, block, errors)
    seeding = check_seeding(doc, block, points, expectations, errors)
    return XstashSettings(
        metrics_file=metrics_file,
        expectations=expectations,
        points=points if seeding is None else seeding.points(),
        timeout=timeout,
        inputs=inputs,
        launcher=launcher,
        resources=resources,
        resources_line=doc.line("xstash", "resources") if resources else None,
        new_keys=new_keys,
        seeding=seeding,
        direction=check_direction(doc, block, errors),
        min_effect=check_min_effect(doc, block, errors),
        needs=check_needs(doc, block, repo_root, errors),
    )


def _check_metrics_file(doc: YamlDoc, value: Any, errors: list[ConfigError]) -> str | None:
    line = doc.line("xstash", "metrics")
    fix = "give a path relative to the run directory ending in .json, .yaml or .yml"
    if not isinstance(value, str) or not value.strip():
        errors.append(ConfigError(doc.path, line, "'xstash.metrics' must be a file name", fix))
        return None
    rel = PurePosixPath(value)
    if rel.is_absolute() or ".." in rel.parts:
        errors.append(
            ConfigError(doc.path, line, f"metrics file {value!r} is outside the run directory", fix)
        )
        return None
    if rel.suffix not in (".json", ".yaml", ".yml"):
        errors.append(
            ConfigError(doc.path, line, f"metrics file {value!r} is not JSON or YAML", fix)
        )
        return None
    return value


def _check_points(doc: YamlDoc, block: Any, errors: list[ConfigError]) -> tuple[Point, ...]:
    points, problems = parse_sweep(block, doc)
    errors.extend(problems)
    for point in points:
        for key, value in point:
            try:
                override_value(value)
            except ValueError as exc:
                errors.append(
                    ConfigError(
                        doc.path,
                        doc.line("xstash", "sweep", key),
                        f"sweep value of '{key}': {exc}",
                        "use plain names as mapping keys in swept values",
                    )
                )
                return ()
    return tuple(points)


def _check_xstash_block(
    doc: YamlDoc, block: Any, errors: list[ConfigError]
) -> tuple[str | None, tuple[Expectation, ...], tuple[Point, ...], float | None]:
    timeout: float | None = None
    metrics_file: str | None = None
    expectations: tuple[Expectation, ...] = ()
    points: tuple[Point, ...] = ()
    if block is None:
        return metrics_file, expectations, points, timeout
    if not isinstance(block, dict):
        errors.append(
            ConfigError(
                doc.path,
                doc.line("xstash"),
                "'xstash' must be a mapping",
                "write: xstash: {key: value}",
            )
        )
        return metrics_file, expectations, points, timeout
    for key in map(str, block):
        if key == "metrics":
            metrics_file = _check_metrics_file(doc, block[key], errors)
            continue
        if key == "sweep":
            points = _check_points(doc, block[key], errors)
            continue
        if key in ("inputs", "launcher", "resources", "new_keys"):
            continue  # checked by _check_inputs, _check_launch and _check_new_keys
        if key in ("seeds", "seed_key", "ci", "direction", "min_effect"):
            continue  # checked by config/seeds.py
        if key == "needs":
            continue  # checked by config/needs.py
        if key == "timeout":
            try:
                timeout = parse_duration(block[key])
                if timeout <= 0:
                    raise ValueError(f"{block[key]!r} is not positive")
            except ValueError as exc:
                errors.append(
                    ConfigError(
                        doc.path,
                        doc.line("xstash", key),
                        f"xstash.timeout: {exc}",
                        f"write {DURATION_HELP}, e.g. timeout: 2h",
                    )
                )
            continue
        if key == "expect":
            found, problems = parse_expectations(block[key], doc)
            expectations = tuple(found)
            errors.extend(problems)
            continue
        errors.append(
            ConfigError(
                doc.path,
                doc.line("xstash", key),
                f"unknown key 'xstash.{key}'.{did_you_mean(key, XSTASH_KEYS)}",
                "supported keys: " + (", ".join(XSTASH_KEYS) or "(none)"),
            )
        )
    return metrics_file, expectations, points, timeout


def _check_launch(
    doc: YamlDoc, block: Any, errors: list[ConfigError]
) -> tuple[str | None, dict[str, Any]]:
    if not isinstance(block, dict):
        return None, {}
    launcher: str | None = None
    resources: dict[str, Any] = {}
    if "launcher" in block:
        try:
            launcher = check_launcher(block["launcher"])
        except ValueError as exc:
            errors.append(
                ConfigError(
                    doc.path,
                    doc.line("xstash", "launcher"),
                    str(exc),
                    "write launcher: local or launcher: slurm",
                )
            )
    if "resources" in block:
        try:
            resources = check_resources(block["resources"])
        except ResourceError as exc:
            where = ("xstash", "resources", exc.key) if exc.key else ("xstash", "resources")
            line = doc.line(*where)
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"xstash.resources: {exc}",
                    "e.g. resources: {partition: gpu, time: 2h, cpus: 4, gpus: 1, mem: 16G}",
                )
            )
    return launcher, resources


def _xstash_list(
    doc: YamlDoc, block: Any, key: str, what: str, fix: str, errors: list[ConfigError]
) -> list[Any]:
    """``xstash.<key>`` as a list (one string is a list of one); empty when absent or wrong."""
    if not isinstance(block, dict) or key not in block:
        return []
    raw = block[key]
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        return raw
    errors.append(
        ConfigError(
            doc.path, doc.line("xstash", key), f"'xstash.{key}' must be a list of {what}", fix
        )
    )
    return []


def _check_inputs(
    doc: YamlDoc, block: Any, repo_root: Path, errors: list[ConfigError]
) -> tuple[str, ...]:
    fix = "list paths relative to the repository, e.g. inputs: [data/train.csv, data/images]"
    raw = _xstash_list(doc, block, "inputs", "paths", fix, errors)
    found: list[str] = []
    root = repo_root.resolve()
    for index, item in enumerate(raw):
        line = doc.line("xstash", "inputs", str(index))
        if not isinstance(item, str) or not item.strip():
            errors.append(ConfigError(doc.path, line, f"input {item!r} is not a path", fix))
            continue
        path = (repo_root / item).resolve()
        if PurePosixPath(item).is_absolute() or (path != root and root not in path.parents):
            errors.append(
                ConfigError(
                    doc.path, line, f"input '{item}' is outside the repository {repo_root}", fix
                )
            )
            continue
        if not path.exists():
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"input '{item}' does not exist ({path})",
                    "create it, or correct the path (relative to the folder holding configs/)",
                )
            )
            continue
        found.append(item)
    return tuple(found)


def _check_new_keys(doc: YamlDoc, block: Any, errors: list[ConfigError]) -> tuple[str, ...]:
    fix = "list dotted keys of the tool's config, e.g. new_keys: [model.dropout, notes]"
    raw = _xstash_list(doc, block, "new_keys", "keys", fix, errors)
    found: list[str] = []
    for index, key in enumerate(raw):
        key = key.lstrip("+") if isinstance(key, str) else key
        if not isinstance(key, str) or not NEW_KEY.fullmatch(key):
            errors.append(
                ConfigError(
                    doc.path,
                    doc.line("xstash", "new_keys", str(index)),
                    f"new key {quote(key)} is not a dotted key",
                    fix,
                )
            )
            continue
        found.append(key)
    return tuple(found)
