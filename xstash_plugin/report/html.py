"""The ``--xstash-report results.html`` page: one self-contained file, readable offline.

The results table (sortable, filterable, failed runs first, each row linking to its run
directory and logs) and, for every sweep, one plot of each metric against each swept key, with
the expectations as shaded bands (the plots: report/svg.py). A little vanilla JavaScript sorts
and filters the table; it and the page's style are package data (report/assets/), inlined into
the page. ``results.html#sort=accuracy:desc`` opens the page sorted, through the same function
a click on a column header calls.

Seeds: one *aggregate* row per point, its metrics ``mean ± half the CI  n=5`` (the statistics
in the tooltip), its seed rows folded under it: shown by its toggle, moved along when the table
is sorted or filtered, all shown without the script (report/svg_seeds.py tells how).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
from collections.abc import Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from xstash_plugin.config.durations import format_duration
from xstash_plugin.report import svg_seeds as seeds
from xstash_plugin.report.axes import FAIL_COLOUR
from xstash_plugin.report.rows import (
    PASSING,
    cell_text,
    is_number,
    is_slow,
    metric_columns,
    metric_value,
    sweep_columns,
    verdict_of,
    verdict_text,
)
from xstash_plugin.report.svg import BAND_COLOUR, Sweep, plot_svg, sweeps

RUN_FILES = (("stdout", "stdout.log"), ("stderr", "stderr.log"), ("record", "xstash.json"))
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
Row = dict[str, Any]


@functools.cache
def asset(name: str) -> str:
    """A file of report/assets/: the page's style (page.css) or script (page.js)."""
    return (resources.files(__package__ or "") / "assets" / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Rows


def status_rank(status: Any) -> int:
    return STATUS_RANK.get(str(status), OTHER_RANK)


def failed_first(rows: list[Row]) -> list[Row]:
    """``rows`` with failed and broken runs first; otherwise in their given order (stable)."""
    return sorted(rows, key=lambda row: status_rank(row.get("status")))


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


def run_links(row: Row, base: Path) -> list[tuple[str, str, str]]:
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
# The table


def _columns(rows: list[Row]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(column id, swept key) and (column id, metric): ids unique among all columns; seed keys
    after the other swept keys."""
    seed_keys = {str(r.get("seed_key")) for r in rows if r.get("kind") == "aggregate"}
    keys = sorted(sweep_columns(rows), key=lambda k: k in seed_keys)  # stable
    swept = [(f"sweep.{k}" if k in FIXED else k, k) for k in keys]
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
    return repr(float(value)) if is_number(value) else cell_text(value)


def _row_html(
    row: Row,
    order: int,
    swept: list[tuple[str, str]],
    metrics: list[tuple[str, str]],
    base: Path,
    kids: list[Row] | None = None,
    parent: str | None = None,
) -> str:
    """One row; an aggregate's with its seed rows ``kids`` (rows ``order + 1`` on), a seed row's
    folded under aggregate ``parent``."""
    status = str(row.get("status") or "")
    tags = [str(t) for t in row.get("tags") or []]
    point = row.get("point") or {}
    passing = status in PASSING
    kids = kids or []
    more, cls = seeds.fold_attrs(row, order, kids, parent)
    attrs = (
        f' data-order="{order}" data-id="{escape(str(row.get("id", "")))}" '
        f'data-status="{escape(status)}" '
        f'data-outcome="{"pass" if passing else "fail"}" '
        f'data-tool="{escape(str(row.get("tool") or ""))}" '
        f'data-tags="{escape(json.dumps(tags))}"{more} class="{"pass" if passing else "fail"}{cls}"'
    )
    name = seeds.row_name(row)
    cells = [
        _status_cell(row, status, passing, kids),
        _td(
            f'<span class="name">{escape(name)}</span> '
            f'<span class="config">{escape(str(row.get("config") or ""))}</span>'
            + seeds.fold_button(order, kids),
            sort=name,
            title=str(row.get("id", "")),
            raw=True,
        ),
        _td(str(row.get("tool") or "")),
        _td(", ".join(tags)),
    ]
    for _, key in swept:
        value = point.get(key)
        cells.append(
            _td(cell_text(value), sort=_sort_key(value), cls="num" if is_number(value) else "")
        )
    cells += [_metric_cell(row, metric) for _, metric in metrics]
    cells += _time_cells(row, kids)
    cells.append(_links_cell(row, base))
    return f"<tr{attrs}>" + "".join(cells) + "</tr>"


def _status_cell(row: Row, status: str, passing: bool, kids: list[Row]) -> str:
    exit_code = row.get("exit_code")
    title = "" if exit_code is None else f"exit code {exit_code}"
    if row.get("reused_from"):
        title += f"; reused run {row['reused_from']}"
    badge = f'<span class="badge s-{escape(status.replace(" ", "-"))}">{escape(status)}</span>'
    if isinstance(exit_code, int) and exit_code != 0:
        why = f"exit code {exit_code}" if exit_code > 0 else f"killed by signal {-exit_code}"
        badge += f'<span class="why">{why}</span>'
    elif not passing and any(not v.get("ok") for v in row.get("verdicts") or []):
        badge += '<span class="why">expectation not met</span>'
    badge += seeds.status_notes(row, kids)
    return _td(badge, sort=status_rank(status), title=title.strip("; "), raw=True)


def _metric_cell(row: Row, metric: str) -> str:
    """The value, marked by its verdict; with the expectation when it failed. An aggregate's:
    the mean ± half its confidence interval (none below 2 seeds), n, the statistics as title."""
    stat = seeds.stats_of(row, metric) if row.get("kind") == "aggregate" else None
    value = metric_value(row, metric) if stat is None else stat.get("mean")
    verdict = verdict_of(row, metric)
    text = escape(cell_text(value))
    cls = "num" if is_number(value) else ""
    title = ""
    if stat is not None:
        text = seeds.spread_html(stat)
        cls += " stat"
        title = seeds.stats_text(row, metric) + "\n"
    if verdict is not None:
        ok = bool(verdict.get("ok"))
        cls += " ok" if ok else " bad"
        expected = str(verdict.get("expected"))
        if verdict.get("statistic"):  # an aggregate's: of the mean, say
            expected = f"{verdict['statistic']} {expected}"
        title += verdict_text({**verdict, "expected": expected})
        if verdict.get("note"):
            title += f" ({verdict['note']})"
        mark = "✓" if ok else "✗"
        text += f' <span class="mark">{mark}</span>'
        if not ok:
            text += f'<span class="expected">expected {escape(expected)}</span>'
    title = title.strip()
    return _td(text, sort=_sort_key(value), cls=cls.strip(), title=title, raw=True)


def _time_cells(row: Row, kids: list[Row]) -> list[str]:
    """Duration (flagged when more than twice the estimate; an aggregate's: its seed runs' total)
    and the estimate."""
    duration = row.get("duration")
    estimate = row.get("estimated_seconds")
    slow = is_slow(row)
    spent = [float(kid["duration"]) for kid in kids if is_number(kid.get("duration"))]
    total = f"total of its {len(spent)} seed runs" if duration is None and spent else ""
    duration = sum(spent) if total else duration
    return [
        _td(
            "" if duration is None else format_duration(float(duration)),
            sort="" if duration is None else repr(float(duration)),
            cls="num slow" if slow else "num",
            title="more than twice the estimated runtime" if slow else total,
        ),
        _td(str(row.get("estimated_runtime") or ""), sort="" if not estimate else repr(estimate)),
    ]


def _links_cell(row: Row, base: Path) -> str:
    link_html = " ".join(
        f'<a href="{escape(href)}" title="{escape(path)}" data-kind="{escape(label)}">'
        f"{escape(label)}</a>"
        for label, href, path in run_links(row, base)
    )
    none = "in its seed runs" if row.get("kind") == "aggregate" else "no run directory"
    return _td(link_html or f'<span class="muted">{none}</span>', raw=True)


def _summary(rows: list[Row], folded: dict[str, list[Row]]) -> str:
    """Counts of ``rows`` (aggregates, not their seed runs ``folded``: those in the detail)."""
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
    runs = [seed for kids in folded.values() for seed in kids]
    more = f' data-seed-runs="{len(runs)}"' if runs else ""
    if runs:
        bad = sum(seed.get("status") not in PASSING for seed in runs)
        detail += f"; {len(runs)} seed runs under {len(folded)} aggregates, {bad} not passed"
    return (
        f'<p class="summary" id="summary" data-total="{len(rows)}" data-passed="{passing}" '
        f'data-failed="{failing}"{more}>'
        + " ".join(parts)
        + f' <span class="detail">({detail})</span></p>'
    )


def _head_class(
    column: tuple[str, str], swept: list[tuple[str, str]], metrics: list[tuple[str, str]]
) -> str:
    return "swept" if column in swept else "metric" if column in metrics else ""


def _header_cells(swept: list[tuple[str, str]], metrics: list[tuple[str, str]]) -> str:
    head = [("status", "status"), ("experiment", "experiment"), ("tool", "tool"), ("tags", "tags")]
    head += [(c, k) for c, k in swept] + [(c, m) for c, m in metrics]
    head += [("duration", "duration"), ("estimate", "estimate")]
    cells = "".join(
        f'<th scope="col" data-column="{escape(column)}" '
        f'class="{_head_class((column, label), swept, metrics)}">'
        f'<button type="button" title="sort by {escape(label)}">{escape(label)}'
        f'<span class="arrow" aria-hidden="true"></span></button></th>'
        for column, label in head
    )
    return cells + '<th scope="col">run directory &amp; logs</th>'


def _select(ident: str, label: str, values: list[str]) -> str:
    options = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
    return (
        f'<label>{escape(label)} <select id="{ident}"><option value="">all</option>'
        f"{options}</select></label>"
    )


# ---------------------------------------------------------------------------------------------
# The page


def render_html(
    path: Path,
    rows: list[Row],
    generated: datetime.datetime | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The page for ``rows``, with links relative to ``path``'s folder; ``extra``: more
    sections (the results history's plots)."""
    when = (generated or datetime.datetime.now()).strftime("%Y-%m-%d %H:%M")
    top, folded = seeds.fold_seeds(rows)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>xstash results: {len(top)} experiment(s)</title>",
        f"<style>\n{asset('page.css')}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>xstash results</h1>",
        _summary(top, folded),
        f'<p class="muted">Generated {escape(when)} by <code>pytest --xstash-report</code>. '
        "Failed runs are listed first; click a column header to sort (numbers sort as "
        "numbers), use the filters to narrow the table, and follow a row's links to its run "
        f"directory and logs.{seeds.TABLE_NOTE if folded else ''}</p>",
        "</header>",
        *_table_section(rows, (top, folded), Path(os.path.abspath(path)).parent),
    ]
    if not rows:
        parts.append('<p class="muted">No experiment ran in this session.</p>')
    parts += _sweeps_section(rows)
    parts += [*extra, f"<script>\n{asset('page.js')}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _table_section(
    rows: list[Row], fold: tuple[list[Row], dict[str, list[Row]]], base: Path
) -> list[str]:
    """The results table and its filters; links relative to folder ``base``. ``fold``: the rows
    but folded seed runs, and those (aggregate id -> rows), each right after its aggregate."""
    swept, metrics = _columns(rows)
    top, folded = fold
    tags = sorted({str(t) for row in rows for t in row.get("tags") or []})
    tools = sorted({str(row.get("tool")) for row in rows if row.get("tool")})
    statuses = sorted({str(row.get("status")) for row in top}, key=status_rank)
    lines: list[str] = []
    for row in failed_first(top):
        kids = folded.get(str(row.get("id")), []) if row.get("kind") == "aggregate" else []
        lines.append(_row_html(row, len(lines), swept, metrics, base, kids))
        for kid in kids:
            lines.append(_row_html(kid, len(lines), swept, metrics, base, parent=str(row["id"])))
    body = "\n".join(lines)
    return [
        '<section id="results-section">',
        "<h2>Experiments</h2>",
        '<div class="filters">',
        _select("filter-tag", "Tag", tags),
        _select("filter-tool", "Tool", tools),
        _select("filter-status", "Status", statuses),
        '<label>Search <input id="filter-text" type="search" placeholder="experiment or config">'
        "</label>",
        f'<span id="shown">{len(top)} of {len(top)} shown</span>',
        "</div>",
        '<div class="table-wrap">',
        f'<table id="results" data-sort=""><thead><tr>{_header_cells(swept, metrics)}</tr></thead>',
        f"<tbody>\n{body}\n</tbody></table>",
        "</div>",
        "</section>",
    ]


def _sweeps_section(rows: list[Row]) -> list[str]:
    """One article of plots per sweep; nothing without sweeps."""
    found = sweeps(rows)
    if not found:
        return []
    seeded = [sweep for sweep in found if sweep.seeds]
    return [
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
        + (seeds.keys_html(seeded[0].rows) if seeded else "")
        + "Hover a point for its experiment and value.</p>",
        *(_sweep_html(sweep) for sweep in found),
        "</section>",
    ]


def _sweep_html(sweep: Sweep) -> str:
    failed = sum(row.get("status") not in PASSING for row in sweep.rows)
    metrics = sweep.metrics
    runs = [seed for kids in sweep.seeds.values() for seed in kids]
    failed_runs = sum(seed.get("status") not in PASSING for seed in runs)
    meta = (
        f"{escape(sweep.config)} · {len(sweep.rows)} point(s)"
        + (f" over {len(runs)} seed runs" if runs else "")
        + f" · swept: {escape(', '.join(sweep.keys))} · "
        + (f'<span class="fail-text">{failed} not passed</span>' if failed else "all passed")
    )
    if failed_runs:
        meta += f' · <span class="fail-text">{failed_runs} seed run(s) not passed</span>'
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
