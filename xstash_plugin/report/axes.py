"""Plot axes: linear or logarithmic scales from data to pixels, round tick values, where values
land in a plot's frame (:class:`Plot`) and the mark of a failed run: what report/svg.py and
report/svg_seeds.py share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from xstash_plugin.report.rows import fmt

# Plot geometry (SVG user units = CSS pixels).
WIDTH, HEIGHT = 560, 330
LEFT, RIGHT, TOP, BOTTOM = 66, 168, 40, 62
FAIL_COLOUR = "#C0392B"


def is_log_axis(values: list[float]) -> bool:
    """Log scale for positive values spanning two decades or more (learning rates)."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 100


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    index = first
    while index * step <= high + step * 1e-9:
        ticks.append(round(index * step, 12))
        index += 1
    return ticks


def log_ticks(low: float, high: float) -> list[float]:
    """Decades between ``low`` and ``high``; with 1-2-5 in between when there are few."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    decades = [10.0**e for e in range(first, last + 1)]
    if math.log10(high / low) < 3:
        decades = [m * 10.0**e for e in range(first, last + 1) for m in (1, 2, 5)]
    return [t for t in decades if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]


def tick_label(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:.4g}"


def _widen(low: float, high: float) -> tuple[float, float]:
    """A range of one value as one around it (10% of it, or 1 around 0)."""
    if high != low:
        return low, high
    pad = abs(low) * 0.1 or 1.0
    return low - pad, high + pad


class Scale:
    """Maps data values to pixels: linear or logarithmic."""

    def __init__(self, low: float, high: float, start: float, end: float, log: bool) -> None:
        self.log = log
        if log:
            low, high = math.log10(low), math.log10(high)
        low, high = _widen(low, high)
        self.low, self.high, self.start, self.end = low, high, start, end

    def __call__(self, value: float) -> float:
        if self.log:
            value = math.log10(value)
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


def padded(low: float, high: float, log: bool) -> tuple[float, float]:
    """[low, high] with a margin, so no point sits on the frame."""
    if log:
        return low / 10**0.1, high * 10**0.1
    if high == low:
        return _widen(low, high)
    pad = (high - low) * 0.08
    return low - pad, high + pad


@dataclass
class Plot:
    """Where values land in one plot's frame (x0..x1 left to right, y0..y1 top to bottom)."""

    categories: list[str]  # the x values as text, when they are not all numbers
    x_scale: Scale | None  # when they are
    x_range: tuple[float, float]  # the padded range of numeric x values
    log_x: bool
    y_scale: Scale
    y_low: float
    y_high: float
    x0: int = LEFT
    x1: int = WIDTH - RIGHT
    y0: int = TOP
    y1: int = HEIGHT - BOTTOM

    @property
    def scale_name(self) -> str:
        return "log" if self.log_x else "linear" if self.x_scale is not None else "category"

    def x_pos(self, x: Any) -> float:
        if self.x_scale is not None:
            return self.x_scale(float(x))
        position = (self.categories.index(fmt(x)) + 0.5) / len(self.categories)
        return self.x0 + position * (self.x1 - self.x0)

    def x_order(self, x: Any) -> float:
        return float(x) if self.x_scale is not None else self.categories.index(fmt(x))


def coord(value: float) -> str:
    """Coordinates: short and stable (diffable)."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def cross(cx: float, cy: float, size: float) -> str:
    """The mark of a run that did not pass."""
    left, right, top, bottom = (coord(v) for v in (cx - size, cx + size, cy - size, cy + size))
    return (
        f'<path class="cross" d="M{left},{top} L{right},{bottom} M{left},{bottom} L{right},{top}" '
        f'stroke="{FAIL_COLOUR}" stroke-width="2.5"/>'
    )
