"""The sweep plots of the results page: inline SVG, one metric against one swept key.

No plotting library: static SVG needs no network, prints, and diffs. The expectations are shaded
bands, drawn from the bounds each verdict carries as data (``Verdict.as_dict()["bounds"]``);
rows from records without them (older versions) get no band.

Seeds: a sweep run over several seeds is plotted from its *aggregate* rows (one per point, the
mean as the line); ``fold_seeds`` puts each seed row under its aggregate (``Sweep.seeds``),
and :class:`~xstash_plugin.report.svg_seeds.SeedLayers` add each line's confidence band and
its seeds as faint points. Without seeds there are no such layers: plots as they always were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

from xstash_plugin.report.axes import (
    BOTTOM,
    HEIGHT,
    LEFT,
    RIGHT,
    TOP,
    WIDTH,
    Plot,
    Scale,
    coord,
    cross,
    is_log_axis,
    log_ticks,
    nice_ticks,
    padded,
    tick_label,
)
from xstash_plugin.report.rows import (
    PASSING,
    fmt,
    is_number,
    metric_columns,
    metric_value,
    sweep_columns,
    verdict_of,
    verdict_text,
)
from xstash_plugin.report.svg_seeds import SeedLayers, fold_seeds, row_name

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#6E6E6E", "#000000")
BAND_COLOUR = "#2E9E44"


# ---------------------------------------------------------------------------------------------
# Expectations as bands


@dataclass(frozen=True)
class Band:
    """The values an expectation allows: ``low <= value <= high`` (either may be infinite)."""

    low: float
    high: float
    label: str


def band_of(verdict: dict[str, Any]) -> Band | None:
    """The allowed region of a verdict's expectation, from its ``bounds`` (``{"low": 0.9,
    "high": null}``, null: no bound on that side). None for no region to shade (``!=``) and for
    verdicts without bounds (records of older versions)."""
    bounds = verdict.get("bounds")
    if not isinstance(bounds, dict):
        return None
    low, high = bounds.get("low"), bounds.get("high")
    if not all(edge is None or is_number(edge) for edge in (low, high)):
        return None
    return Band(
        -math.inf if low is None else float(low),
        math.inf if high is None else float(high),
        f"expected {str(verdict.get('expected', '')).strip()}",
    )


def bands_for(rows: list[dict[str, Any]], metric: str) -> list[Band]:
    bands: list[Band] = []
    for row in rows:
        for verdict in row.get("verdicts") or []:
            if verdict.get("metric") != metric:
                continue
            band = band_of(verdict)
            if band is not None and band not in bands:
                bands.append(band)
    return bands


# ---------------------------------------------------------------------------------------------
# Sweeps


@dataclass
class Sweep:
    """The rows of one swept config: the same experiment at several points."""

    experiment: str
    config: str
    keys: list[str]
    rows: list[dict[str, Any]]  # seeded: the aggregate rows
    seeds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # aggregate id -> seeds

    @property
    def metrics(self) -> list[str]:
        """Metrics with at least one numeric value: those with expectations first."""
        return [
            name
            for name in metric_columns(self.rows)
            if any(is_number(metric_value(row, name)) for row in self.rows)
        ]


def sweeps(rows: list[dict[str, Any]]) -> list[Sweep]:
    """Rows with a sweep point, grouped by config and experiment, in order of appearance; seed
    rows under their aggregate (``Sweep.seeds``), so the seed is no swept key."""
    top, seeds = fold_seeds(rows)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in top:
        if row.get("point"):
            key = (str(row.get("config") or ""), str(row.get("experiment") or ""))
            groups.setdefault(key, []).append(row)
    return [
        Sweep(
            experiment,
            config,
            sweep_columns(group),
            group,
            {str(r["id"]): seeds[str(r["id"])] for r in group if str(r.get("id")) in seeds},
        )
        for (config, experiment), group in groups.items()
    ]


# ---------------------------------------------------------------------------------------------
# SVG plots


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Series:
    label: str
    colour: str
    points: list[tuple[Any, dict[str, Any]]]  # (x value, row)


def _series(sweep: Sweep, key: str) -> list[Series]:
    """One series per combination of the other swept keys' values (one series if none)."""
    others = [k for k in sweep.keys if k != key]
    order: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    for row in sweep.rows:
        point = row.get("point") or {}
        if key not in point:
            continue
        # The key's last part is enough in a legend (params.learning_rate -> learning_rate).
        label = ", ".join(
            f"{k.rsplit('.', 1)[-1]}={fmt(point.get(k))}" for k in others if k in point
        )
        order.setdefault(label or "all points", []).append((point[key], row))
    return [
        Series(label, PALETTE[index % len(PALETTE)], points)
        for index, (label, points) in enumerate(order.items())
    ]


def _layout(
    series: list[Series], bands: list[Band], metric: str, more: list[float] | None = None
) -> Plot:
    """The axes for ``series``: room for every value of ``metric``, every band edge, ``more``."""
    xs = [x for s in series for x, _ in s.points]
    numeric_x = bool(xs) and all(is_number(x) for x in xs)
    log_x = numeric_x and is_log_axis([float(x) for x in xs])
    categories: list[str] = []
    if not numeric_x:
        for x in xs:
            if fmt(x) not in categories:
                categories.append(fmt(x))
    ys = [float(v) for s in series for _, r in s.points if is_number(v := metric_value(r, metric))]
    edges = [e for b in bands for e in (b.low, b.high) if math.isfinite(e)] + (more or [])
    y_low, y_high = padded(min(ys + edges, default=0.0), max(ys + edges, default=1.0), False)
    y_scale = Scale(y_low, y_high, HEIGHT - BOTTOM, TOP, log=False)
    if not numeric_x:
        return Plot(categories, None, (0.0, 0.0), False, y_scale, y_low, y_high)
    lo, hi = padded(min(map(float, xs)), max(map(float, xs)), log_x)
    x_scale = Scale(lo, hi, LEFT, WIDTH - RIGHT, log=log_x)
    return Plot(categories, x_scale, (lo, hi), log_x, y_scale, y_low, y_high)


def plot_svg(sweep: Sweep, metric: str, key: str) -> str:
    """One plot: ``metric`` against the swept ``key``, one line per value of the other keys;
    a seeded sweep's lines with their confidence bands and seeds."""
    series = _series(sweep, key)
    bands = bands_for(sweep.rows, metric)
    layers = SeedLayers(sweep.rows, sweep.seeds, metric) if sweep.seeds else None
    more = [v for s in series for v in layers.values(s.points)] if layers else []
    plot = _layout(series, bands, metric, more)
    title = f"{metric} vs {key}"
    out = [
        # Inline SVG in HTML needs no xmlns: the page names no URL at all.
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" data-metric="{escape(metric)}" '
        f'data-key="{escape(key)}" data-scale="{plot.scale_name}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)} ({escape(sweep.experiment)})</title>",
        f'<text class="plot-title" x="{plot.x0}" y="22">{escape(_shorten(title, 60))}</text>',
        f'<rect class="frame" x="{plot.x0}" y="{plot.y0}" width="{plot.x1 - plot.x0}" '
        f'height="{plot.y1 - plot.y0}"/>',
    ]
    # Allowed regions first, so grid, lines and points are drawn over them.
    for band in bands:
        out.extend(_band_svg(plot, band))
    out.extend(_y_axis(plot))
    out.extend(_x_axis(plot))
    out.extend(_axis_labels(plot, metric, key))
    if layers is not None:  # the confidence bands under every line
        out.extend(line for s in series for line in layers.band(plot, s.colour, s.label, s.points))
    failed_marks = 0
    for s in series:
        if layers is not None:  # the seeds under their line
            lines, failed = layers.seeds_svg(plot, s.colour, s.points)
            out.extend(lines)
            failed_marks += failed
        lines, failed = _series_svg(plot, s, metric, layers)
        out.extend(lines)
        failed_marks += failed
    more_keys = layers.legend([s.colour for s in series]) if layers else []
    out.extend(_legend(series, bands, failed_marks, (plot.x1 + 14, plot.y0), more_keys))
    out.append("</svg>")
    return "\n".join(out)


def _band_svg(plot: Plot, band: Band) -> list[str]:
    x0, x1 = plot.x0, plot.x1
    top = plot.y_scale(min(band.high, plot.y_high))
    bottom = plot.y_scale(max(band.low, plot.y_low))
    if band.low == band.high:
        return [
            f'<line class="band-edge" x1="{x0}" x2="{x1}" y1="{coord(top)}" y2="{coord(top)}" '
            f'stroke-width="3"><title>{escape(band.label)}</title></line>'
        ]
    out = []
    if bottom > top:
        out.append(
            f'<rect class="band" x="{x0}" y="{coord(top)}" width="{x1 - x0}" '
            f'height="{coord(bottom - top)}"><title>{escape(band.label)}</title></rect>'
        )
    for edge in (band.low, band.high):
        if math.isfinite(edge) and plot.y_low <= edge <= plot.y_high:
            y = coord(plot.y_scale(edge))
            out.append(f'<line class="band-edge" x1="{x0}" x2="{x1}" y1="{y}" y2="{y}"/>')
    return out


def _y_axis(plot: Plot) -> list[str]:
    """Grid lines and ticks."""
    out = []
    for tick in nice_ticks(plot.y_low, plot.y_high):
        y = coord(plot.y_scale(tick))
        out.append(f'<line class="grid" x1="{plot.x0}" x2="{plot.x1}" y1="{y}" y2="{y}"/>')
        out.append(
            f'<text class="tick" x="{plot.x0 - 6}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(tick_label(tick))}</text>'
        )
    return out


def _x_axis(plot: Plot) -> list[str]:
    """Ticks at round values (numeric) or at each category; then both axis lines."""
    x0, x1, y0, y1 = plot.x0, plot.x1, plot.y0, plot.y1
    if plot.x_scale is not None:
        lo, hi = plot.x_range
        ticks = log_ticks(lo, hi) if plot.log_x else nice_ticks(lo, hi)
        x_ticks = [(plot.x_scale(t), tick_label(t)) for t in ticks]
    else:
        x_ticks = [(plot.x_pos(c), c) for c in plot.categories]
    rotate = sum(len(label) for _, label in x_ticks) * 6.5 > (x1 - x0) * 0.9
    out = []
    for x, label in x_ticks:
        xs_ = coord(x)
        out.append(f'<line class="grid" x1="{xs_}" x2="{xs_}" y1="{y0}" y2="{y1}"/>')
        out.append(f'<line class="axis" x1="{xs_}" x2="{xs_}" y1="{y1}" y2="{y1 + 4}"/>')
        short = escape(_shorten(label, 14))
        if rotate:
            out.append(
                f'<text class="tick" x="{xs_}" y="{y1 + 14}" text-anchor="end" '
                f'transform="rotate(-30 {xs_} {y1 + 14})">{short}</text>'
            )
        else:
            out.append(
                f'<text class="tick" x="{xs_}" y="{y1 + 16}" text-anchor="middle">{short}</text>'
            )
    out.append(f'<line class="axis" x1="{x0}" x2="{x1}" y1="{y1}" y2="{y1}"/>')
    out.append(f'<line class="axis" x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}"/>')
    return out


def _axis_labels(plot: Plot, metric: str, key: str) -> list[str]:
    scale_note = " (log scale)" if plot.log_x else ""
    mid = coord((plot.y0 + plot.y1) / 2)
    return [
        f'<text class="axis-label" x="{coord((plot.x0 + plot.x1) / 2)}" y="{HEIGHT - 12}" '
        f'text-anchor="middle">{escape(_shorten(key, 40) + scale_note)}</text>',
        f'<text class="axis-label" x="16" y="{mid}" text-anchor="middle" '
        f'transform="rotate(-90 16 {mid})">{escape(_shorten(metric, 32))}</text>',
    ]


def _series_svg(
    plot: Plot, s: Series, metric: str, layers: SeedLayers | None = None
) -> tuple[list[str], int]:
    """One series' line and points, and how many of its runs did not pass."""
    drawn = [(x, r, metric_value(r, metric)) for x, r in s.points]
    placed = [(x, r, float(v)) for x, r, v in drawn if is_number(v)]
    placed.sort(key=lambda item: plot.x_order(item[0]))
    out = []
    if len(placed) > 1:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{coord(plot.x_pos(x))},{coord(plot.y_scale(v))}"
            for i, (x, _, v) in enumerate(placed)
        )
        out.append(
            f'<path class="series" d="{path}" stroke="{s.colour}" data-series="{escape(s.label)}"/>'
        )
    failed = 0
    for x, row, value in drawn:
        note = layers.note(row) if layers else ""
        point = _point_svg(plot, s.colour, metric, x, row, value, note)
        if point:
            out.append(point)
        failed += row.get("status") not in PASSING
    return out, failed


def _point_svg(
    plot: Plot, colour: str, metric: str, x: Any, row: dict[str, Any], value: Any, note: str = ""
) -> str:
    """A run's point, crossed when it did not pass (on the x axis when it has no value)."""
    failed = row.get("status") not in PASSING
    cx = coord(plot.x_pos(x))
    tip = f"{row_name(row)}\n{metric} = {fmt(value) or 'none'}{note}"
    tip += f"\nstatus: {row.get('status')}"
    verdict = verdict_of(row, metric)
    if verdict is not None:
        tip += f"\n{verdict_text(verdict)}"
    tip_el = f"<title>{escape(tip)}</title>"
    status = escape(str(row.get("status")))
    if is_number(value):
        cy = coord(plot.y_scale(float(value)))
        if failed:
            return (
                f'<g class="point failed" data-status="{status}">{tip_el}'
                f'<circle cx="{cx}" cy="{cy}" r="6" fill="#fff" stroke="{colour}" '
                f'stroke-width="2"/>{cross(float(cx), float(cy), 4.5)}</g>'
            )
        return f'<circle class="point" cx="{cx}" cy="{cy}" r="4" fill="{colour}">{tip_el}</circle>'
    if failed:
        return (
            f'<g class="point failed no-value" data-status="{status}">{tip_el}'
            f"{cross(float(cx), plot.y1 - 7, 5)}</g>"
        )
    return ""


def _legend(
    series: list[Series],
    bands: list[Band],
    failed: int,
    at: tuple[float, float],
    more: list[tuple[str, str]],
) -> list[str]:
    out = [f'<g class="legend" transform="translate({coord(at[0])},{coord(at[1])})">']
    line = 0
    for s in series[:12]:
        ty = line * 18 + 8
        out.append(
            f'<line x1="0" x2="18" y1="{ty}" y2="{ty}" stroke="{s.colour}" stroke-width="2"/>'
            f'<circle cx="9" cy="{ty}" r="3.5" fill="{s.colour}"/>'
            f'<text x="24" y="{ty}" dominant-baseline="middle">{escape(_shorten(s.label, 20))}'
            f"<title>{escape(s.label)}</title></text>"
        )
        line += 1
    if len(series) > 12:
        out.append(f'<text x="0" y="{line * 18 + 8}">+{len(series) - 12} more</text>')
        line += 1
    for band in bands:
        ty = line * 18 + 8
        out.append(
            f'<rect class="band" x="0" y="{ty - 6}" width="18" height="12"/>'
            f'<text x="24" y="{ty}" dominant-baseline="middle">allowed: '
            f"{escape(_shorten(band.label.removeprefix('expected '), 14))}"
            f"<title>{escape(band.label)}</title></text>"
        )
        line += 1
    for swatch, label in more:
        ty = line * 18 + 8
        out.append(
            f'<g transform="translate(0,{ty})">{swatch}</g>'
            f'<text x="24" y="{ty}" dominant-baseline="middle">{escape(_shorten(label, 20))}'
            "</text>"
        )
        line += 1
    if failed:
        ty = line * 18 + 8
        out.append(
            cross(9, ty, 4.5)
            + f'<text x="24" y="{ty}" dominant-baseline="middle">failed run ({failed})</text>'
        )
    out.append("</g>")
    return out
