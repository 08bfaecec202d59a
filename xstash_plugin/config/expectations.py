"""Metrics a tool writes, and the expectations a config holds them to.

A tool reports results by writing a JSON (or YAML) file into its run directory; no xstash import
is needed. ``xstash.expect`` turns a paper's table into assertions: comparisons (``">= 0.9"``), a
reference with an absolute or relative tolerance, or ReFrame-style bounds around a reference.
Every expectation is checked and reported, not only the first that fails.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from xstash_plugin.config.suggest import did_you_mean
from xstash_plugin.config.yamlio import YamlDoc
from xstash_plugin.errors import ConfigError
from xstash_plugin.run.stats import STATISTICS

_OPS = (">=", "<=", "==", "!=", ">", "<")


_COMPARISON = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*$")


EXPECT_HELP = (
    "write a comparison ('>= 0.9', '< 0.5', '== 3', '!= 0'), {ref: 0.31, tol: 0.05}, "
    "{ref: 0.31, rel: 0.1}, or {ref: 100, lower: -0.1, upper: 0.3}"
)


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
    # A statistic over seeds ('mean', 'ci_low', ...; see xstash_plugin.run.stats): judged by
    # the aggregate item of a seeded experiment only. None: the metric of each run.
    statistic: str | None = None

    def describe(self) -> str:
        if self.kind == "cmp":
            return f"{self.op} {number_text(self.value)}"
        if self.kind == "tol":
            return f"{number_text(self.ref)} ± {number_text(self.value)}"
        if self.kind == "rel":
            return f"{number_text(self.ref)} ± {number_text(self.value * 100)}%"
        low, high = self.interval()
        return f"[{number_text(low)}, {number_text(high)}] (ref {number_text(self.ref)})"

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

    def bounds(self) -> tuple[float | None, float | None] | None:
        """The region of allowed values as data, for reports: ``(low, high)``, None on a side
        without bound (a strict comparison gives the region of its non-strict one). None when
        there is no region to draw: ``!=``, a NaN bound, or an empty one (``>= inf``)."""
        if self.kind != "cmp":
            low, high = self.interval()
        elif self.op in (">=", ">"):
            low, high = self.value, math.inf
        elif self.op in ("<=", "<"):
            low, high = -math.inf, self.value
        elif self.op == "==":
            low = high = self.value
        else:
            return None
        if math.isnan(low) or math.isnan(high) or low == math.inf or high == -math.inf:
            return None
        return (low if low > -math.inf else None, high if high < math.inf else None)

    def holds(self, measured: float) -> bool:
        if not math.isfinite(measured):
            return False  # judge() reports it as not a finite number
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


def number_text(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # an integer no float holds: beyond every finite bound
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return value
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
        value = as_number(match.group(2))
        if value is None:
            raise bad(f"{match.group(2)!r} in {spec!r} is not a number")
        return Expectation(metric, "cmp", op=match.group(1), value=value)
    if not isinstance(spec, dict):
        raise bad(f"{spec!r} is neither a comparison nor a mapping")
    unknown = sorted(set(map(str, spec)) - {"ref", "tol", "rel", "lower", "upper"})
    if unknown:
        hint = did_you_mean(unknown[0], ("ref", "tol", "rel", "lower", "upper", *STATISTICS))
        raise bad(
            f"unknown key '{unknown[0]}' (allowed: ref, tol, rel, lower, upper; or statistics "
            f"over seeds: {', '.join(STATISTICS)}).{hint}"
        )
    if "ref" not in spec:
        raise bad("a mapping needs 'ref', the reference value")
    numbers: dict[str, float | None] = {}
    for key, raw in spec.items():
        number = as_number(raw)
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
        where = ("xstash", "expect", str(metric))
        try:
            if isinstance(spec, dict) and set(map(str, spec)) & set(STATISTICS):
                found.extend(_statistics(str(metric), spec, doc, where))
            else:
                found.append(parse_expectation(str(metric), spec, doc, where))
        except ConfigError as exc:
            errors.append(exc)
    return found, errors


def _statistics(
    metric: str, spec: dict[Any, Any], doc: YamlDoc, where: tuple[str, ...]
) -> list[Expectation]:
    """``accuracy: {mean: '>= 0.9', std: '<= 0.02'}``: expectations on statistics over seeds."""
    found = []
    for statistic, inner in spec.items():
        name = str(statistic)
        if name not in STATISTICS:
            raise ConfigError(
                doc.path,
                doc.line(*where, name),
                f"expectation for '{metric}': unknown statistic '{name}'."
                + did_you_mean(name, STATISTICS),
                f"statistics over seeds: {', '.join(STATISTICS)}; e.g. {metric}: "
                "{mean: '>= 0.9', ci_low: '>= 0.85', std: '<= 0.02'}",
            )
        exp = parse_expectation(metric, inner, doc, (*where, name))
        found.append(dataclasses.replace(exp, statistic=name))
    return found
