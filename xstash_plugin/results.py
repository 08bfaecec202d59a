"""Metrics a tool writes, and the expectations a config holds them to.

A tool reports results by writing a JSON (or YAML) file into its run directory; no xstash import
is needed. ``xstash.expect`` turns a paper's table into assertions: comparisons (``">= 0.9"``), a
reference with an absolute or relative tolerance, or ReFrame-style bounds around a reference.
Every expectation is checked and reported, not only the first that fails.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .yamlio import YamlDoc, load_yaml_file

DEFAULT_METRICS = "metrics.json"
_OPS = (">=", "<=", "==", "!=", ">", "<")
_COMPARISON = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*$")
EXPECT_HELP = (
    "write a comparison ('>= 0.9', '< 0.5', '== 3', '!= 0'), {ref: 0.31, tol: 0.05}, "
    "{ref: 0.31, rel: 0.1}, or {ref: 100, lower: -0.1, upper: 0.3}"
)


class MetricsError(Exception):
    """The metrics file is missing or cannot be read."""


@dataclass(frozen=True)
class Expectation:
    """One metric's expectation; ``kind`` is 'cmp', 'tol', 'rel' or 'bounds'."""

    metric: str
    kind: str
    op: str = ""
    value: float = 0.0
    ref: float = 0.0
    lower: float | None = None
    upper: float | None = None

    def describe(self) -> str:
        if self.kind == "cmp":
            return f"{self.op} {_num(self.value)}"
        if self.kind == "tol":
            return f"{_num(self.ref)} ± {_num(self.value)}"
        if self.kind == "rel":
            return f"{_num(self.ref)} ± {_num(self.value * 100)}%"
        low, high = self.interval()
        return f"[{_num(low)}, {_num(high)}] (ref {_num(self.ref)})"

    def interval(self) -> tuple[float, float]:
        """The closed interval of accepted values for the tolerance kinds."""
        if self.kind == "tol":
            return self.ref - self.value, self.ref + self.value
        if self.kind == "rel":
            spread = abs(self.ref) * self.value
            return self.ref - spread, self.ref + spread
        low = -math.inf if self.lower is None else self.ref + self.lower * abs(self.ref)
        high = math.inf if self.upper is None else self.ref + self.upper * abs(self.ref)
        return low, high

    def holds(self, measured: float) -> bool:
        if math.isnan(measured):
            return self.kind == "cmp" and self.op == "!="
        if self.kind == "cmp":
            return {
                ">=": measured >= self.value,
                "<=": measured <= self.value,
                ">": measured > self.value,
                "<": measured < self.value,
                "==": measured == self.value,
                "!=": measured != self.value,
            }[self.op]
        low, high = self.interval()
        return low <= measured <= high


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def parse_expectation(metric: str, spec: Any, doc: YamlDoc, keys: tuple[str, ...]) -> Expectation:
    """One entry of ``xstash.expect``; raises :class:`ConfigError` with the line."""

    def bad(what: str) -> ConfigError:
        return ConfigError(
            doc.path, doc.line(*keys), f"expectation for '{metric}': {what}", EXPECT_HELP
        )

    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Expectation(metric, "cmp", op="==", value=float(spec))
    if isinstance(spec, str):
        match = _COMPARISON.match(spec)
        if match is None:
            raise bad(f"{spec!r} is not a comparison (operators: {', '.join(_OPS)})")
        value = _number(match.group(2))
        if value is None:
            raise bad(f"{match.group(2)!r} in {spec!r} is not a number")
        return Expectation(metric, "cmp", op=match.group(1), value=value)
    if not isinstance(spec, dict):
        raise bad(f"{spec!r} is neither a comparison nor a mapping")
    unknown = sorted(set(map(str, spec)) - {"ref", "tol", "rel", "lower", "upper"})
    if unknown:
        raise bad(f"unknown key '{unknown[0]}' (allowed: ref, tol, rel, lower, upper)")
    if "ref" not in spec:
        raise bad("a mapping needs 'ref', the reference value")
    numbers: dict[str, float | None] = {}
    for key, raw in spec.items():
        number = _number(raw)
        if number is None and not (key in ("lower", "upper") and raw is None):
            raise bad(f"'{key}' must be a number, not {raw!r}")
        numbers[str(key)] = number
    ref = numbers["ref"]
    assert ref is not None
    given = [k for k in ("tol", "rel") if k in spec]
    bounds = [k for k in ("lower", "upper") if k in spec]
    if len(given) == 2:
        raise bad("give 'tol' (absolute) or 'rel' (relative), not both")
    if given and bounds:
        raise bad(f"give '{given[0]}' or lower/upper bounds, not both")
    if given:
        amount = numbers[given[0]]
        assert amount is not None
        if amount < 0:
            raise bad(f"'{given[0]}' must not be negative")
        return Expectation(metric, given[0], value=amount, ref=ref)
    if not bounds:
        raise bad("give a tolerance: 'tol', 'rel', or 'lower'/'upper' bounds")
    lower, upper = numbers.get("lower"), numbers.get("upper")
    if lower is not None and lower > 0:
        raise bad(f"'lower' is a fraction below ref and must be <= 0, not {lower}")
    if upper is not None and upper < 0:
        raise bad(f"'upper' is a fraction above ref and must be >= 0, not {upper}")
    return Expectation(metric, "bounds", ref=ref, lower=lower, upper=upper)


def parse_expectations(block: Any, doc: YamlDoc) -> tuple[list[Expectation], list[ConfigError]]:
    """All of ``xstash.expect``, with every problem found."""
    if not isinstance(block, dict) or not block:
        return [], [
            ConfigError(
                doc.path,
                doc.line("xstash", "expect"),
                "'xstash.expect' must be a mapping of metric name to expectation",
                "write: expect: {accuracy: '>= 0.9', loss: {ref: 0.31, tol: 0.05}}",
            )
        ]
    found, errors = [], []
    for metric, spec in block.items():
        try:
            found.append(
                parse_expectation(str(metric), spec, doc, ("xstash", "expect", str(metric)))
            )
        except ConfigError as exc:
            errors.append(exc)
    return found, errors


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
    except (OSError, ValueError, ConfigError) as exc:
        raise MetricsError(f"metrics file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise MetricsError(f"metrics file {path} must hold a mapping of name to value")
    return data


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "expected": self.expected,
            "measured": self.measured,
            "ok": self.ok,
            "note": self.note,
        }


def judge(expectations: list[Expectation], metrics: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for exp in expectations:
        present, value = lookup(metrics, exp.metric)
        if not present:
            verdicts.append(Verdict(exp.metric, exp.describe(), None, False, "missing"))
            continue
        number = _number(value) if not isinstance(value, str) else None
        if number is None:
            verdicts.append(Verdict(exp.metric, exp.describe(), value, False, "not a number"))
            continue
        verdicts.append(Verdict(exp.metric, exp.describe(), value, exp.holds(number)))
    return verdicts


def verdict_table(verdicts: list[Verdict]) -> str:
    rows = [("metric", "expected", "measured", "verdict")]
    for v in verdicts:
        measured = (
            "-"
            if v.measured is None
            else (_num(v.measured) if isinstance(v.measured, float) else str(v.measured))
        )
        rows.append(
            (
                v.metric,
                v.expected,
                measured,
                "ok" if v.ok else f"FAIL ({v.note})" if v.note else "FAIL",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
