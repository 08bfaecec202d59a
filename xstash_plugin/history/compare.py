"""Is a metric better, the same, or worse than its baseline? Verdicts that know the noise.

Each metric of a run (or of a seeded point: its seeds) is compared with the same metric of the
same experiment and sweep point in the baseline (see baseline.py). The outcome is one of:

- ``improved`` / ``regressed``: a real change in the better / worse direction;
- ``unchanged``: no change beyond the noise (or the tolerance);
- ``changed``: a real change of a metric whose better direction nobody said (never fails);
- ``new``: the baseline has no value for it; ``missing``: only the baseline has.

Which way is better comes from ``xstash.direction`` or the metric's expectation (``>=``: higher).

**With repeats** on both sides (two or more seeds now and in the baseline, or several baseline
runs of the same point) the change must be statistically significant: Welch's two-sample t-test
(unequal variances; Welch-Satterthwaite degrees of freedom), two-sided, at ``alpha`` (default
0.05), *and* at least ``min_effect`` (``xstash.min_effect: {accuracy: 0.005}``) in size. The
difference of the means gets Welch's 95% confidence interval. When neither side varies at all
(identical repeats), the values are compared as single values.

**Without repeats** a single value cannot tell noise from change: the relative difference
``(now - baseline) / |baseline|`` (the absolute one when the baseline is 0) must stay within
``tolerance`` (``xstash_baseline_tol``, default 0: any change) and the absolute difference
beyond ``min_effect`` to count.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from xstash_plugin.config.text import printable
from xstash_plugin.run.stats import t_quantile, t_sf

OUTCOMES = ("improved", "unchanged", "regressed", "changed", "new", "missing")
ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """One metric, now against its baseline."""

    metric: str
    outcome: str
    now: tuple[float, ...]
    baseline: tuple[float, ...]
    direction: str | None = None  # 'max' | 'min' | None
    difference: float | None = None  # mean(now) - mean(baseline)
    ci: tuple[float, float] | None = None  # 95% CI of the difference (Welch)
    p_value: float | None = None
    method: str = ""  # 'welch' | 'tolerance' | ''

    def as_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "outcome": self.outcome,
            "now": list(self.now),
            "baseline": list(self.baseline),
            "direction": self.direction,
            "difference": self.difference,
            "ci": None if self.ci is None else list(self.ci),
            "p_value": self.p_value,
            "method": self.method,
        }


@dataclass(frozen=True)
class Welch:
    difference: float
    ci: tuple[float, float]
    p_value: float


def welch(now: Sequence[float], base: Sequence[float], confidence: float = 0.95) -> Welch | None:
    """Welch's t-test of ``mean(now) - mean(base)``; None when neither side varies."""
    n1, n2 = len(now), len(base)
    m1, m2 = statistics.fmean(now), statistics.fmean(base)
    v1, v2 = statistics.variance(now) / n1, statistics.variance(base) / n2
    se2 = v1 + v2
    if se2 == 0.0:
        return None
    se = math.sqrt(se2)
    df = se2 * se2 / ((v1 * v1 / (n1 - 1) if v1 else 0.0) + (v2 * v2 / (n2 - 1) if v2 else 0.0))
    diff = m1 - m2
    p = min(1.0, 2.0 * t_sf(abs(diff) / se, df))
    half = t_quantile((1.0 + confidence) / 2.0, df) * se
    return Welch(diff, (diff - half, diff + half), p)


def _better(difference: float, direction: str | None) -> bool | None:
    """Whether a (non-zero) difference goes the better way; None: no direction known."""
    if direction is None:
        return None
    return difference > 0 if direction == "max" else difference < 0


def _outcome(real: bool, better: bool | None) -> str:
    if not real:
        return "unchanged"
    if better is None:
        return "changed"
    return "improved" if better else "regressed"


def compare_metric(
    metric: str,
    now: Sequence[float],
    base: Sequence[float],
    direction: str | None = None,
    alpha: float = ALPHA,
    min_effect: float = 0.0,
    tolerance: float = 0.0,
) -> Comparison:
    """The verdict on one metric (``now`` and ``base``: its values, one per run or seed)."""
    now_t, base_t = tuple(now), tuple(base)
    if not base_t:
        return Comparison(metric, "new", now_t, base_t, direction)
    if not now_t:
        return Comparison(metric, "missing", now_t, base_t, direction)
    diff = statistics.fmean(now_t) - statistics.fmean(base_t)
    big = abs(diff) > min_effect
    if len(now_t) >= 2 and len(base_t) >= 2:
        test = welch(now_t, base_t)
        if test is not None:
            real = test.p_value < alpha and big
            outcome = _outcome(real, _better(diff, direction))
            return Comparison(
                metric, outcome, now_t, base_t, direction, diff, test.ci, test.p_value, "welch"
            )
    reference = statistics.fmean(base_t)
    relative = abs(diff) / abs(reference) if reference else abs(diff)
    real = relative > tolerance and big and diff != 0.0
    outcome = _outcome(real, _better(diff, direction))
    return Comparison(metric, outcome, now_t, base_t, direction, diff, method="tolerance")


def compare(
    now: dict[str, list[float]],
    base: dict[str, list[float]],
    directions: dict[str, str],
    alpha: float = ALPHA,
    min_effects: dict[str, float] | None = None,
    tolerance: float = 0.0,
) -> list[Comparison]:
    """Every metric of either side, in the order: now's metrics, then those only the baseline
    has."""
    effects = min_effects or {}
    names = [*now, *(name for name in base if name not in now)]
    return [
        compare_metric(
            name,
            now.get(name, []),
            base.get(name, []),
            directions.get(name),
            alpha,
            effects.get(name, 0.0),
            tolerance,
        )
        for name in names
    ]


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _values(values: tuple[float, ...]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    return f"{mean:.4g}" + (f" (n={len(values)})" if len(values) > 1 else "")


def comparison_table(comparisons: Sequence[Comparison]) -> list[list[str]]:
    """Header and rows: metric, baseline, now, difference, CI of the difference, p, outcome."""
    rows = [["metric", "baseline", "now", "difference", "95% CI", "p", "outcome"]]
    for c in comparisons:
        ci = "-" if c.ci is None else f"[{c.ci[0]:.3g}, {c.ci[1]:.3g}]"
        better = {"max": "higher is better", "min": "lower is better"}.get(c.direction or "", "")
        outcome = c.outcome + (f" ({better})" if better and c.outcome != "unchanged" else "")
        rows.append(
            [
                printable(c.metric),
                _values(c.baseline),
                _values(c.now),
                _num(c.difference),
                ci,
                _num(c.p_value, 3),
                outcome,
            ]
        )
    return rows
