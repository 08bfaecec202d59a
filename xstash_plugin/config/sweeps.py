"""Sweeps: one config, many points, each point its own test item.

``xstash.sweep`` is a grid (``{params.lr: [0.1, 0.01], model: [small, big]}``: the cartesian
product, in the order written) or a list of explicit points (``[{params.lr: 0.1}, ...]``). Keys
are Hydra override keys: a dotted config key, a config group (``model: big`` picks the group's
option), or ``+key`` to add a key the config does not have. Values are YAML values and reach the
tool as exactly those values (see :func:`xstash_plugin.config.overrides.override_value`).
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import re
from typing import Any

from xstash_plugin.config.yamlio import YamlDoc
from xstash_plugin.errors import ConfigError

Point = tuple[tuple[str, Any], ...]

OVERRIDE_KEY = re.compile(r"(\+\+|\+)?[A-Za-z_][\w-]*(?:[./][A-Za-z0-9_][\w-]*)*(?:@[\w./-]+)?")
KEY_HELP = (
    "a Hydra override key: a dotted config key (params.lr), a config group (model), "
    "or +key to add a key the config does not have"
)
SWEEP_HELP = (
    "write a grid, sweep: {params.lr: [0.1, 0.01], model: [small, big]}, or a list of points, "
    "sweep: [{params.lr: 0.1, model: small}, {params.lr: 0.01}]"
)
_ID_SAFE = re.compile(r"[^A-Za-z0-9_.+,=@%-]")
MAX_ID = 80


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _plain(value: Any) -> Any:
    """``value`` with YAML dates as their text: OmegaConf (so the tool) reads a date as a string,
    as it does in the config body (see :mod:`xstash_plugin.config.interpolations`)."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _check_key(doc: YamlDoc, key: Any, where: tuple[str, ...]) -> ConfigError | None:
    if not isinstance(key, str):
        return ConfigError(
            doc.path,
            doc.line(*where, str(key)),
            f"sweep key {key!r} is not a string",
            f"use {KEY_HELP}",
        )
    if not OVERRIDE_KEY.fullmatch(key):
        return ConfigError(
            doc.path,
            doc.line(*where, key),
            f"sweep key {key!r} is not a Hydra override key",
            f"use {KEY_HELP}",
        )
    return None


def parse_sweep(block: Any, doc: YamlDoc) -> tuple[list[Point], list[ConfigError]]:
    """The points of ``xstash.sweep`` in a stable order, with every problem found."""
    line = doc.line(*_WHERE)
    if isinstance(block, (dict, list)) and not block:
        return [], [ConfigError(doc.path, line, "the sweep is empty", SWEEP_HELP)]
    if isinstance(block, dict):
        return _grid(block, doc)
    if isinstance(block, list):
        return _point_list(block, doc)
    return [], [
        ConfigError(
            doc.path,
            line,
            f"'xstash.sweep' must be a mapping or a list, not {type(block).__name__}",
            SWEEP_HELP,
        )
    ]


_WHERE = ("xstash", "sweep")


def _grid(block: dict[Any, Any], doc: YamlDoc) -> tuple[list[Point], list[ConfigError]]:
    """The cartesian product of a grid's values, in the order written."""
    errors: list[ConfigError] = []
    axes: list[tuple[str, list[Any]]] = []
    for key, values in block.items():
        problem = _check_key(doc, key, _WHERE)
        if problem is not None:
            errors.append(problem)
            continue
        vline = doc.line(*_WHERE, key)
        if not isinstance(values, list):
            errors.append(
                ConfigError(
                    doc.path,
                    vline,
                    f"sweep values of '{key}' must be a list, not {values!r}",
                    f"write: {key}: [{values}]" if not isinstance(values, dict) else SWEEP_HELP,
                )
            )
            continue
        if not values:
            errors.append(
                ConfigError(
                    doc.path,
                    vline,
                    f"sweep values of '{key}' are empty",
                    "give at least one value",
                )
            )
            continue
        values = _plain(values)
        seen: dict[str, int] = {}
        for index, value in enumerate(values):
            canon = _canonical(value)
            if canon in seen:
                errors.append(
                    ConfigError(
                        doc.path,
                        doc.line(*_WHERE, key, str(index)),
                        f"sweep value {value!r} of '{key}' is listed twice "
                        f"(items {seen[canon] + 1} and {index + 1}): "
                        "it would run the same point twice",
                        "remove the duplicate",
                    )
                )
            seen.setdefault(canon, index)
        axes.append((key, values))
    if errors:
        return [], errors
    keys = [key for key, _ in axes]
    combos = itertools.product(*(values for _, values in axes))
    return [tuple(zip(keys, combo, strict=True)) for combo in combos], []


def _point_list(block: list[Any], doc: YamlDoc) -> tuple[list[Point], list[ConfigError]]:
    """A list of explicit points, each once."""
    errors: list[ConfigError] = []
    points: list[Point] = []
    seen_points: dict[str, int] = {}
    for index, point in enumerate(block):
        pline = doc.line(*_WHERE, str(index))
        if not isinstance(point, dict) or not point:
            errors.append(
                ConfigError(
                    doc.path,
                    pline,
                    f"sweep point {index + 1} must be a non-empty mapping of "
                    f"override key to value, not {point!r}",
                    SWEEP_HELP,
                )
            )
            continue
        bad = [p for p in (_check_key(doc, k, (*_WHERE, str(index))) for k in point) if p]
        if bad:
            errors.extend(bad)
            continue
        canon = _canonical(sorted(point.items(), key=lambda kv: str(kv[0])))
        if canon in seen_points:
            errors.append(
                ConfigError(
                    doc.path,
                    pline,
                    f"sweep point {index + 1} repeats point {seen_points[canon] + 1}",
                    "remove the duplicate point",
                )
            )
            continue
        seen_points[canon] = index
        points.append(tuple((key, _plain(value)) for key, value in point.items()))
    return (points, []) if not errors else ([], errors)


def _id_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if value else "''"
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def point_label(point: Point) -> str:
    """A readable, deterministic id part: ``params.lr=0.1-model=small``."""
    raw = "-".join(f"{key}={_id_value(value)}" for key, value in point)
    label = _ID_SAFE.sub("_", raw)
    if len(label) > MAX_ID:
        digest = hashlib.sha256(_canonical(point).encode()).hexdigest()[:8]
        label = f"{label[: MAX_ID - 9]}~{digest}"
    return label


def point_labels(points: list[Point]) -> list[str]:
    """Labels for all points, made unique (two values can sanitise to the same text)."""
    labels = [point_label(p) for p in points]
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    out = []
    for point, label in zip(points, labels, strict=True):
        if counts[label] > 1:
            label = f"{label}~{hashlib.sha256(_canonical(point).encode()).hexdigest()[:8]}"
        out.append(label)
    return out
