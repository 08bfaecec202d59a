"""The results page's history: per experiment of the session, each metric over the last commits
recorded in the history store (report/history_svg.py draws it), the steps beyond noise marked
with the commit that introduced them (history/changepoints.py) and the baseline commit marked."""

from __future__ import annotations

import statistics
from html import escape
from pathlib import Path
from typing import Any

from xstash_plugin.history.changepoints import change_points
from xstash_plugin.history.store import HistoryError, HistoryStore, SeriesPoint
from xstash_plugin.report.history_svg import history_svg
from xstash_plugin.report.rows import metric_columns

COMMITS = 20  # commits shown per plot
METRICS = 4  # metrics per experiment (those with expectations first)


def _plots(series: list[SeriesPoint], metrics: list[str], baseline: str | None) -> list[str]:
    groups: dict[tuple[str, str, str], list[SeriesPoint]] = {}
    for point in series:
        if point.metric in metrics:
            label = ",".join(f"{k}={v}" for k, v in point.point.items())
            groups.setdefault((point.config, label, point.metric), []).append(point)
    figures = []
    for (config, label, metric), points in sorted(groups.items()):
        points.sort(key=lambda p: p.ended)
        if len(points) < 2:
            continue
        commits = [p.commit or "-" for p in points]
        values = [list(p.values) for p in points]
        steps = change_points([statistics.fmean(v) for v in values])
        marked = next((i for i, c in enumerate(commits) if baseline and c == baseline), None)
        title = f"{metric} · {config}" + (f" [{label}]" if label else "")
        figures.append(
            f'<figure class="plot-box"><figcaption>{escape(title)}</figcaption>'
            f"{history_svg(commits, values, steps, marked, metric)}</figure>"
        )
    return figures


def history_section(
    store_path: Path, rows: list[dict[str, Any]], baseline_commit: str | None = None
) -> list[str]:
    """The page's history section (nothing when the store has fewer than two commits of any of
    the session's experiments)."""
    if not store_path.exists():
        return []
    experiments = sorted({str(row["experiment"]) for row in rows if row.get("experiment")})
    articles = []
    try:
        store = HistoryStore(store_path)
        try:
            for name in experiments:
                mine = [row for row in rows if row.get("experiment") == name]
                metrics = metric_columns(mine, METRICS)
                figures = _plots(store.series(name, None, COMMITS), metrics, baseline_commit)
                if figures:
                    articles.append(
                        f'<article class="sweep"><h3>{escape(name)}</h3>'
                        f'<div class="plots">{"".join(figures)}</div></article>'
                    )
        finally:
            store.close()
    except HistoryError:
        return []
    if not articles:
        return []
    return [
        '<section id="history">',
        "<h2>History</h2>",
        '<p class="muted">Each metric over the last commits recorded in the results history '
        "(one point per commit: its newest session; several faint points: seeds). A dashed "
        "line marks a step beyond the noise, named after the commit that introduced it.</p>",
        *articles,
        "</section>",
    ]
