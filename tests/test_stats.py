"""xstash_plugin.run.stats (standard library only) checked against NumPy and SciPy.

The t interval must equal ``scipy.stats.t.interval`` and the bootstrap interval must equal
``scipy.stats.bootstrap(..., method="percentile")`` to 1e-9. For the bootstrap, SciPy is made to
draw *our* resamples: it takes its resample indices from ``rng.integers(0, n, (n_resamples, n))``
(``_bootstrap_resample`` through ``rng_integers`` in ``scipy/stats/_resampling.py``), so a
``numpy.random.Generator`` subclass whose ``integers`` returns ``bootstrap_indices(...)`` makes
both sides average the very same resamples; the test also checks that SciPy asked for them.
"""

from __future__ import annotations

import inspect
import math
import random
from typing import Any

import numpy as np
import pytest
import scipy.stats

from xstash_plugin.run.stats import (
    BOOTSTRAP_SEED,
    CI_METHODS,
    CONFIDENCE,
    RESAMPLES,
    STATISTICS,
    Summary,
    bootstrap_indices,
    percentile,
    summarize,
    t_quantile,
)

TOL = 1e-9
CONFIDENCES = (0.9, 0.95, 0.99)


def close(a: float | None, b: float) -> bool:
    assert a is not None
    return math.isclose(a, float(b), rel_tol=TOL, abs_tol=TOL)


def gauss_draws(k: int, n: int) -> list[float]:
    """n per-seed values of a metric around 0.9 (an accuracy, say)."""
    rng = random.Random(k)
    return [rng.gauss(0.9, 0.02) for _ in range(n)]


SAMPLES: dict[str, list[float]] = {
    **{f"gauss-n{n}": gauss_draws(n, n) for n in (2, 3, 5, 10, 30)},
    "two": [1.0, 2.0],
    "integers": [3, 1, 4, 1, 5, 9, 2, 6],
    "negative": [-12.5, -3.25, -7.0, -0.5],
    "large": [1e6 + 1.0, 1e6 + 2.5, 1e6 - 0.75],
    "skewed": [0.01, 0.02, 0.015, 0.9, 0.011, 0.013],
    "two-equal-one-apart": [5.0, 5.0, 6.0],
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_t_summary_matches_scipy(name: str, confidence: float) -> None:
    values = SAMPLES[name]
    s = summarize(values, "t", confidence=confidence)
    arr = np.asarray(values, dtype=float)
    n = len(values)
    mean = np.mean(arr)
    std = np.std(arr, ddof=1)
    sem = scipy.stats.sem(arr)
    low, high = scipy.stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    assert s.n == n
    assert close(s.mean, mean)
    assert close(s.std, std)
    assert close(s.sem, sem)
    assert close(s.ci_low, low)
    assert close(s.ci_high, high)
    assert s.min == min(values)
    assert s.max == max(values)


@pytest.mark.parametrize("n", range(2, 51))
def test_t_interval_for_every_n(n: int) -> None:
    values = gauss_draws(1000 + n, n)
    for confidence in CONFIDENCES:
        s = summarize(values, confidence=confidence)  # "t" is the default
        low, high = scipy.stats.t.interval(
            confidence, n - 1, loc=np.mean(values), scale=scipy.stats.sem(values)
        )
        assert close(s.ci_low, low)
        assert close(s.ci_high, high)


P_GRID = (
    1e-12,
    1e-10,
    1e-6,
    1e-3,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.4,
    0.45,
    0.55,
    0.6,
    0.75,
    0.9,
    0.95,
    0.975,
    0.99,
    0.995,
    0.999,
    1 - 1e-6,
    1 - 1e-10,
)


def test_t_quantile_matches_scipy_ppf() -> None:
    worst = 0.0
    for df in range(1, 201):
        for p in P_GRID:
            ours = t_quantile(p, df)
            theirs = float(scipy.stats.t.ppf(p, df))
            worst = max(worst, abs(ours - theirs) / abs(theirs))
            assert math.isclose(ours, theirs, rel_tol=1e-12, abs_tol=0.0), (p, df)
    assert worst < 1e-12


@pytest.mark.parametrize("df", [1, 2, 5, 30, 200, 1000, 10_000])
def test_t_quantile_symmetry_and_center(df: int) -> None:
    assert t_quantile(0.5, df) == 0.0
    for p in (2.0**-30, 0.0625, 0.25, 0.375, 0.4999):  # 1 - (1 - p) == p for these
        assert t_quantile(p, df) == -t_quantile(1.0 - p, df)
    # Round trip through SciPy's CDF, also near 0.5, where SciPy's ppf is less accurate (its CDF is
    # too for df = 1: see the closed forms below).
    if df > 1:
        for p in (0.3, 0.49, 0.499999, 0.51, 0.7):
            assert math.isclose(float(scipy.stats.t.cdf(t_quantile(p, df), df)), p, rel_tol=1e-14)


def cauchy_quantile(p: float) -> float:
    """tan(pi (p - 1/2)), without a tangent near pi/2 (where pi * p loses the answer)."""
    if p > 0.75:
        return 1.0 / math.tan(math.pi * (1.0 - p))
    if p < 0.25:
        return -1.0 / math.tan(math.pi * p)
    return math.tan(math.pi * (p - 0.5))


def test_t_quantile_known_values() -> None:
    # df = 1 is the Cauchy distribution; df = 2 has a closed form too.
    for p in (1e-9, 0.001, 0.1, 0.3, 0.45, 0.499999, 0.5 + 1e-12, 0.6, 0.9, 0.999, 1 - 1e-9):
        assert math.isclose(t_quantile(p, 1), cauchy_quantile(p), rel_tol=1e-14)
        expected = (2.0 * p - 1.0) * math.sqrt(2.0 / (4.0 * p * (1.0 - p)))
        assert math.isclose(t_quantile(p, 2), expected, rel_tol=1e-14)


@pytest.mark.parametrize("p, df", [(0.0, 3), (1.0, 3), (-0.1, 3), (1.5, 3), (0.5, 0)])
def test_t_quantile_rejects_bad_arguments(p: float, df: int) -> None:
    with pytest.raises(ValueError):
        t_quantile(p, df)


class FixedIndices(np.random.Generator):
    """A Generator that hands SciPy given resample indices instead of drawing its own."""

    def __init__(self, indices: list[list[int]]) -> None:
        super().__init__(np.random.PCG64(0))
        self.indices = np.asarray(indices, dtype=np.int64)
        self.calls: list[tuple[Any, ...]] = []

    def integers(  # type: ignore[override]
        self,
        low: Any,
        high: Any = None,
        size: Any = None,
        dtype: Any = np.int64,
        endpoint: bool = False,
    ) -> np.ndarray[Any, Any]:
        self.calls.append((low, high, size, endpoint))
        return self.indices.copy()


def scipy_bootstrap(
    values: list[float], confidence: float, resamples: int, seed: int
) -> tuple[Any, FixedIndices]:
    n = len(values)
    rng = FixedIndices(bootstrap_indices(n, resamples, seed))
    # SciPy >= 1.15 calls it `rng` (and still takes `random_state`); older ones `random_state`.
    params = inspect.signature(scipy.stats.bootstrap).parameters
    key = "rng" if "rng" in params else "random_state"
    res = scipy.stats.bootstrap(
        (values,),
        np.mean,
        method="percentile",
        confidence_level=confidence,
        n_resamples=resamples,
        **{key: rng},
    )
    # SciPy drew our resamples, all at once: the same ones as ours, not some of its own.
    assert rng.calls == [(0, n, (resamples, n), False)]
    return res, rng


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_bootstrap_matches_scipy_on_the_same_resamples(name: str, confidence: float) -> None:
    values = [float(v) for v in SAMPLES[name]]
    res, rng = scipy_bootstrap(values, confidence, RESAMPLES, BOOTSTRAP_SEED)
    # The resample means SciPy worked from are the means of our resamples.
    ours_means = np.asarray(values)[rng.indices].mean(axis=-1)
    np.testing.assert_allclose(res.bootstrap_distribution, ours_means, rtol=1e-12, atol=0)
    s = summarize(values, "bootstrap", confidence=confidence)
    assert close(s.ci_low, res.confidence_interval.low)
    assert close(s.ci_high, res.confidence_interval.high)
    # The rest is the same whatever the method.
    t = summarize(values, "t", confidence=confidence)
    assert (s.n, s.mean, s.std, s.sem, s.min, s.max) == (t.n, t.mean, t.std, t.sem, t.min, t.max)


# One resample: SciPy's bootstrap standard error (ddof=1) warns; not what is compared here.
@pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("resamples, seed", [(1, 0), (2, 3), (10, 1), (1000, 7), (4321, 12345)])
def test_bootstrap_other_resamples_and_seeds(resamples: int, seed: int) -> None:
    values = gauss_draws(seed, 7)
    res, _ = scipy_bootstrap(values, 0.9, resamples, seed)
    s = summarize(values, "bootstrap", confidence=0.9, resamples=resamples, seed=seed)
    assert close(s.ci_low, res.confidence_interval.low)
    assert close(s.ci_high, res.confidence_interval.high)


def test_bootstrap_is_deterministic_and_depends_on_the_seed() -> None:
    values = gauss_draws(5, 5)
    a = summarize(values, "bootstrap")
    assert summarize(values, "bootstrap") == a
    assert summarize(values, "bootstrap", seed=1) != a


def test_bootstrap_indices_are_draws_of_random_random() -> None:
    n, resamples, seed = 4, 300, 42
    indices = bootstrap_indices(n, resamples, seed)
    assert len(indices) == resamples
    assert all(len(r) == n and all(0 <= i < n for i in r) for r in indices)
    rng = random.Random(seed)
    assert indices == [rng.choices(range(n), k=n) for _ in range(resamples)]
    assert bootstrap_indices(n, 0, seed) == []


QS = (0.0, 0.5, 2.5, 5.0, 10.0, 25.0, 33.3, 50.0, 66.6, 75.0, 90.0, 95.0, 97.5, 99.5, 100.0)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 10, 101, 9999])
def test_percentile_is_numpys_default_linear(size: int) -> None:
    rng = random.Random(size)
    values = sorted(rng.uniform(-5.0, 5.0) for _ in range(size))
    for q in QS:
        expected = np.percentile(values, q)
        assert math.isclose(percentile(values, q), float(expected), rel_tol=1e-12, abs_tol=1e-12)
        expected = scipy.stats.quantile(np.asarray(values), q / 100.0)
        assert math.isclose(percentile(values, q), float(expected), rel_tol=1e-12, abs_tol=1e-12)


def test_percentile_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        percentile([], 50.0)
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], -1.0)
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], 100.5)


@pytest.mark.parametrize("method", CI_METHODS)
def test_one_value_has_no_spread(method: str) -> None:
    s = summarize([0.87], method)
    assert s == Summary(n=1, mean=0.87, std=None, sem=None, ci_low=None, ci_high=None,
                        min=0.87, max=0.87)  # fmt: skip
    assert s.as_dict() == {
        "n": 1,
        "mean": 0.87,
        "std": None,
        "sem": None,
        "ci_low": None,
        "ci_high": None,
        "min": 0.87,
        "max": 0.87,
    }


@pytest.mark.parametrize("method", CI_METHODS)
@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_all_equal_values(method: str, n: int) -> None:
    s = summarize([0.1] * n, method)
    assert (s.n, s.mean, s.std, s.sem, s.ci_low, s.ci_high, s.min, s.max) == (
        n,
        0.1,
        0.0,
        0.0,
        0.1,
        0.1,
        0.1,
        0.1,
    )


def test_as_dict_keys_in_statistics_order() -> None:
    s = summarize([1.0, 2.0, 4.0])
    d = s.as_dict()
    assert tuple(d) == STATISTICS
    assert d["n"] == 3 and d["mean"] == s.mean and d["ci_high"] == s.ci_high


def test_constants() -> None:
    assert STATISTICS == ("n", "mean", "std", "sem", "ci_low", "ci_high", "min", "max")
    assert CI_METHODS == ("t", "bootstrap")
    assert (CONFIDENCE, RESAMPLES, BOOTSTRAP_SEED) == (0.95, 9999, 0)


def test_empty_raises() -> None:
    with pytest.raises(ValueError, match="no values"):
        summarize([])
    with pytest.raises(ValueError, match="no values"):
        summarize([], "bootstrap")


@pytest.mark.parametrize("method", ["", "T", "bca", "percentile", "normal"])
def test_bad_method_raises(method: str) -> None:
    with pytest.raises(ValueError, match="method"):
        summarize([1.0, 2.0], method)


@pytest.mark.parametrize(
    "kwargs",
    [{"confidence": 0.0}, {"confidence": 1.0}, {"confidence": 95.0}, {"resamples": 0}],
)
def test_bad_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        summarize([1.0, 2.0], "bootstrap", **kwargs)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_raise(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, bad, 2.0])


@pytest.mark.parametrize("method", CI_METHODS)
@pytest.mark.parametrize("k", [600, 1000, -600, -1000])
def test_values_far_from_one_are_exact_multiples(method: str, k: int) -> None:
    # Scaling by a power of two is exact: the statistics scale with the values, bit for bit,
    # where a plain sum of squares would overflow (1e300 ** 2) or underflow to 0 (1e-300 ** 2).
    values = gauss_draws(k, 6)
    base = summarize(values, method)
    scaled = summarize([v * 2.0**k for v in values], method)
    for name in ("mean", "std", "sem", "ci_low", "ci_high", "min", "max"):
        ours, expected = getattr(scaled, name), getattr(base, name)
        assert ours == expected * 2.0**k, name


def test_a_spread_beyond_the_largest_float_is_infinite() -> None:
    s = summarize([1.7e308, -1.7e308])
    assert (s.mean, s.std, s.ci_low, s.ci_high) == (0.0, math.inf, -math.inf, math.inf)
    s = summarize([1e308, -1e308, 1e308], "bootstrap")
    assert math.isclose(s.mean, 1e308 / 3)
    assert s.std is not None and math.isclose(s.std, 2.0 / math.sqrt(3.0) * 1e308)
    assert (s.ci_low, s.ci_high) == (-1e308, 1e308)
