"""Verdicts against a baseline: Welch's test with repeats, a tolerance without; checked against
SciPy's ``ttest_ind(equal_var=False)`` where it applies."""

from __future__ import annotations

import random

import pytest
import scipy.stats

from xstash_plugin.history.compare import compare, compare_metric, comparison_table, welch


def draws(seed: int, n: int, mu: float, sigma: float = 0.01) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mu, sigma) for _ in range(n)]


@pytest.mark.parametrize(("n1", "n2", "shift"), [(5, 5, 0.01), (3, 8, -0.02), (10, 4, 0.0)])
def test_welch_equals_scipy(n1: int, n2: int, shift: float) -> None:
    now, base = draws(1, n1, 0.9 + shift, 0.02), draws(2, n2, 0.9, 0.01)
    ours = welch(now, base)
    theirs = scipy.stats.ttest_ind(now, base, equal_var=False)
    assert ours is not None
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    low, high = theirs.confidence_interval(0.95)
    assert ours.ci == pytest.approx((low, high), rel=1e-9)
    assert ours.difference == pytest.approx(sum(now) / n1 - sum(base) / n2, rel=1e-12)


def test_a_real_drop_of_a_higher_is_better_metric_regresses() -> None:
    verdict = compare_metric("acc", draws(1, 5, 0.85), draws(2, 5, 0.90), "max")
    assert verdict.outcome == "regressed" and verdict.method == "welch"
    assert verdict.p_value is not None and verdict.p_value < 0.05
    assert verdict.ci is not None and verdict.ci[1] < 0


def test_a_real_drop_of_a_lower_is_better_metric_improves() -> None:
    assert compare_metric("loss", draws(1, 5, 0.85), draws(2, 5, 0.90), "min").outcome == (
        "improved"
    )


def test_noise_alone_is_unchanged() -> None:
    verdict = compare_metric("acc", draws(3, 5, 0.9), draws(4, 5, 0.9), "max")
    assert verdict.outcome == "unchanged" and verdict.p_value is not None


def test_noise_rarely_regresses() -> None:
    """At alpha 0.05 a two-sided test calls about 2.5% of pure-noise pairs a regression."""
    false = sum(
        compare_metric("acc", draws(k, 5, 0.9), draws(1000 + k, 5, 0.9), "max").outcome
        == "regressed"
        for k in range(400)
    )
    assert false / 400 < 0.05


def test_min_effect_ignores_real_but_tiny_changes() -> None:
    now, base = draws(1, 10, 0.899, 0.0001), draws(2, 10, 0.900, 0.0001)
    assert compare_metric("acc", now, base, "max").outcome == "regressed"
    assert compare_metric("acc", now, base, "max", min_effect=0.005).outcome == "unchanged"


def test_single_values_use_the_tolerance() -> None:
    assert compare_metric("acc", [0.89], [0.90], "max").outcome == "regressed"
    assert compare_metric("acc", [0.89], [0.90], "max", tolerance=0.02).outcome == "unchanged"
    assert compare_metric("acc", [0.90], [0.90], "max").outcome == "unchanged"
    assert compare_metric("n", [3.0], [0.0], "max").outcome == "improved"  # baseline 0: absolute
    verdict = compare_metric("acc", [0.89], [0.90], "max")
    assert verdict.method == "tolerance" and verdict.p_value is None


def test_identical_repeats_are_compared_as_values() -> None:
    assert compare_metric("c", [16.0, 16.0], [16.0, 16.0], "max").outcome == "unchanged"
    assert compare_metric("c", [15.0, 15.0], [16.0, 16.0], "max").outcome == "regressed"


def test_without_direction_a_change_is_only_reported() -> None:
    assert compare_metric("x", draws(1, 5, 0.5), draws(2, 5, 0.9)).outcome == "changed"


def test_new_and_missing_metrics() -> None:
    found = compare({"a": [1.0], "b": [2.0]}, {"a": [1.0], "c": [3.0]}, {})
    assert [(c.metric, c.outcome) for c in found] == [
        ("a", "unchanged"),
        ("b", "new"),
        ("c", "missing"),
    ]


def test_table() -> None:
    rows = comparison_table(
        compare({"acc": draws(1, 5, 0.85)}, {"acc": draws(2, 5, 0.9)}, {"acc": "max"})
    )
    assert rows[0] == ["metric", "baseline", "now", "difference", "95% CI", "p", "outcome"]
    assert rows[1][0] == "acc" and rows[1][-1] == "regressed (higher is better)"
    assert rows[1][1].endswith("(n=5)")
