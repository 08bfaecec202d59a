"""Results as people read them: the end-of-session table and report files (csv, json, md)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from xstash_plugin.config.durations import format_duration
from xstash_plugin.config.yamlio import elide, printable

REPORT_SUFFIXES = (".csv", ".json", ".md", ".html", ".htm")
TERMINAL_METRICS = 4


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


def table_rows(rows: list[dict[str, Any]], limit: int | None) -> tuple[list[str], list[list[str]]]:
    metrics = metric_columns(rows, limit)
    fixed = ("experiment", "tool", "status", "duration", "estimate")
    swept = sweep_columns(rows)
    header = [*fixed, *swept, *(column_name(m, (*fixed, *swept)) for m in metrics)]
    body = []
    for row in rows:
        flat = flatten(row.get("metrics") or {})  # once per row, not once per column
        duration = row.get("duration")
        body.append(
            [
                row["id"],
                row["tool"],
                row["status"],
                "" if duration is None else format_duration(float(duration)),
                row.get("estimated_runtime") or "",
                *(fmt((row.get("point") or {}).get(k)) for k in swept),
                *(fmt(flat.get(m)) for m in metrics),
            ]
        )
    return header, body


CELL_LIMIT = 120  # characters of a terminal table cell (longer values are elided)


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
        estimate, duration = row.get("estimated_seconds"), row.get("duration")
        if estimate and duration is not None and duration > 2 * estimate:
            lines.append(
                f"{row['id']} took {format_duration(duration)}, more than twice its "
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


def _flat_records(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    metrics = metric_columns(rows)
    swept_keys = sweep_columns(rows)
    swept = [column_name(k) for k in swept_keys]
    taken = (*FIXED_COLUMNS, *swept)
    extra = ["overrides"] if any(row.get("overrides") for row in rows) else []
    fields = [*FIXED_COLUMNS, *swept, *(column_name(m, taken) for m in metrics), *extra, "run_dir"]
    out = []
    for row in rows:
        flat = {key: row.get(key) for key in (*FIXED_COLUMNS, "run_dir")}
        point = row.get("point") or {}
        flat.update({column_name(k): point.get(k) for k in swept_keys})
        values = flatten(row.get("metrics") or {})  # once per row, not once per column
        flat.update({column_name(m, taken): values.get(m) for m in metrics})
        if extra:
            flat["overrides"] = " ".join(row.get("overrides") or [])
        out.append(flat)
    return fields, out


def render(path: Path, rows: list[dict[str, Any]]) -> str:
    """The report for ``rows`` in the format given by ``path``'s suffix."""
    if path.suffix in (".html", ".htm"):
        from xstash_plugin.report.html import render_html

        return render_html(path, rows)
    fields, flat = _flat_records(rows)
    if path.suffix == ".json":
        return json.dumps(rows, indent=2, default=str, ensure_ascii=False) + "\n"
    if path.suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for record in flat:
            writer.writerow({k: fmt(v) for k, v in record.items()})
        return buffer.getvalue()
    lines = ["| " + " | ".join(fields) + " |", "|" + "|".join(" --- " for _ in fields) + "|"]
    for record in flat:
        cells = [elide(fmt(record.get(f)), 4 * CELL_LIMIT).replace("|", "\\|") for f in fields]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
