"""Results as people read them: result rows, their cells, and the end-of-session table.

The report files (csv, json, md, html) are written by :mod:`xstash_plugin.report.files`; the
pages (:mod:`~xstash_plugin.report.html`, :mod:`~xstash_plugin.report.columns`) read rows
through the helpers here.
"""

from __future__ import annotations

import json
import math
from typing import Any

from xstash_plugin.config.durations import format_duration
from xstash_plugin.config.text import elide, printable

REPORT_SUFFIXES = (".csv", ".json", ".md", ".html", ".htm", ".tex")
TERMINAL_METRICS = 4
PASSING = ("passed", "reused")


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics as dotted keys: {'a': {'b': 1}} -> {'a.b': 1}."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


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


def verdict_of(row: dict[str, Any], metric: str) -> dict[str, Any] | None:
    for verdict in row.get("verdicts") or []:
        if verdict.get("metric") == metric:
            return dict(verdict)
    return None


def verdict_text(verdict: dict[str, Any]) -> str:
    """``ok: expected >= 0.9`` or ``FAIL: expected >= 0.9``."""
    return f"{'ok' if verdict.get('ok') else 'FAIL'}: expected {verdict.get('expected')}"


def display_name(row: dict[str, Any]) -> str:
    """The test name without its file: ``lr_sweep[params.lr=0.1-model=small]``."""
    return str(row.get("id", "")).rsplit("::", 1)[-1]


def is_slow(row: dict[str, Any]) -> bool:
    """More than twice its estimated_runtime."""
    estimate, duration = row.get("estimated_seconds"), row.get("duration")
    return bool(estimate and duration is not None and float(duration) > 2 * float(estimate))


def metric_columns(rows: list[dict[str, Any]], limit: int | None = None) -> list[str]:
    """Metric names in a stable order: those with expectations first, then the others.
    (Dicts as ordered sets: linear in the number of names, whatever it is.)"""
    expected: dict[str, None] = {}
    other: dict[str, None] = {}
    for row in rows:
        for verdict in row.get("verdicts", []):
            expected.setdefault(verdict["metric"], None)
        other.update(dict.fromkeys(flatten(row.get("metrics") or {})))
    columns = [*expected, *(name for name in other if name not in expected)]
    return columns[:limit] if limit is not None else columns


def sweep_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The swept keys of all rows, in the order they first appear."""
    keys: list[str] = []
    for row in rows:
        for key in row.get("point") or {}:
            if key not in keys:
                keys.append(key)
    return keys


def is_aggregate(row: dict[str, Any]) -> bool:
    return row.get("kind") == "aggregate"


def fold(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with each seeded point's aggregate where its first seed was, followed by its
    seed rows (a seed whose aggregate is not among the rows stays where it is)."""
    aggregates = {row["id"]: row for row in rows if is_aggregate(row)}
    if not aggregates:
        return rows
    children: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("group") in aggregates:
            children.setdefault(row["group"], []).append(row)
    out: list[dict[str, Any]] = []
    placed: set[str] = set()
    for row in rows:
        group = row.get("group")
        key = str(group) if group in aggregates else str(row["id"])
        if key in aggregates:
            if key not in placed:
                placed.add(key)
                out += [aggregates[key], *children.get(key, [])]
            continue
        out.append(row)
    return out


def half_width(stats: dict[str, Any]) -> float | None:
    """Half the confidence interval's width (what ``mean ± x`` shows); None without a CI."""
    low, high = stats.get("ci_low"), stats.get("ci_high")
    if low is None or high is None or not (is_number(low) and is_number(high)):
        return None
    return (float(high) - float(low)) / 2


def stat_text(stats: dict[str, Any]) -> str:
    """``0.9123 ± 0.011``: the mean and half its CI's width (the mean alone without a CI)."""
    mean = stats.get("mean")
    if mean is None or not is_number(mean):
        return ""
    half = half_width(stats)
    return f"{float(mean):.4g}" + ("" if half is None else f" ± {half:.2g}")


def metric_text(row: dict[str, Any], metric: str, flat: dict[str, Any]) -> str:
    """A metric's cell: ``mean ± CI`` for an aggregate, the value for a run."""
    stats = (row.get("stats") or {}).get(metric) if is_aggregate(row) else None
    return stat_text(stats) if isinstance(stats, dict) else fmt(flat.get(metric))


def table_rows(rows: list[dict[str, Any]], limit: int | None) -> tuple[list[str], list[list[str]]]:
    """The terminal table (and the .md report): one row per run; a seeded point's aggregate
    (``mean ± CI``, its n) with its seeds indented under it."""
    rows = fold(rows)
    metrics = metric_columns([r for r in rows if not r.get("group")] or rows, limit)
    seeded = any(is_aggregate(row) for row in rows)
    fixed = ("experiment", "tool", "status", *(("n",) if seeded else ()), "duration", "estimate")
    swept = sweep_columns(rows)
    header = [*fixed, *swept, *(column_name(m, (*fixed, *swept)) for m in metrics)]
    body = []
    folded = {row["id"] for row in rows if is_aggregate(row)}
    for row in rows:
        flat = flatten(row.get("metrics") or {})  # once per row, not once per column
        duration = row.get("duration")
        name = f"  {display_name(row)}" if row.get("group") in folded else row["id"]
        body.append(
            [
                name,
                row["tool"],
                str(row["status"]),
                *((fmt(row.get("n")) if is_aggregate(row) else "",) if seeded else ()),
                "" if duration is None else format_duration(float(duration)),
                row.get("estimated_runtime") or "",
                *(fmt((row.get("point") or {}).get(k)) for k in swept),
                *(metric_text(row, m, flat) for m in metrics),
            ]
        )
    return header, body


CELL_LIMIT = 120  # characters of a terminal table cell (longer values are elided)


def cell_text(value: Any) -> str:
    """A value as a report file or page cell shows it: at most 4 x CELL_LIMIT characters."""
    return elide(fmt(value), 4 * CELL_LIMIT)


def text_table(header: list[str], body: list[list[str]]) -> list[str]:
    # Cells are data (metric values a tool wrote): nothing in them may act on the terminal.
    header = [printable(cell) for cell in header]
    body = [
        [elide(printable(cell).replace("\n", "\\n"), CELL_LIMIT) for cell in row] for row in body
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]


def slow_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """Experiments that took more than twice their estimated_runtime."""
    lines = []
    for row in rows:
        if is_slow(row):
            lines.append(
                f"{row['id']} took {format_duration(row['duration'])}, more than twice its "
                f"estimated_runtime {row.get('estimated_runtime')}: update the estimate"
            )
    return lines


FIXED_COLUMNS = (
    "id",
    "experiment",
    "config",
    "tool",
    "status",
    "duration",
    "estimated_runtime",
    "exit_code",
)


def column_name(metric: str, fixed: tuple[str, ...] = FIXED_COLUMNS) -> str:
    """A metric's column; ``metrics.<name>`` where the name is taken by a fixed column."""
    return f"metrics.{metric}" if metric in (*fixed, "run_dir") else metric
