"""A metric's history across commits as a small inline SVG, for the results page.

x is the commit index (oldest left), y the metric. Each commit's values (one per seed) are faint
dots (``circle.seed-point``), their mean a point (``circle.point``, its short hash and values in
its ``<title>``) on a line joining the means (``path.series``). Each step found in the series
(:mod:`xstash_plugin.history.changepoints`) is a dashed vertical line between the commit before
it and the commit that introduced it (``line.step``), labelled with that commit's short hash
(``text.step-label``); the baseline commit has a hollow diamond (``g.baseline``, titled
"baseline ..."). Fewer than two commits with values: a short muted text instead of a plot.

Self-contained: presentation attributes inline (it renders without the page's stylesheet, the
classes are for it and for tests), no external resources, no xmlns (inline in HTML the page
names no URL). Every text is escaped.
"""

from __future__ import annotations

import math
from html import escape
from itertools import pairwise

from xstash_plugin.report.axes import Scale, coord, nice_ticks, padded, tick_label

LINE_COLOUR = "#0072B2"  # the first colour of report/svg.py's palette (Okabe-Ito)
STEP_COLOUR = "#D55E00"
MUTED = "#5f6368"
GRID = "#eceef1"
INK = "#202124"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif"'
LEFT, RIGHT, TOP, BOTTOM = 42, 10, 16, 20  # margins around the plot frame
SHORT = 7  # characters of a commit hash shown


def _short(commit: str) -> str:
    return commit[:SHORT]


def _num(value: float) -> str:
    return f"{value:.6g}"


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _open(width: int, height: int, metric: str, extra: str = "") -> str:
    return (
        f'<svg class="history-plot{extra}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" data-metric="{escape(metric)}" '
        f'aria-label="{escape(f"history of {metric}")}" {FONT} font-size="9">'
    )


def _muted(text: str, metric: str, width: int) -> str:
    """The stand-in for a plot with nothing to join: one line of muted text."""
    return (
        _open(width, 20, metric, " empty")
        + f"<title>{escape(f'history of {metric}: {text}')}</title>"
        + f'<text class="muted" x="0" y="14" fill="{MUTED}" font-size="11">{escape(text)}</text>'
        + "</svg>"
    )


class _Frame:
    """Where commit indices and values land."""

    def __init__(self, count: int, ys: list[float], width: int, height: int) -> None:
        self.x0, self.x1 = LEFT, width - RIGHT
        self.y0, self.y1 = TOP, height - BOTTOM
        self.x = Scale(-0.5, count - 0.5, self.x0, self.x1, log=False)
        self.low, self.high = padded(min(ys), max(ys), False)
        self.y = Scale(self.low, self.high, self.y1, self.y0, log=False)

    def cx(self, index: float) -> str:
        return coord(self.x(index))

    def cy(self, value: float) -> str:
        return coord(self.y(value))


def _axes(frame: _Frame, commits: list[str]) -> list[str]:
    """y grid and ticks; a few commits' short hashes under the x axis; both axis lines."""
    out = []
    for tick in nice_ticks(frame.low, frame.high, count=3):
        y = frame.cy(tick)
        out.append(
            f'<line class="grid" x1="{frame.x0}" x2="{frame.x1}" y1="{y}" y2="{y}" '
            f'stroke="{GRID}"/>'
            f'<text class="tick" x="{frame.x0 - 4}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle" fill="{MUTED}">{escape(tick_label(tick))}</text>'
        )
    count = len(commits)
    labels = max(2, min(count, (frame.x1 - frame.x0) // 64))
    shown = sorted({round(k * (count - 1) / (labels - 1)) for k in range(labels)})
    for index in shown:
        anchor = "start" if index == 0 else "end" if index == count - 1 else "middle"
        out.append(
            f'<text class="tick x-tick" x="{frame.cx(index)}" y="{frame.y1 + 12}" '
            f'text-anchor="{anchor}" fill="{MUTED}">{escape(_short(commits[index]))}</text>'
        )
    out.append(
        f'<path class="axis" d="M{frame.x0},{frame.y0} L{frame.x0},{frame.y1} '
        f'L{frame.x1},{frame.y1}" fill="none" stroke="{MUTED}"/>'
    )
    return out


def _points(frame: _Frame, commits: list[str], values: list[list[float]], metric: str) -> list[str]:
    """Seeds as faint dots, the means as points on a line."""
    out = []
    means = [(i, _mean(v)) for i, v in enumerate(values) if v]
    path = " ".join(
        f"{'M' if k == 0 else 'L'}{frame.cx(i)},{frame.cy(m)}" for k, (i, m) in enumerate(means)
    )
    out.append(
        f'<path class="series" d="{path}" fill="none" stroke="{LINE_COLOUR}" stroke-width="1.5"/>'
    )
    for index, seeds in enumerate(values):
        if len(seeds) > 1:
            out.extend(
                f'<circle class="seed-point" cx="{frame.cx(index)}" cy="{frame.cy(v)}" r="1.8" '
                f'fill="{LINE_COLOUR}" fill-opacity="0.3"/>'
                for v in seeds
            )
    for index, mean in means:
        seeds = values[index]
        tip = f"{_short(commits[index])}\n{metric} = {_num(mean)}"
        if len(seeds) > 1:
            tip += f" (mean of {len(seeds)}: {', '.join(_num(v) for v in seeds)})"
        out.append(
            f'<circle class="point" cx="{frame.cx(index)}" cy="{frame.cy(mean)}" r="2.6" '
            f'fill="{LINE_COLOUR}" data-commit="{escape(commits[index])}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    return out


def _levels(values: list[list[float]], steps: list[int]) -> list[float | None]:
    """The level of each segment between steps: the mean of its commits' means."""
    bounds = [0, *steps, len(values)]
    levels: list[float | None] = []
    for start, end in pairwise(bounds):
        means = [_mean(v) for v in values[start:end] if v]
        levels.append(_mean(means) if means else None)
    return levels


def _steps(
    frame: _Frame, commits: list[str], values: list[list[float]], steps: list[int]
) -> list[str]:
    """A dashed line before each commit that changed the level, labelled with its short hash."""
    out = []
    levels = _levels(values, steps)
    for k, index in enumerate(steps):
        at = frame.x(index - 0.5)
        x = coord(at)
        # A label near either end of the frame grows inwards, so the SVG does not cut it.
        anchor = "end" if at > frame.x1 - 24 else "start" if at < frame.x0 + 24 else "middle"
        before, after = levels[k], levels[k + 1]
        tip = f"step at {_short(commits[index])}"
        if before is not None and after is not None:
            tip += f": level {_num(before)} \N{RIGHTWARDS ARROW} {_num(after)}"
        label = escape(_short(commits[index]))
        out.append(
            f'<g class="step" data-commit="{escape(commits[index])}"><title>{escape(tip)}</title>'
            f'<line class="step" x1="{x}" x2="{x}" y1="{frame.y0}" y2="{frame.y1}" '
            f'stroke="{STEP_COLOUR}" stroke-width="1.2" stroke-dasharray="3 2"/>'
            f'<text class="step-label" x="{x}" y="{frame.y0 - 4}" text-anchor="{anchor}" '
            f'fill="{STEP_COLOUR}">{label}</text></g>'
        )
    return out


def _baseline(
    frame: _Frame, commits: list[str], values: list[list[float]], index: int, metric: str
) -> str:
    """A hollow diamond around the baseline's mean (on the x axis when it has no value)."""
    seeds = values[index]
    x = frame.x(index)
    y = frame.y(_mean(seeds)) if seeds else float(frame.y1)
    size = 5.0
    tip = f"baseline {_short(commits[index])}\n{metric} = "
    tip += _num(_mean(seeds)) if seeds else "none"
    d = (
        f"M{coord(x)},{coord(y - size)} L{coord(x + size)},{coord(y)} "
        f"L{coord(x)},{coord(y + size)} L{coord(x - size)},{coord(y)} Z"
    )
    return (
        f'<g class="baseline" data-commit="{escape(commits[index])}"><title>{escape(tip)}</title>'
        f'<path class="baseline-marker" d="{d}" fill="none" stroke="{INK}" stroke-width="1.5"/>'
        "</g>"
    )


def history_svg(
    commits: list[str],
    values: list[list[float]],
    steps: list[int],
    baseline: int | None,
    metric: str,
    width: int = 320,
    height: int = 110,
) -> str:
    """The history of ``metric``: ``values[i]`` are commit ``commits[i]``'s values (one per
    seed; non-finite ones are left out), oldest first; ``steps`` the indices of the commits that
    changed the level (:func:`~xstash_plugin.history.changepoints.change_points`), ``baseline``
    the index of the commit compared against. Steps and a baseline outside the commits are left
    out. ValueError when ``commits`` and ``values`` differ in length."""
    if len(commits) != len(values):
        raise ValueError(f"{len(commits)} commits but {len(values)} lists of values")
    clean = [[float(v) for v in vs if math.isfinite(v)] for vs in values]
    present = sum(1 for vs in clean if vs)
    if present == 0:
        return _muted("no history yet", metric, width)
    if present == 1:
        index, only = next((i, vs) for i, vs in enumerate(clean) if vs)
        text = f"one commit so far ({_short(commits[index])}): {_num(_mean(only))}"
        return _muted(text, metric, width)
    frame = _Frame(len(commits), [v for vs in clean for v in vs], width, height)
    real_steps = sorted({i for i in steps if 0 < i < len(commits)})
    out = [
        _open(width, height, metric),
        f"<title>{escape(f'{metric} over {len(commits)} commits')}</title>",
        *_axes(frame, commits),
        *_steps(frame, commits, clean, real_steps),
        *_points(frame, commits, clean, metric),
    ]
    if baseline is not None and 0 <= baseline < len(commits):
        out.append(_baseline(frame, commits, clean, baseline, metric))
    out.append("</svg>")
    return "\n".join(out)
