"""Summary statistics over the per-seed values of one metric (one value per seed of a sweep).

Only the Python standard library is used, on purpose. The one part that looks like it needs SciPy,
the quantile of Student's t distribution, is the inverse of a regularized incomplete beta
function: a continued fraction (Lentz's method, as in Numerical Recipes) and a safeguarded
Newton root finder give it in a few dozen lines, to ~1e-14 (relative) for up to thousands of
degrees of freedom and ~1e-11 at a million. A 30 MB dependency (SciPy, with
NumPy) for two numbers per metric is not a fair runtime dependency of a pytest plugin that every
tool environment and every CI job installs. The tests check every statistic against NumPy/SciPy.

The statistics (in ``STATISTICS`` order):

- ``n``: how many values (seeds); at least one.
- ``mean``: their arithmetic mean.
- ``std``: their sample standard deviation (``ddof=1``: divided by ``n - 1``); ``None`` for one
  value, which has no spread to estimate.
- ``sem``: the standard error of the mean, ``std / sqrt(n)``; ``None`` for one value.
- ``ci_low``, ``ci_high``: a two-sided confidence interval (``CONFIDENCE`` = 95 % unless told) of
  the mean, ``None`` for one value. With method ``"t"``: ``mean -/+ t * sem``, ``t`` the
  ``(1 + confidence) / 2`` quantile of Student's t with ``n - 1`` degrees of freedom (what
  ``scipy.stats.t.interval`` gives). With method ``"bootstrap"``: the percentile bootstrap
  interval, the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles (linear
  interpolation, NumPy's default) of the means of ``RESAMPLES`` resamples drawn with
  replacement; the resamples come from ``random.Random(BOOTSTRAP_SEED)``, so the same values
  always give the same interval (what ``scipy.stats.bootstrap(..., method="percentile")`` gives
  on the same resamples).
- ``min``, ``max``: the smallest and the largest value.

When all values are equal, ``std`` and ``sem`` are 0 and the interval is ``[mean, mean]`` whatever
the method. Values far from 1 (1e300, 1e-300) are summed at an exact power-of-two scale, so
nothing overflows on the way; only a statistic that is itself beyond the largest float is inf.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass

STATISTICS = ("n", "mean", "std", "sem", "ci_low", "ci_high", "min", "max")
CI_METHODS = ("t", "bootstrap")
CONFIDENCE = 0.95
RESAMPLES = 9999  # bootstrap resamples (SciPy's default)
BOOTSTRAP_SEED = 0  # fixed: the same values give the same interval every time

_EPS = sys.float_info.epsilon
_TINY = 1e-300  # Lentz's guard against a zero denominator
_MAX_TERMS = 10_000  # continued-fraction terms; ~sqrt(df) are needed
_MAX_STEPS = 400  # root-finder steps; bisection alone reaches full precision in ~100
_HUGE_SCALE = 2.0**500  # values beyond (in size) are scaled to ~1 for the sums
_TINY_SCALE = 2.0**-500  # and so are values below
_GAMMA_MAX = 170.0  # math.gamma overflows past ~171.6


@dataclass(frozen=True)
class Summary:
    """The statistics of one metric's per-seed values (see the module docstring)."""

    n: int
    mean: float
    std: float | None
    sem: float | None
    ci_low: float | None
    ci_high: float | None
    min: float
    max: float

    def as_dict(self) -> dict[str, float | int | None]:
        """The statistics by name, in ``STATISTICS`` order."""
        return {name: getattr(self, name) for name in STATISTICS}


def summarize(
    values: Sequence[float],
    method: str = "t",
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Summary:
    """The summary of ``values`` (one per seed), with a confidence interval of the mean by
    ``method`` (one of ``CI_METHODS``); ``resamples`` and ``seed`` are for ``"bootstrap"``.

    Raises ValueError for no values, a value that is not a finite number, an unknown method, a
    confidence outside (0, 1) or fewer than one resample.
    """
    if method not in CI_METHODS:
        raise ValueError(f"unknown confidence interval method {method!r}: use one of {CI_METHODS}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), not {confidence!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples!r}")
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("no values to summarize")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"values must be finite numbers: {xs!r}")
    lo, hi = min(xs), max(xs)
    if lo == hi:
        # Exactly: a sum of n copies divided by n need not give the value back.
        if n == 1:
            return Summary(n, lo, None, None, None, None, lo, hi)
        return Summary(n, lo, 0.0, 0.0, lo, lo, lo, hi)
    # Values far from 1 (a loss of 1e300, a rate of 1e-300) are scaled by a power of two, which is
    # exact: so a sum or a square neither overflows (math.fsum would raise) nor underflows to 0.
    biggest = max(-lo, hi)
    # 2 ** (e - 1) <= biggest < 2 ** e; 2.0 ** (e - 1) is a float for every finite biggest.
    scale = 1.0 if _TINY_SCALE <= biggest <= _HUGE_SCALE else 2.0 ** (math.frexp(biggest)[1] - 1)
    ys = xs if scale == 1.0 else [x / scale for x in xs]
    mean = min(max(math.fsum(ys) / n, lo / scale), hi / scale)
    std = math.sqrt(math.fsum((y - mean) * (y - mean) for y in ys) / (n - 1))
    sem = std / math.sqrt(n)
    if method == "t":
        half = t_quantile((1.0 + confidence) / 2.0, n - 1) * sem
        ci_low, ci_high = mean - half, mean + half
    else:
        means = sorted(
            sum([ys[i] for i in resample]) / n for resample in bootstrap_indices(n, resamples, seed)
        )
        # The probabilities exactly as scipy.stats.bootstrap computes them.
        alpha = (1.0 - confidence) / 2.0
        ci_low, ci_high = _quantile(means, alpha), _quantile(means, 1.0 - alpha)
    # Back to the values' scale: a spread beyond the largest float is inf, as it should be.
    return Summary(
        n, mean * scale, std * scale, sem * scale, ci_low * scale, ci_high * scale, lo, hi
    )


def bootstrap_indices(n: int, resamples: int, seed: int) -> list[list[int]]:
    """``resamples`` resamples of ``n`` indices (into the values) drawn with replacement from
    ``random.Random(seed)``, one resample after the other."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n!r}")
    if resamples < 0:
        raise ValueError(f"resamples must not be negative, not {resamples!r}")
    # One draw of them all is the same sequence as one draw per resample (choices draws one
    # random() per index), and much faster.
    flat = random.Random(seed).choices(range(n), k=n * resamples)
    return [flat[k : k + n] for k in range(0, n * resamples, n)]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (``q`` in [0, 100]) of ``sorted_values`` (ascending), linearly
    interpolated between the two nearest ranks: NumPy's default ("linear", Hyndman and Fan's
    type 7) and SciPy's, as ``scipy.stats.bootstrap`` uses it."""
    if not sorted_values:
        raise ValueError("no values to take a percentile of")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], not {q!r}")
    return _quantile(sorted_values, q / 100.0)


def _quantile(y: Sequence[float], p: float) -> float:
    """The ``p`` quantile (``p`` in [0, 1]) of ascending ``y``, computed as
    ``scipy.stats.quantile(..., method="linear")`` does (``scipy/stats/_quantile.py``)."""
    n = len(y)
    jg = p * n + (1.0 - p)  # 1-based fractional rank (n - 1) * p + 1
    jp1 = math.floor(jg)
    j = jp1 - 1
    g = jg % 1.0
    if j < 0:
        g = 0.0
    j = min(max(j, 0), n - 1)
    jp1 = min(max(jp1, 0), n - 1)
    return (1.0 - g) * y[j] + g * y[jp1]


def t_quantile(p: float, df: float) -> float:
    """The inverse CDF of Student's t distribution with ``df`` degrees of freedom at ``p``.

    Solves for ``t >= 0`` (the sign follows from symmetry) either the tail ``P(T > t) =
    min(p, 1 - p)``, ``I_x(df/2, 1/2) / 2`` with ``x = df / (df + t**2)``, or, for ``p`` within
    [0.25, 0.75], the central ``P(0 < T < t) = |p - 1/2|``, ``I_(1-x)(1/2, df/2) / 2``, so that
    a small ``t`` keeps its relative precision too. A bracket by doubling, then Newton steps
    (the derivative is the density) that fall back to bisection whenever a step leaves the
    bracket or does not shrink fast enough.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be between 0 and 1 (exclusive), not {p!r}")
    if df < 1:
        raise ValueError(f"df must be at least 1, not {df!r}")
    if p == 0.5:
        return 0.0
    nu = float(df)
    central = 0.25 <= p <= 0.75
    # Exact: p - 1/2 for p in [1/4, 3/4], 1 - p for p >= 1/2 (Sterbenz).
    target = abs(p - 0.5) if central else min(p, 1.0 - p)

    def excess(t: float) -> float:
        """Decreasing in t, zero at the quantile."""
        if central:
            return target - _t_central(t, nu)
        return _t_tail(t, nu) - target

    log_norm = _log_inv_beta(nu / 2.0, 0.5) - 0.5 * math.log(nu)  # of the density
    lo, hi = 0.0, 1.0
    while excess(hi) > 0.0:
        lo, hi = hi, 2.0 * hi
    # Numerical Recipes' rtsafe: a Newton step when it stays inside the bracket and shrinks at
    # least half as fast as bisection would, a bisection otherwise.
    t = 0.5 * (lo + hi)
    step_old = step = hi - lo
    for _ in range(_MAX_STEPS):
        f = excess(t)
        if f == 0.0:
            break
        if f > 0.0:
            lo = t
        else:
            hi = t
        density = math.exp(log_norm - _log1p_t2(t, nu) * (nu + 1.0) / 2.0)
        newton = f / density if density > 0.0 else math.inf
        if lo < t + newton < hi and abs(2.0 * newton) <= abs(step_old):
            step_old, step = step, newton
            t_new = t + step
        else:
            step_old = step
            t_new = 0.5 * (lo + hi)
            step = t_new - t
        if t_new == t or abs(step) <= _EPS * abs(t_new):
            t = t_new
            break
        t = t_new
    return t if p > 0.5 else -t


def t_sf(t: float, df: float) -> float:
    """``P(T > t)`` for Student's t with ``df`` (> 0, not necessarily whole) degrees of
    freedom: the one-sided p-value of ``t``."""
    if not df > 0.0:
        raise ValueError(f"df must be positive, not {df!r}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = _t_tail(abs(t), float(df))
    return tail if t >= 0.0 else 1.0 - tail


def _log1p_t2(t: float, nu: float) -> float:
    """``log(1 + t**2 / nu)`` without overflow for a huge ``t``."""
    if t < 1e150:
        return math.log1p(t * t / nu)
    return 2.0 * math.log(t) - math.log(nu) + math.log1p(nu / t / t)


def _t_beta_args(t: float, nu: float) -> tuple[float, float, float, float]:
    """``x = nu / (nu + t**2)``, ``1 - x``, ``log x`` and ``log(1 - x)`` for ``t > 0``, all
    computed without cancellation or overflow (``nu * log x`` must stay exact for a large
    ``nu``, where ``x`` is close to 1)."""
    log_x = -_log1p_t2(t, nu)
    if t >= 1.0:
        r = nu / t / t
        return r / (1.0 + r), 1.0 / (1.0 + r), log_x, -math.log1p(r)
    s = t * t / nu
    log_xc = math.log(s) + log_x if s > 0.0 else -math.inf
    return 1.0 / (1.0 + s), s / (1.0 + s), log_x, log_xc


def _t_tail(t: float, nu: float) -> float:
    """``P(T > t)`` for ``t >= 0``: ``I_x(nu/2, 1/2) / 2``."""
    if t == 0.0:
        return 0.5
    x, xc, log_x, log_xc = _t_beta_args(t, nu)
    return 0.5 * _betai(nu / 2.0, 0.5, x, xc, log_x, log_xc)


def _t_central(t: float, nu: float) -> float:
    """``P(0 < T < t)`` for ``t >= 0``: ``I_(1-x)(1/2, nu/2) / 2``."""
    if t == 0.0:
        return 0.0
    x, xc, log_x, log_xc = _t_beta_args(t, nu)
    return 0.5 * _betai(0.5, nu / 2.0, xc, x, log_xc, log_x)


def _betai(a: float, b: float, x: float, xc: float, log_x: float, log_xc: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)``, given ``x``, ``xc = 1 - x`` and
    their logarithms (Numerical Recipes' betai, with the complement and the logarithms passed in
    so none of them loses precision)."""
    if x <= 0.0:
        return 0.0
    if xc <= 0.0:
        return 1.0
    front = math.exp(_log_inv_beta(a, b) + a * log_x + b * log_xc)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, xc) / b


def _log_inv_beta(a: float, b: float) -> float:
    """``-log B(a, b) = log(Gamma(a + b) / (Gamma(a) Gamma(b)))``: from ``math.gamma`` while it
    does not overflow (a difference of large ``lgamma`` values loses ~1e-13 of the result)."""
    if a + b < _GAMMA_MAX:
        return math.log(math.gamma(a + b) / math.gamma(a) / math.gamma(b))
    big, small = max(a, b), min(a, b)
    if small >= _GAMMA_MAX:
        return math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    # log(Gamma(big + small) / Gamma(big)) from Stirling's series (big >= 85: the next term is
    # below 1e-16), then the small argument's own lgamma.
    ratio = (
        (big - 0.5) * math.log1p(small / big)
        + small * math.log(big + small)
        - small
        + _stirling_tail(big + small)
        - _stirling_tail(big)
    )
    return ratio - math.lgamma(small)


def _stirling_tail(z: float) -> float:
    """``lgamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2)`` for a large ``z``."""
    z2 = z * z
    return (1.0 / 12.0 - (1.0 / 360.0 - 1.0 / (1260.0 * z2)) / z2) / z


def _lentz(aa: float, c: float, d: float) -> tuple[float, float]:
    """One step of Lentz's method: the next ``c`` and ``d`` for the term ``aa``."""
    d = 1.0 + aa * d
    if abs(d) < _TINY:
        d = _TINY
    c = 1.0 + aa / c
    if abs(c) < _TINY:
        c = _TINY
    return c, 1.0 / d


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function, by the modified Lentz method
    (Numerical Recipes' betacf); converges fast for ``x < (a + 1) / (a + b + 2)``."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < _TINY:
        d = _TINY
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_TERMS + 1):
        m2 = 2 * m
        # Even step.
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        c, d = _lentz(aa, c, d)
        h *= d * c
        # Odd step.
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        c, d = _lentz(aa, c, d)
        delta = d * c
        h *= delta
        if abs(delta - 1.0) <= 1.5 * _EPS:
            break
    return h
