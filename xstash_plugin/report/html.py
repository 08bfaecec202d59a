"""The ``--xstash-report results.html`` page: one self-contained file, readable offline.

The results table (sortable, filterable, failed runs first, each row linking to its run
directory and logs) and, for every sweep, one plot of each metric against each swept key, with
the expectations as shaded bands. Plots are inline SVG written here (no plotting library: static
SVG needs no network, prints, and diffs); a little vanilla JavaScript sorts and filters the
table. ``results.html#sort=accuracy:desc`` opens the page sorted, through the same function a
click on a column header calls.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from xstash_plugin.config.durations import format_duration
from xstash_plugin.config.yamlio import elide
from xstash_plugin.report.rows import CELL_LIMIT, flatten, fmt, metric_columns, sweep_columns

RUN_FILES = (("stdout", "stdout.log"), ("stderr", "stderr.log"), ("record", "xstash.json"))
PASSING = ("passed", "reused")
# Failed and broken runs first: they are what a reader opens the page for.
STATUS_RANK = {
    "failed": 0,
    "error": 1,
    "timeout": 2,
    "interrupted": 3,
    "not run": 4,
    "submitted": 5,
    "skipped": 6,
    "reused": 8,
    "passed": 9,
}
OTHER_RANK = 7
FIXED = ("status", "experiment", "tool", "tags", "duration", "estimate")
# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#6E6E6E", "#000000")
FAIL_COLOUR = "#C0392B"
BAND_COLOUR = "#2E9E44"

# Plot geometry (SVG user units = CSS pixels).
WIDTH, HEIGHT = 560, 330
LEFT, RIGHT, TOP, BOTTOM = 66, 168, 40, 62


# ---------------------------------------------------------------------------------------------
# Rows


def status_rank(status: Any) -> int:
    return STATUS_RANK.get(str(status), OTHER_RANK)


def failed_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with failed and broken runs first; otherwise in their given order (stable)."""
    return sorted(rows, key=lambda row: status_rank(row.get("status")))


def is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


_FLAT: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}


def metric_value(row: dict[str, Any], metric: str) -> Any:
    """One metric of a row; each row's metrics are flattened once (the page asks for every
    metric of every row: flattening each time would be quadratic in the number of metrics)."""
    metrics = row.get("metrics") or {}
    cached = _FLAT.get(id(metrics))
    if cached is None or cached[0] is not metrics:
        if len(_FLAT) > 100_000:
            _FLAT.clear()
        cached = _FLAT[id(metrics)] = (metrics, flatten(metrics))
    return cached[1].get(metric)


def display_name(row: dict[str, Any]) -> str:
    """The test name without its file: ``lr_sweep[params.lr=0.1-model=small]``."""
    return str(row.get("id", "")).rsplit("::", 1)[-1]


def link_target(target: Path, base: Path) -> str:
    """An href for ``target`` from a page in folder ``base``: relative when both share a folder
    below the file-system root (the page can move with its runs), else an absolute file URI."""
    target = Path(os.path.abspath(target))
    base = Path(os.path.abspath(base))
    try:
        common = Path(os.path.commonpath([target, base]))
        relative = os.path.relpath(target, base)
    except ValueError:  # other drive (Windows)
        return target.as_uri()
    if common == Path(common.anchor):
        return target.as_uri()
    return quote(Path(relative).as_posix())


def run_links(row: dict[str, Any], base: Path) -> list[tuple[str, str, str]]:
    """(label, href, path) for the run directory and those of its logs that exist."""
    raw = row.get("run_dir")
    if not raw:
        return []
    run_dir = Path(str(raw))
    if not run_dir.is_dir():
        return []
    links = [("run dir", link_target(run_dir, base) + "/", str(run_dir))]
    for label, name in RUN_FILES:
        path = run_dir / name
        if path.is_file():
            links.append((label, link_target(path, base), str(path)))
    return links


# ---------------------------------------------------------------------------------------------
# Expectations as bands


@dataclass(frozen=True)
class Band:
    """The values an expectation allows: ``low <= value <= high`` (either may be infinite)."""

    low: float
    high: float
    label: str


_CMP = re.compile(r"^(>=|<=|==|>|<)\s*(\S+)$")
_REL = re.compile(r"^(\S+) ± (\S+)%$")
_TOL = re.compile(r"^(\S+) ± (\S+)$")
_BOUNDS = re.compile(r"^\[(\S+), (\S+)\] \(ref (\S+)\)$")


def parse_band(expected: str) -> Band | None:
    """The allowed region of an expectation as :meth:`Expectation.describe` writes it
    (``>= 0.9``, ``0.31 ± 0.05``, ``0.31 ± 10%``, ``[90, 130] (ref 100)``); None for ``!=``
    (no region to shade) or text it does not know."""
    text = expected.strip()
    label = f"expected {text}"
    try:
        if match := _CMP.match(text):
            op, value = match.group(1), float(match.group(2))
            if op in (">=", ">"):
                return Band(value, math.inf, label)
            if op in ("<=", "<"):
                return Band(-math.inf, value, label)
            return Band(value, value, label)
        if match := _REL.match(text):
            ref, percent = float(match.group(1)), float(match.group(2))
            spread = abs(ref) * percent / 100
            return Band(ref - spread, ref + spread, label)
        if match := _TOL.match(text):
            ref, tol = float(match.group(1)), float(match.group(2))
            return Band(ref - tol, ref + tol, label)
        if match := _BOUNDS.match(text):
            return Band(float(match.group(1)), float(match.group(2)), label)
    except ValueError:
        return None
    return None


def bands_for(rows: list[dict[str, Any]], metric: str) -> list[Band]:
    bands: list[Band] = []
    for row in rows:
        for verdict in row.get("verdicts") or []:
            if verdict.get("metric") != metric:
                continue
            band = parse_band(str(verdict.get("expected", "")))
            if band is not None and band not in bands:
                bands.append(band)
    return bands


def verdict_of(row: dict[str, Any], metric: str) -> dict[str, Any] | None:
    for verdict in row.get("verdicts") or []:
        if verdict.get("metric") == metric:
            return dict(verdict)
    return None


# ---------------------------------------------------------------------------------------------
# Sweeps


@dataclass
class Sweep:
    """The rows of one swept config: the same experiment at several points."""

    experiment: str
    config: str
    keys: list[str]
    rows: list[dict[str, Any]]

    @property
    def metrics(self) -> list[str]:
        """Metrics with at least one numeric value: those with expectations first."""
        return [
            name
            for name in metric_columns(self.rows)
            if any(is_number(metric_value(row, name)) for row in self.rows)
        ]


def sweeps(rows: list[dict[str, Any]]) -> list[Sweep]:
    """Rows with a sweep point, grouped by config and experiment, in order of appearance."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("point"):
            key = (str(row.get("config") or ""), str(row.get("experiment") or ""))
            groups.setdefault(key, []).append(row)
    return [
        Sweep(experiment, config, sweep_columns(group), group)
        for (config, experiment), group in groups.items()
    ]


# ---------------------------------------------------------------------------------------------
# Axes


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


class Scale:
    """Maps data values to pixels: linear or logarithmic."""

    def __init__(self, low: float, high: float, start: float, end: float, log: bool) -> None:
        self.log = log
        if log:
            low, high = math.log10(low), math.log10(high)
        if high == low:
            pad = abs(low) * 0.1 or 1.0
            low, high = low - pad, high + pad
        self.low, self.high, self.start, self.end = low, high, start, end

    def __call__(self, value: float) -> float:
        if self.log:
            value = math.log10(value)
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


def _padded(low: float, high: float, log: bool) -> tuple[float, float]:
    if log:
        return low / 10**0.1, high * 10**0.1
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.08
    return low - pad, high + pad


# ---------------------------------------------------------------------------------------------
# SVG plots


def _n(value: float) -> str:
    """Coordinates: short and stable (diffable)."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


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


def plot_svg(sweep: Sweep, metric: str, key: str) -> str:
    """One plot: ``metric`` against the swept ``key``, one line per value of the other keys."""
    series = _series(sweep, key)
    xs = [x for s in series for x, _ in s.points]
    numeric_x = bool(xs) and all(is_number(x) for x in xs)
    log_x = numeric_x and is_log_axis([float(x) for x in xs])
    categories: list[str] = []
    if not numeric_x:
        for x in xs:
            if fmt(x) not in categories:
                categories.append(fmt(x))
    bands = bands_for(sweep.rows, metric)
    ys = [float(v) for s in series for _, r in s.points if is_number(v := metric_value(r, metric))]
    edges = [e for b in bands for e in (b.low, b.high) if math.isfinite(e)]
    y_low, y_high = _padded(min(ys + edges, default=0.0), max(ys + edges, default=1.0), False)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    y_scale = Scale(y_low, y_high, y1, y0, log=False)
    if numeric_x:
        fx = [float(x) for x in xs]
        lo, hi = _padded(min(fx), max(fx), log_x)
        x_scale = Scale(lo, hi, x0, x1, log=log_x)

        def x_pos(x: Any) -> float:
            return x_scale(float(x))

    else:

        def x_pos(x: Any) -> float:
            return x0 + (categories.index(fmt(x)) + 0.5) / len(categories) * (x1 - x0)

    title = f"{metric} vs {key}"
    scale = "log" if log_x else "linear" if numeric_x else "category"
    out = [
        # Inline SVG in HTML needs no xmlns: the page names no URL at all.
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" data-metric="{escape(metric)}" '
        f'data-key="{escape(key)}" data-scale="{scale}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)} ({escape(sweep.experiment)})</title>",
        f'<text class="plot-title" x="{x0}" y="22">{escape(_shorten(title, 60))}</text>',
        f'<rect class="frame" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"/>',
    ]
    # Allowed regions first, so grid, lines and points are drawn over them.
    for band in bands:
        top = y_scale(min(band.high, y_high))
        bottom = y_scale(max(band.low, y_low))
        if band.low == band.high:
            out.append(
                f'<line class="band-edge" x1="{x0}" x2="{x1}" y1="{_n(top)}" y2="{_n(top)}" '
                f'stroke-width="3"><title>{escape(band.label)}</title></line>'
            )
            continue
        if bottom > top:
            out.append(
                f'<rect class="band" x="{x0}" y="{_n(top)}" width="{x1 - x0}" '
                f'height="{_n(bottom - top)}"><title>{escape(band.label)}</title></rect>'
            )
        for edge in (band.low, band.high):
            if math.isfinite(edge) and y_low <= edge <= y_high:
                y = _n(y_scale(edge))
                out.append(f'<line class="band-edge" x1="{x0}" x2="{x1}" y1="{y}" y2="{y}"/>')
    # Y axis: grid and ticks.
    for tick in nice_ticks(y_low, y_high):
        y = _n(y_scale(tick))
        out.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y}" y2="{y}"/>')
        out.append(
            f'<text class="tick" x="{x0 - 6}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(tick_label(tick))}</text>'
        )
    # X axis: ticks at round values (numeric) or at each category.
    if numeric_x:
        ticks = log_ticks(lo, hi) if log_x else nice_ticks(lo, hi)
        x_ticks = [(x_scale(t), tick_label(t)) for t in ticks]
    else:
        x_ticks = [(x_pos(c), c) for c in categories]
    rotate = sum(len(label) for _, label in x_ticks) * 6.5 > (x1 - x0) * 0.9
    for x, label in x_ticks:
        xs_ = _n(x)
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
    # Axis labels.
    scale_note = " (log scale)" if log_x else ""
    out.append(
        f'<text class="axis-label" x="{_n((x0 + x1) / 2)}" y="{HEIGHT - 12}" '
        f'text-anchor="middle">{escape(_shorten(key, 40) + scale_note)}</text>'
    )
    mid = _n((y0 + y1) / 2)
    out.append(
        f'<text class="axis-label" x="16" y="{mid}" text-anchor="middle" '
        f'transform="rotate(-90 16 {mid})">{escape(_shorten(metric, 32))}</text>'
    )
    # Lines and points.
    failed_marks = 0
    for s in series:
        drawn = [(x, r, metric_value(r, metric)) for x, r in s.points]
        placed = [(x, r, float(v)) for x, r, v in drawn if is_number(v)]
        if numeric_x:
            placed.sort(key=lambda item: float(item[0]))
        else:
            placed.sort(key=lambda item: categories.index(fmt(item[0])))
        if len(placed) > 1:
            path = " ".join(
                f"{'M' if i == 0 else 'L'}{_n(x_pos(x))},{_n(y_scale(v))}"
                for i, (x, _, v) in enumerate(placed)
            )
            out.append(
                f'<path class="series" d="{path}" stroke="{s.colour}" '
                f'data-series="{escape(s.label)}"/>'
            )
        for x, row, value in drawn:
            failed = row.get("status") not in PASSING
            cx = _n(x_pos(x))
            tip = f"{display_name(row)}\n{metric} = {fmt(value) or 'none'}"
            tip += f"\nstatus: {row.get('status')}"
            verdict = verdict_of(row, metric)
            if verdict is not None:
                tip += (
                    f"\n{'ok' if verdict.get('ok') else 'FAIL'}: expected {verdict.get('expected')}"
                )
            tip_el = f"<title>{escape(tip)}</title>"
            if is_number(value):
                cy = _n(y_scale(float(value)))
                if failed:
                    failed_marks += 1
                    out.append(
                        f'<g class="point failed" data-status="{escape(str(row.get("status")))}">'
                        f"{tip_el}"
                        f'<circle cx="{cx}" cy="{cy}" r="6" fill="#fff" stroke="{s.colour}" '
                        f'stroke-width="2"/>{_cross(float(cx), float(cy), 4.5)}</g>'
                    )
                else:
                    out.append(
                        f'<circle class="point" cx="{cx}" cy="{cy}" r="4" fill="{s.colour}">'
                        f"{tip_el}</circle>"
                    )
            elif failed:
                # No value to plot: mark the failed run on the x axis.
                failed_marks += 1
                out.append(
                    '<g class="point failed no-value" '
                    f'data-status="{escape(str(row.get("status")))}">{tip_el}'
                    f"{_cross(float(cx), y1 - 7, 5)}</g>"
                )
    out.extend(_legend(series, bands, failed_marks, x1 + 14, y0))
    out.append("</svg>")
    return "\n".join(out)


def _cross(cx: float, cy: float, size: float) -> str:
    return (
        f'<path class="cross" d="M{_n(cx - size)},{_n(cy - size)} L{_n(cx + size)},{_n(cy + size)} '
        f'M{_n(cx - size)},{_n(cy + size)} L{_n(cx + size)},{_n(cy - size)}" '
        f'stroke="{FAIL_COLOUR}" stroke-width="2.5"/>'
    )


def _legend(series: list[Series], bands: list[Band], failed: int, x: float, y: float) -> list[str]:
    out = [f'<g class="legend" transform="translate({_n(x)},{_n(y)})">']
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
    if failed:
        ty = line * 18 + 8
        out.append(
            _cross(9, ty, 4.5)
            + f'<text x="24" y="{ty}" dominant-baseline="middle">failed run ({failed})</text>'
        )
    out.append("</g>")
    return out


# ---------------------------------------------------------------------------------------------
# The page


def _columns(rows: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(column id, swept key) and (column id, metric): ids unique among all columns."""
    swept = [(f"sweep.{k}" if k in FIXED else k, k) for k in sweep_columns(rows)]
    taken = {*FIXED, *(c for c, _ in swept)}
    metrics = [(f"metrics.{m}" if m in taken else m, m) for m in metric_columns(rows)]
    return swept, metrics


def _td(text: str, sort: Any = None, cls: str = "", title: str = "", raw: bool = False) -> str:
    attrs = ""
    if sort is not None:
        attrs += f' data-sort="{escape(str(sort))}"'
    if cls:
        attrs += f' class="{cls}"'
    if title:
        attrs += f' title="{escape(title)}"'
    return f"<td{attrs}>{text if raw else escape(text)}</td>"


def _sort_key(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if is_number(value):
        return repr(float(value))
    return elide(fmt(value), 4 * CELL_LIMIT)


def _row_html(
    row: dict[str, Any],
    order: int,
    swept: list[tuple[str, str]],
    metrics: list[tuple[str, str]],
    base: Path,
) -> str:
    status = str(row.get("status") or "")
    tags = [str(t) for t in row.get("tags") or []]
    point = row.get("point") or {}
    passing = status in PASSING
    attrs = (
        f' data-order="{order}" data-id="{escape(str(row.get("id", "")))}" '
        f'data-status="{escape(status)}" '
        f'data-outcome="{"pass" if passing else "fail"}" '
        f'data-tool="{escape(str(row.get("tool") or ""))}" '
        f'data-tags="{escape(json.dumps(tags))}" class="{"pass" if passing else "fail"}"'
    )
    cells = []
    exit_code = row.get("exit_code")
    status_title = "" if exit_code is None else f"exit code {exit_code}"
    if row.get("reused_from"):
        status_title += f"; reused run {row['reused_from']}"
    badge = f'<span class="badge s-{escape(status.replace(" ", "-"))}">{escape(status)}</span>'
    if isinstance(exit_code, int) and exit_code != 0:
        why = f"exit code {exit_code}" if exit_code > 0 else f"killed by signal {-exit_code}"
        badge += f'<span class="why">{why}</span>'
    elif not passing and any(not v.get("ok") for v in row.get("verdicts") or []):
        badge += '<span class="why">expectation not met</span>'
    cells.append(
        _td(
            badge,
            sort=status_rank(status),
            title=status_title.strip("; "),
            raw=True,
        )
    )
    name = display_name(row)
    cells.append(
        _td(
            f'<span class="name">{escape(name)}</span> '
            f'<span class="config">{escape(str(row.get("config") or ""))}</span>',
            sort=name,
            title=str(row.get("id", "")),
            raw=True,
        )
    )
    cells.append(_td(str(row.get("tool") or "")))
    cells.append(_td(", ".join(tags)))
    for _, key in swept:
        value = point.get(key)
        shown = elide(fmt(value), 4 * CELL_LIMIT)
        cells.append(_td(shown, sort=_sort_key(value), cls="num" if is_number(value) else ""))
    for _, metric in metrics:
        value = metric_value(row, metric)
        verdict = verdict_of(row, metric)
        text = escape(elide(fmt(value), 4 * CELL_LIMIT))
        cls = "num" if is_number(value) else ""
        title = ""
        if verdict is not None:
            ok = bool(verdict.get("ok"))
            cls += " ok" if ok else " bad"
            title = f"{'ok' if ok else 'FAIL'}: expected {verdict.get('expected')}"
            if verdict.get("note"):
                title += f" ({verdict['note']})"
            mark = "✓" if ok else "✗"
            text += f' <span class="mark">{mark}</span>'
            if not ok:
                text += (
                    f'<span class="expected">expected {escape(str(verdict.get("expected")))}</span>'
                )
        cells.append(_td(text, sort=_sort_key(value), cls=cls.strip(), title=title, raw=True))
    duration = row.get("duration")
    estimate = row.get("estimated_seconds")
    slow = bool(estimate and duration is not None and float(duration) > 2 * float(estimate))
    cells.append(
        _td(
            "" if duration is None else format_duration(float(duration)),
            sort="" if duration is None else repr(float(duration)),
            cls="num slow" if slow else "num",
            title="more than twice the estimated runtime" if slow else "",
        )
    )
    cells.append(
        _td(str(row.get("estimated_runtime") or ""), sort="" if not estimate else repr(estimate))
    )
    links = run_links(row, base)
    link_html = " ".join(
        f'<a href="{escape(href)}" title="{escape(path)}" data-kind="{escape(label)}">'
        f"{escape(label)}</a>"
        for label, href, path in links
    )
    cells.append(_td(link_html or '<span class="muted">no run directory</span>', raw=True))
    return f"<tr{attrs}>" + "".join(cells) + "</tr>"


def _summary(rows: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for row in failed_first(rows):
        status = str(row.get("status") or "")
        counts[status] = counts.get(status, 0) + 1
    passing = sum(counts.get(s, 0) for s in PASSING)
    failing = len(rows) - passing
    parts = [
        f'<span class="count total"><b>{len(rows)}</b> experiment{"s" * (len(rows) != 1)}</span>',
        f'<span class="count pass"><b>{passing}</b> passed</span>',
        f'<span class="count {"fail" if failing else "none"}"><b>{failing}</b> not passed</span>',
    ]
    detail = ", ".join(f"{n} {escape(s)}" for s, n in counts.items())
    return (
        f'<p class="summary" id="summary" data-total="{len(rows)}" data-passed="{passing}" '
        f'data-failed="{failing}">'
        + " ".join(parts)
        + f' <span class="detail">({detail})</span></p>'
    )


def _head_class(
    column: tuple[str, str], swept: list[tuple[str, str]], metrics: list[tuple[str, str]]
) -> str:
    return "swept" if column in swept else "metric" if column in metrics else ""


def _select(ident: str, label: str, values: list[str]) -> str:
    options = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
    return (
        f'<label>{escape(label)} <select id="{ident}"><option value="">all</option>'
        f"{options}</select></label>"
    )


def render_html(
    path: Path, rows: list[dict[str, Any]], generated: datetime.datetime | None = None
) -> str:
    """The page for ``rows``, with links relative to ``path``'s folder."""
    base = Path(os.path.abspath(path)).parent
    when = (generated or datetime.datetime.now()).strftime("%Y-%m-%d %H:%M")
    ordered = failed_first(rows)
    swept, metrics = _columns(rows)
    tags = sorted({str(t) for row in rows for t in row.get("tags") or []})
    tools = sorted({str(row.get("tool")) for row in rows if row.get("tool")})
    statuses = sorted({str(row.get("status")) for row in rows}, key=status_rank)
    head = [("status", "status"), ("experiment", "experiment"), ("tool", "tool"), ("tags", "tags")]
    head += [(c, k) for c, k in swept] + [(c, m) for c, m in metrics]
    head += [("duration", "duration"), ("estimate", "estimate")]
    header_cells = "".join(
        f'<th scope="col" data-column="{escape(column)}" '
        f'class="{_head_class((column, label), swept, metrics)}">'
        f'<button type="button" title="sort by {escape(label)}">{escape(label)}'
        f'<span class="arrow" aria-hidden="true"></span></button></th>'
        for column, label in head
    )
    header_cells += '<th scope="col">run directory &amp; logs</th>'
    body = "\n".join(
        _row_html(row, index, swept, metrics, base) for index, row in enumerate(ordered)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>xstash results: {len(rows)} experiment(s)</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>xstash results</h1>",
        _summary(rows),
        f'<p class="muted">Generated {escape(when)} by <code>pytest --xstash-report</code>. '
        "Failed runs are listed first; click a column header to sort (numbers sort as "
        "numbers), use the filters to narrow the table, and follow a row's links to its run "
        "directory and logs.</p>",
        "</header>",
        '<section id="results-section">',
        "<h2>Experiments</h2>",
        '<div class="filters">',
        _select("filter-tag", "Tag", tags),
        _select("filter-tool", "Tool", tools),
        _select("filter-status", "Status", statuses),
        '<label>Search <input id="filter-text" type="search" placeholder="experiment or config">'
        "</label>",
        f'<span id="shown">{len(rows)} of {len(rows)} shown</span>',
        "</div>",
        '<div class="table-wrap">',
        f'<table id="results" data-sort=""><thead><tr>{header_cells}</tr></thead>',
        f"<tbody>\n{body}\n</tbody></table>",
        "</div>",
        "</section>",
    ]
    if not rows:
        parts.append('<p class="muted">No experiment ran in this session.</p>')
    found = sweeps(rows)
    if found:
        parts += [
            '<section id="sweeps">',
            "<h2>Sweeps</h2>",
            '<p class="muted how">Each plot shows one metric against one swept key; with two '
            "or more swept keys, one line per value of the others. "
            '<span class="key"><svg width="18" height="12" aria-hidden="true"><rect width="18" '
            f'height="12" fill="{BAND_COLOUR}" fill-opacity="0.16" stroke="{BAND_COLOUR}" '
            'stroke-dasharray="4 3"/></svg> shaded band: the values the expectation '
            "(<code>xstash.expect</code>) allows</span> "
            '<span class="key"><svg width="12" height="12" aria-hidden="true">'
            f'<path d="M2,2 L10,10 M2,10 L10,2" stroke="{FAIL_COLOUR}" stroke-width="2.5"/>'
            "</svg> a run that did not pass (on the axis when it has no value)</span> "
            "Hover a point for its experiment and value.</p>",
        ]
        for sweep in found:
            parts.append(_sweep_html(sweep))
        parts.append("</section>")
    parts += [f"<script>{SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _sweep_html(sweep: Sweep) -> str:
    failed = sum(row.get("status") not in PASSING for row in sweep.rows)
    metrics = sweep.metrics
    meta = (
        f"{escape(sweep.config)} · {len(sweep.rows)} point(s) · swept: "
        f"{escape(', '.join(sweep.keys))} · "
        + (f'<span class="fail-text">{failed} not passed</span>' if failed else "all passed")
    )
    out = [
        f'<article class="sweep" data-experiment="{escape(sweep.experiment)}">',
        f"<h3>{escape(sweep.experiment)}</h3>",
        f'<p class="muted">{meta}</p>',
    ]
    if not metrics:
        out.append('<p class="muted">No numeric metrics to plot.</p>')
    else:
        out.append('<div class="plots">')
        for metric in metrics:
            for key in sweep.keys:
                out.append(f'<figure class="plot-box">{plot_svg(sweep, metric, key)}</figure>')
        out.append("</div>")
    out.append("</article>")
    return "\n".join(out)


CSS = """
:root { --fail: #C0392B; --pass: #1E8449; --muted: #5f6368; --line: #d9dce1; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; margin: 0 auto; padding: 20px 28px 40px; color: #202124; max-width: 1800px; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 19px; margin: 28px 0 10px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 2px; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.muted { color: var(--muted); margin: 4px 0; }
.summary { font-size: 16px; margin: 6px 0; }
.count { display: inline-block; padding: 3px 10px; border-radius: 12px; margin-right: 6px;
  background: #eef0f3; }
.count.pass { background: #e3f4e8; color: var(--pass); }
.count.fail { background: #fbe4e1; color: var(--fail); }
.detail { color: var(--muted); font-size: 13px; }
.filters { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin: 8px 0; }
.filters select, .filters input { font: inherit; padding: 2px 4px; }
#shown { color: var(--muted); }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; min-width: 60%; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: left;
  vertical-align: top; }
th { background: #f3f4f6; position: sticky; top: 0; white-space: nowrap; }
th button { all: unset; cursor: pointer; font-weight: 600; }
th button:focus-visible { outline: 2px solid #0072B2; }
th[aria-sort=ascending] .arrow::after { content: " ▲"; }
th[aria-sort=descending] .arrow::after { content: " ▼"; }
th.metric { background: #eef3fb; }
th.swept { background: #f6f1e6; }
tr.fail { background: #fff6f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.bad { color: var(--fail); font-weight: 600; }
td.ok .mark { color: var(--pass); }
td .expected { display: block; font-size: 11px; font-weight: normal; }
td.slow { color: #B9770E; }
.name { display: block; font-weight: 600; }
.why { display: block; color: var(--fail); font-size: 11px; margin-top: 2px; }
.config { display: block; color: var(--muted); font-size: 12px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; background: #eef0f3; }
.badge.s-passed, .badge.s-reused { background: #e3f4e8; color: var(--pass); }
.badge.s-failed, .badge.s-error, .badge.s-timeout { background: #fbe4e1; color: var(--fail); }
td a { margin-right: 6px; white-space: nowrap; }
.plots { display: flex; flex-wrap: wrap; gap: 10px; }
figure.plot-box { margin: 0; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
.key { white-space: nowrap; margin-right: 10px; }
.key svg { vertical-align: -1px; }
.fail-text { color: var(--fail); font-weight: 600; }
svg.plot { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  display: block; }
svg.plot .plot-title { font-size: 14px; font-weight: 600; fill: #202124; }
svg.plot .frame { fill: #fff; stroke: none; }
svg.plot .grid { stroke: #eceef1; }
svg.plot .axis { stroke: #5f6368; }
svg.plot .tick { fill: #3c4043; font-size: 11px; }
svg.plot .axis-label { fill: #202124; font-size: 12px; font-weight: 600; }
svg.plot .band, .key rect { fill: #2E9E44; fill-opacity: 0.16; }
svg.plot .band-edge { stroke: #2E9E44; stroke-dasharray: 5 4; }
svg.plot .series { fill: none; stroke-width: 2; }
svg.plot .legend text { fill: #202124; font-size: 12px; }
@media print { .filters { display: none; } th { position: static; } }
"""

SCRIPT = r"""
"use strict";
(function () {
  var table = document.getElementById("results");
  if (!table) return;
  var body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var state = { sort: "", tag: "", tool: "", status: "", q: "" };

  function cellKey(row, index) {
    var cell = row.cells[index];
    var value = cell.getAttribute("data-sort");
    return value === null ? cell.textContent.trim() : value;
  }
  function asNumber(text) {
    return text !== "" && isFinite(Number(text)) ? Number(text) : null;
  }
  // Numbers compare as numbers (before text); text compares naturally (run2 < run10).
  function compare(a, b) {
    var x = asNumber(a), y = asNumber(b);
    if (x !== null && y !== null) return x - y;
    if (x !== null) return -1;
    if (y !== null) return 1;
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }
  function columnIndex(column) {
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].getAttribute("data-column") === column) return i;
    }
    return -1;
  }
  // Sort the table by a column: what a header click does, and what #sort=col:desc does.
  function sortTable(column, direction) {
    var index = columnIndex(column);
    if (index < 0) return false;
    var sign = direction === "desc" ? -1 : 1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = cellKey(r1, index), b = cellKey(r2, index);
      if (a === "" || b === "") {
        if (a !== b) return a === "" ? 1 : -1;  // empty cells last, either direction
      } else {
        var c = sign * compare(a, b);
        if (c !== 0) return c;
      }
      return Number(r1.getAttribute("data-order")) - Number(r2.getAttribute("data-order"));
    });
    rows.forEach(function (row) { body.appendChild(row); });
    heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
    heads[index].setAttribute("aria-sort", sign < 0 ? "descending" : "ascending");
    state.sort = column + ":" + (sign < 0 ? "desc" : "asc");
    table.setAttribute("data-sort", state.sort);
    return true;
  }
  function applyFilters() {
    var shown = 0, rows = body.rows;
    var q = state.q.toLowerCase();
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      var tags = JSON.parse(row.getAttribute("data-tags") || "[]");
      var ok = (!state.tag || tags.indexOf(state.tag) >= 0) &&
        (!state.tool || row.getAttribute("data-tool") === state.tool) &&
        (!state.status || row.getAttribute("data-status") === state.status) &&
        (!q || row.cells[1].textContent.toLowerCase().indexOf(q) >= 0);
      row.hidden = !ok;
      if (ok) shown++;
    }
    document.getElementById("shown").textContent = shown + " of " + rows.length + " shown";
  }
  function writeHash() {
    var parts = [];
    ["sort", "tag", "tool", "status", "q"].forEach(function (k) {
      if (state[k]) parts.push(k + "=" + encodeURIComponent(state[k]));
    });
    var target = parts.length ? "#" + parts.join("&") : location.pathname;
    try { history.replaceState(null, "", target); }
    catch (e) { /* some browsers refuse on file: pages; the page still works */ }
  }
  function readHash() {
    var params = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var eq = part.indexOf("=");
      if (eq > 0) params[part.slice(0, eq)] = decodeURIComponent(part.slice(eq + 1));
    });
    ["tag", "tool", "status", "q"].forEach(function (k) {
      state[k] = params[k] || "";
      var input = document.getElementById(k === "q" ? "filter-text" : "filter-" + k);
      if (input) input.value = state[k];
    });
    if (params.sort) {
      var cut = params.sort.lastIndexOf(":");
      var column = cut > 0 ? params.sort.slice(0, cut) : params.sort;
      var direction = cut > 0 ? params.sort.slice(cut + 1) : "asc";
      sortTable(column, direction === "desc" ? "desc" : "asc");
    }
    applyFilters();
  }
  heads.forEach(function (head) {
    var button = head.querySelector("button");
    if (!button) return;
    button.addEventListener("click", function () {
      var column = head.getAttribute("data-column");
      var ascending = head.getAttribute("aria-sort") !== "ascending";
      sortTable(column, ascending ? "asc" : "desc");
      writeHash();
    });
  });
  [["filter-tag", "tag"], ["filter-tool", "tool"], ["filter-status", "status"],
   ["filter-text", "q"]].forEach(function (pair) {
    var input = document.getElementById(pair[0]);
    if (!input) return;
    input.addEventListener("input", function () {
      state[pair[1]] = input.value;
      applyFilters();
      writeHash();
    });
  });
  window.xstashSort = sortTable;
  window.addEventListener("hashchange", readHash);
  readHash();
})();
"""
