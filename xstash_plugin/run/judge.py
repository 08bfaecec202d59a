"""(split from results.py)"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstash_plugin.config.expectations import Expectation, as_number, number_text
from xstash_plugin.config.text import elide
from xstash_plugin.config.yamlio import load_yaml_file
from xstash_plugin.errors import ConfigError
from xstash_plugin.report.rows import text_table

DEFAULT_METRICS = "metrics.json"


# What a run's metrics may put into its record and every report (the file itself stays whole in
# the run directory): a tool that writes 500,000 values or a 50 MB string must not make the
# session's end quadratic or copy it into xstash.json, JUnit XML, the HTML page and the terminal.
MAX_METRICS = 1000  # values kept per run


MAX_METRIC_CHARS = 1000  # a longer value (as JSON) is elided


MAX_METRICS_DEPTH = 32  # nesting kept (deeper parts are elided)


MAX_INT_BITS = 1000  # ~300 digits: beyond, an integer is elided (and no float holds it)


# How xstash writes values that are no JSON numbers (records and reports are strict JSON).
NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class MetricsError(Exception):
    """The metrics file is missing or cannot be read."""


def read_metrics(path: Path) -> dict[str, Any]:
    """The metrics a tool wrote (JSON, or YAML by suffix); raises :class:`MetricsError`."""
    if not path.is_file():
        raise MetricsError(
            f"metrics file {path} does not exist: the tool must write it into its run "
            "directory (Hydra's output dir, HydraConfig.get().runtime.output_dir)"
        )
    try:
        if path.suffix in (".yaml", ".yml"):
            data = load_yaml_file(path).data
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise MetricsError(
            f"metrics file {path} is nested too deeply to be read: write a flat mapping of "
            "name to value (nested mappings of a few levels are fine)"
        ) from None
    except (OSError, ValueError, ConfigError) as exc:
        raise MetricsError(f"metrics file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise MetricsError(f"metrics file {path} must hold a mapping of name to value")
    return data


def safe_value(value: Any) -> Any:
    """``value`` as records and reports may hold it: strict JSON, bounded in size. A non-finite
    float becomes the string NaN/Infinity/-Infinity; an integer of more than ~300 digits or a
    value longer than MAX_METRIC_CHARS as JSON becomes an elided string."""
    if isinstance(value, float) and not math.isfinite(value):
        return NONFINITE[repr(value)]
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if value.bit_length() <= MAX_INT_BITS:
            return value
        return f"<an integer of {value.bit_length():,} bits>"
    if isinstance(value, str):
        return elide(value, MAX_METRIC_CHARS)
    text = json.dumps(value, default=str, allow_nan=True)
    return elide(text, MAX_METRIC_CHARS) if len(text) > MAX_METRIC_CHARS else _strict(value)


def _strict(value: Any) -> Any:
    """A small list or mapping with its non-finite floats written as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return NONFINITE[repr(value)]
    if isinstance(value, list):
        return [_strict(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    return value


def bounded(metrics: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """What a run's record and reports keep of its metrics, and why they differ from the file
    (None: they do not, apart from non-finite numbers written as strings). Nesting is kept;
    at most MAX_METRICS values, MAX_METRICS_DEPTH levels; long values elided. Iterative: no
    nesting can exhaust the stack."""
    kept: dict[str, Any] = {}
    count = 0
    dropped = 0
    deep = False
    stack: list[tuple[dict[str, Any], dict[str, Any], int]] = [(metrics, kept, 1)]
    while stack:
        source, target, depth = stack.pop()
        for key, value in source.items():
            if isinstance(value, dict) and value:
                if depth >= MAX_METRICS_DEPTH:
                    deep = True
                    target[str(key)] = f"<nested deeper than {MAX_METRICS_DEPTH} levels>"
                    continue
                child: dict[str, Any] = {}
                target[str(key)] = child
                stack.append((value, child, depth + 1))
                continue
            if count >= MAX_METRICS:
                dropped += 1
                continue
            count += 1
            target[str(key)] = safe_value(value)
    notes = []
    if dropped:
        notes.append(f"{count + dropped:,} values: the first {MAX_METRICS:,} are kept")
    if deep:
        notes.append(f"nested deeper than {MAX_METRICS_DEPTH} levels: the rest is elided")
    if not notes:
        return kept, None
    return kept, "; ".join(notes) + " in the record and reports; the file has them all"


def lookup(metrics: dict[str, Any], name: str) -> tuple[bool, Any]:
    """``metrics[name]``, where a dotted name may address nested mappings."""
    if name in metrics:
        return True, metrics[name]
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


@dataclass(frozen=True)
class Verdict:
    metric: str
    expected: str
    measured: Any
    ok: bool
    note: str = ""
    # The values the expectation allows (Expectation.bounds): reports draw them from this data,
    # never from the text in ``expected``.
    bounds: tuple[float | None, float | None] | None = None
    statistic: str | None = None  # judged on a statistic over seeds (run/aggregate.py)

    @property
    def label(self) -> str:
        """``accuracy``, or ``accuracy (mean)`` for a statistic over seeds."""
        return self.metric if self.statistic is None else f"{self.metric} ({self.statistic})"

    @classmethod
    def of(cls, exp: Expectation, measured: Any, ok: bool, note: str = "") -> Verdict:
        return cls(exp.metric, exp.describe(), measured, ok, note, exp.bounds())

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "expected": self.expected,
            "measured": self.measured,
            "ok": self.ok,
            "note": self.note,
            "bounds": None
            if self.bounds is None
            else {"low": self.bounds[0], "high": self.bounds[1]},
            **({} if self.statistic is None else {"statistic": self.statistic}),
        }


def judge(expectations: list[Expectation], metrics: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for exp in expectations:
        present, value = lookup(metrics, exp.metric)
        if not present:
            verdicts.append(Verdict.of(exp, None, False, "missing"))
            continue
        shown = safe_value(value)
        number = as_number(value) if not isinstance(value, str) else None
        if number is None:
            kind = {bool: "a boolean", str: "a string", type(None): "null"}.get(type(value))
            note = f"not a number: {kind}" if kind else "not a number"
            verdicts.append(Verdict.of(exp, shown, False, note))
            continue
        if not math.isfinite(number):  # NaN, Infinity, 1e400: no bound can hold them
            verdicts.append(Verdict.of(exp, shown, False, "not a finite number"))
            continue
        verdicts.append(Verdict.of(exp, shown, exp.holds(number)))
    return verdicts


def verdict_table(verdicts: list[Verdict]) -> str:
    body = []
    for v in verdicts:
        measured = (
            "-"
            if v.measured is None
            else (number_text(v.measured) if isinstance(v.measured, float) else str(v.measured))
        )
        verdict = "ok" if v.ok else f"FAIL ({v.note})" if v.note else "FAIL"
        body.append([v.label, v.expected, measured, verdict])
    return "\n".join(text_table(["metric", "expected", "measured", "verdict"], body))
