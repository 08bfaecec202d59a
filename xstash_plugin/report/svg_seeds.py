"""Seeds on the results page: which rows fold under which aggregate, and how they show.

An experiment run over several seeds gives one *seed row* per (point, seed) (``group``: the id of
its aggregate, ``seed``) and one *aggregate row* per point (``kind: "aggregate"``, ``stats`` per
metric: n, mean, std, sem, ci_low, ci_high, min, max; ``metrics``: the means).

The table (report/html.py) shows an aggregate's metric cells as ``mean ± half the CI`` and
``n=5`` (:func:`spread_html`), every statistic in the tooltip (:func:`stats_text`), and folds its
seed rows under it: they follow it (``tr.seed``, ``data-parent``), the aggregate row
(``tr.aggregate``, ``data-kind="aggregate"``, ``data-expanded``) has the toggle
(:func:`fold_button`) the page's script shows and folds them with.

A seeded sweep's plots (report/svg.py) draw the means as the line and, through
:class:`SeedLayers`, the confidence interval as a shaded band along it (one ``polygon.ci-band``
per line, in its colour) and each seed as a faint point at its aggregate's x
(``circle.seed-point``; the fail cross when it did not pass).
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from xstash_plugin.report.axes import Plot, coord, cross
from xstash_plugin.report.rows import (
    PASSING,
    cell_text,
    display_name,
    fmt,
    is_number,
    metric_value,
)

Row = dict[str, Any]
CI_METHODS = {"t": "t (Student's t distribution)", "bootstrap": "bootstrap (resampled seeds)"}
BAND_OPACITY = "0.18"
SEED_OPACITY = "0.4"
NEUTRAL = "#6E6E6E"  # the legend's band swatch when lines have several colours
TABLE_NOTE = (
    " A run over several seeds is one row per point, its metrics the mean ± half the "
    "confidence interval (hover for every statistic); its seed runs fold under it."
)


def row_name(row: Row) -> str:
    """The test name without its file; an aggregate's with its ``::mean``."""
    if row.get("kind") == "aggregate":
        return "::".join(str(row.get("id", "")).split("::")[1:]) or display_name(row)
    return display_name(row)


def fold_seeds(rows: list[Row]) -> tuple[list[Row], dict[str, list[Row]]]:
    """(the rows that are not seed runs of an aggregate among ``rows``, {aggregate id: its seed
    rows}), both in their given order. Seed rows whose aggregate is absent stay in the first."""
    aggregates = {str(row.get("id")) for row in rows if row.get("kind") == "aggregate"}
    top: list[Row] = []
    seeds: dict[str, list[Row]] = {}
    for row in rows:
        group = row.get("group")
        if group is not None and str(group) in aggregates and row.get("kind") != "aggregate":
            seeds.setdefault(str(group), []).append(row)
        else:
            top.append(row)
    return top, seeds


# ---------------------------------------------------------------------------------------------
# The table


def fold_attrs(row: Row, order: int, kids: list[Row], parent: str | None) -> tuple[str, str]:
    """More attributes and classes of a table row: an aggregate's (with ``kids`` folded under
    it), a seed row's (folded under aggregate ``parent``); none for others."""
    if parent is not None:
        seed = escape(cell_text(row.get("seed")))
        return f' id="seed-row-{order}" data-parent="{escape(parent)}" data-seed="{seed}"', " seed"
    if row.get("kind") == "aggregate":
        attrs = f' data-kind="aggregate" data-seeds="{len(kids)}" data-expanded="false"'
        return attrs, " aggregate"
    return "", ""


def fold_button(order: int, kids: list[Row]) -> str:
    """The toggle of an aggregate's seed rows (the rows after its own, ``order``): hidden until
    the page's script shows it (and folds them); without the script every row shows."""
    if not kids:
        return ""
    controls = " ".join(f"seed-row-{order + 1 + i}" for i in range(len(kids)))
    return (
        f'<button type="button" class="fold" aria-expanded="false" aria-controls="{controls}" '
        'title="show or hide its seed runs" hidden><span class="chevron" aria-hidden="true">'
        f"</span>{len(kids)} seed{'s' * (len(kids) != 1)}</button>"
    )


def status_notes(row: Row, kids: list[Row]) -> str:
    """Under an aggregate's status: how many of its seed runs did not pass, what is missing."""
    notes = ""
    not_passed = sum(kid.get("status") not in PASSING for kid in kids)
    if not_passed:
        notes += f'<span class="seed-note">{not_passed} of {len(kids)} seed runs not passed</span>'
    if row.get("kind") == "aggregate" and row.get("incomplete"):
        notes += f'<span class="incomplete">{escape(str(row["incomplete"]))}</span>'
    return notes


def spread_html(stat: dict[str, Any]) -> str:
    """An aggregate's metric cell: ``mean ± half the CI`` (the mean alone below 2 seeds) and
    ``n=5``."""
    ci = ci_of(stat)
    mean: Any = stat.get("mean")
    if ci is None or not is_number(mean):
        text = escape(cell_text(mean))
    else:
        shown, half = plus_minus(float(mean), (ci[1] - ci[0]) / 2)
        text = f'{shown} <span class="pm">± {half}</span>'
    return text + f' <span class="n">n={escape(cell_text(stat.get("n")))}</span>'


def plus_minus(mean: float, half: float) -> tuple[str, str]:
    """``half`` to 3 significant digits, ``mean`` to as many decimals (0.930454, 0.0361 ->
    0.9305, 0.0361; 45678.9, 1234 -> 45680, 1230)."""
    if half <= 0:
        return fmt(mean), fmt(half)
    decimals = 2 - math.floor(math.log10(half))
    if decimals > 0:
        return f"{mean:.{decimals}f}", f"{half:.{decimals}f}"
    return fmt(round(mean, decimals)), fmt(round(half, decimals))


def keys_html(aggregates: list[Row]) -> str:
    """The plots' key to the confidence band and the seed points."""
    name = ci_name(next((r for r in aggregates if r.get("kind") == "aggregate"), {}))
    colour = "#0072B2"
    return (
        '<span class="key"><svg width="18" height="12" aria-hidden="true">'
        f'<polygon points="0,3 18,0 18,8 0,12" fill="{colour}" fill-opacity="{BAND_OPACITY}"/>'
        f'<path d="M0,8 L18,4" stroke="{colour}" stroke-width="2"/></svg> band along a line: '
        f"the {escape(name)} (confidence interval) of the mean over the seeds</span> "
        '<span class="key"><svg width="18" height="12" aria-hidden="true">'
        + "".join(
            f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}" fill-opacity="{SEED_OPACITY}"/>'
            for x, y in ((4, 8), (9, 3), (14, 7))
        )
        + "</svg> faint points: the single seed runs (the line joins their means)</span> "
    )


# ---------------------------------------------------------------------------------------------
# Statistics as text


def stats_of(row: Row, metric: str) -> dict[str, Any] | None:
    """An aggregate row's statistics of ``metric`` (a flattened name); None without."""
    stats = row.get("stats")
    stat = stats.get(metric) if isinstance(stats, dict) else None
    return stat if isinstance(stat, dict) else None


def ci_of(stat: dict[str, Any] | None) -> tuple[float, float] | None:
    """(low, high) of the confidence interval; None when there is none (fewer than 2 seeds)."""
    if stat is None:
        return None
    low: Any = stat.get("ci_low")
    high: Any = stat.get("ci_high")
    n: Any = stat.get("n")
    if is_number(low) and is_number(high) and (not is_number(n) or n >= 2):
        return float(low), float(high)
    return None


def ci_name(row: Row) -> str:
    """``95% CI``, from the aggregate's confidence."""
    confidence: Any = row.get("confidence")
    if is_number(confidence) and 0 < float(confidence) < 1:
        return f"{float(confidence) * 100:g}% CI"
    return "95% CI" if confidence is None else "CI"


def ci_method(row: Row) -> str:
    method = str(row.get("ci_method") or "unknown")
    return CI_METHODS.get(method, method)


def stats_text(row: Row, metric: str) -> str:
    """Every statistic of an aggregate's ``metric``, one a line (the table cell's tooltip)."""
    stat = stats_of(row, metric) or {}

    def text(name: str) -> str:
        value = stat.get(name)
        return fmt(value) if value is not None else "none"

    ci = ci_of(stat)
    interval = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "none (fewer than 2 seeds)"
    lines = [f"{metric} over seeds"]
    lines += [f"{name} = {text(name)}" for name in ("n", "mean", "std", "sem")]
    lines.append(f"{ci_name(row)} = {interval}")
    lines += [f"{name} = {text(name)}" for name in ("min", "max")]
    lines.append(f"CI method: {ci_method(row)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Plot layers


class SeedLayers:
    """What a seeded sweep's plot of ``metric`` adds to its lines of aggregates: confidence
    bands and seed points. ``points`` are a line's (x value, aggregate row)."""

    def __init__(self, aggregates: list[Row], seeds: dict[str, list[Row]], metric: str) -> None:
        self.seeds = seeds
        self.metric = metric
        first = next((r for r in aggregates if r.get("kind") == "aggregate"), {})
        self.name = ci_name(first)
        self.has_band = any(ci_of(stats_of(r, metric)) for r in aggregates)

    def _seeds_of(self, row: Row) -> list[Row]:
        return self.seeds.get(str(row.get("id")), [])

    def values(self, points: list[tuple[Any, Row]]) -> list[float]:
        """The values the y axis must show besides the means: CI edges and seeds."""
        out: list[float] = []
        for _, row in points:
            out.extend(ci_of(stats_of(row, self.metric)) or ())
            values = (metric_value(seed, self.metric) for seed in self._seeds_of(row))
            out.extend(float(v) for v in values if is_number(v))
        return out

    def band(self, plot: Plot, colour: str, label: str, points: list[tuple[Any, Row]]) -> list[str]:
        """One line's confidence band: a polygon along its upper edges (ci_high), back along its
        lower ones (ci_low); a bar for a line of one point."""
        corners = []
        for x, row in points:
            ci = ci_of(stats_of(row, self.metric))
            if ci is not None:
                top, bottom = plot.y_scale(ci[1]), plot.y_scale(ci[0])
                corners.append((plot.x_order(x), plot.x_pos(x), top, bottom))
        if not corners:
            return []
        corners.sort(key=lambda corner: corner[0])
        tip = f"<title>{escape(self.name)} of the mean ({escape(label)})</title>"
        if len(corners) == 1:
            _, x, top, bottom = corners[0]
            return [
                f'<line class="ci-bar" x1="{coord(x)}" x2="{coord(x)}" y1="{coord(top)}" '
                f'y2="{coord(bottom)}" stroke="{colour}" stroke-opacity="{BAND_OPACITY}" '
                f'stroke-width="10">{tip}</line>'
            ]
        upper = [f"{coord(x)},{coord(top)}" for _, x, top, _ in corners]
        lower = [f"{coord(x)},{coord(bottom)}" for _, x, _, bottom in reversed(corners)]
        return [
            f'<polygon class="ci-band" points="{" ".join(upper + lower)}" fill="{colour}" '
            f'fill-opacity="{BAND_OPACITY}" data-series="{escape(label)}">{tip}</polygon>'
        ]

    def seeds_svg(
        self, plot: Plot, colour: str, points: list[tuple[Any, Row]]
    ) -> tuple[list[str], int]:
        """A line's seeds as faint points at their aggregate's x, and how many did not pass."""
        out, failed = [], 0
        for x, row in points:
            for seed in self._seeds_of(row):
                mark = self._seed_svg(plot, colour, plot.x_pos(x), seed)
                if mark:
                    out.append(mark)
                failed += seed.get("status") not in PASSING
        return out, failed

    def _seed_svg(self, plot: Plot, colour: str, cx: float, seed: Row) -> str:
        value = metric_value(seed, self.metric)
        status = str(seed.get("status"))
        tip = f"{display_name(seed)}\n{self.metric} = {fmt(value) or 'none'}\nstatus: {status}"
        attrs = f'data-seed="{escape(fmt(seed.get("seed")))}" data-status="{escape(status)}"'
        if status in PASSING:
            if not is_number(value):
                return ""
            return (
                f'<circle class="seed-point" {attrs} cx="{coord(cx)}" '
                f'cy="{coord(plot.y_scale(float(value)))}" r="2.5" fill="{colour}" '
                f'fill-opacity="{SEED_OPACITY}"><title>{escape(tip)}</title></circle>'
            )
        # Did not pass: the fail cross, at its value (on the x axis when it has none).
        cy = plot.y_scale(float(value)) if is_number(value) else plot.y1 - 7
        cls = "seed-point failed" if is_number(value) else "seed-point failed no-value"
        return f'<g class="{cls}" {attrs}><title>{escape(tip)}</title>{cross(cx, cy, 3.5)}</g>'

    def note(self, row: Row) -> str:
        """More lines for an aggregate's point tooltip: over how many seeds, its interval."""
        if row.get("kind") != "aggregate":
            return ""
        stat = stats_of(row, self.metric) or {}
        ci = ci_of(stat)
        note = f"\nmean over {fmt(stat.get('n', row.get('n')))} seed(s)"
        if ci is not None:
            note += f", {self.name} [{fmt(ci[0])}, {fmt(ci[1])}]"
        if row.get("incomplete"):
            note += f"\n{row['incomplete']}"
        return note

    def legend(self, colours: list[str]) -> list[tuple[str, str]]:
        """(swatch, label) for the band (when one is drawn) and for the seeds."""
        colour = colours[0] if len(colours) == 1 else NEUTRAL
        keys = []
        if self.has_band:
            keys.append(
                (
                    f'<rect class="ci-key" x="0" y="-6" width="18" height="12" '
                    f'fill="{colour}" fill-opacity="{BAND_OPACITY}"/>',
                    self.name,
                )
            )
        dots = "".join(
            f'<circle class="seed-key" cx="{cx}" cy="{cy}" r="2.5" fill="{colour}" '
            f'fill-opacity="{SEED_OPACITY}"/>'
            for cx, cy in ((4, 2), (9, -2), (14, 1))
        )
        keys.append((dots, "seeds"))
        return keys
