"""Report files (``--xstash-report``): csv, json and md written here, html by report/html.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from xstash_plugin.report.html import render_html
from xstash_plugin.report.latex import render_latex
from xstash_plugin.report.rows import (
    FIXED_COLUMNS,
    cell_text,
    column_name,
    flatten,
    fmt,
    is_aggregate,
    metric_columns,
    metric_text,
    sweep_columns,
)

STAT_COLUMNS = ("ci_low", "ci_high", "std")  # per metric, beside its mean, in .csv


def _flat_records(
    rows: list[dict[str, Any]], readable: bool = False
) -> tuple[list[str], list[dict[str, Any]]]:
    """One flat record per row. With seeds: ``kind``, ``group``, ``seed`` and ``n`` columns,
    and per metric its CI and std (an aggregate's metric column holds the mean; ``readable``:
    ``mean ± half the CI``)."""
    metrics = metric_columns(rows)
    swept_keys = sweep_columns(rows)
    swept = [column_name(k) for k in swept_keys]
    taken = (*FIXED_COLUMNS, *swept)
    extra = ["overrides"] if any(row.get("overrides") for row in rows) else []
    seeded = any(is_aggregate(row) for row in rows)
    seed_fields = ["kind", "group", "seed", "n"] if seeded else []
    with_stats = [m for m in metrics if any(m in (row.get("stats") or {}) for row in rows)]
    stat_fields = [f"{column_name(m, taken)}.{s}" for m in with_stats for s in STAT_COLUMNS]
    fields = [
        *FIXED_COLUMNS,
        *seed_fields,
        *swept,
        *(column_name(m, taken) for m in metrics),
        *([] if readable else stat_fields),
        *extra,
        "run_dir",
    ]
    out = []
    for row in rows:
        flat = {key: row.get(key) for key in (*FIXED_COLUMNS, *seed_fields, "run_dir")}
        point = row.get("point") or {}
        flat.update({column_name(k): point.get(k) for k in swept_keys})
        values = flatten(row.get("metrics") or {})  # once per row, not once per column
        for m in metrics:
            flat[column_name(m, taken)] = metric_text(row, m, values) if readable else values.get(m)
        stats = row.get("stats") or {}
        for m in with_stats:
            for s in STAT_COLUMNS:
                flat[f"{column_name(m, taken)}.{s}"] = (stats.get(m) or {}).get(s)
        if extra:
            flat["overrides"] = " ".join(row.get("overrides") or [])
        out.append(flat)
    return fields, out


def render(
    path: Path,
    rows: list[dict[str, Any]],
    digits: int = 3,
    metrics: tuple[str, ...] = (),
    history: list[str] | None = None,
) -> str:
    """The report for ``rows`` in the format given by ``path``'s suffix (``digits`` and
    ``metrics``: a .tex table's; ``history``: the page's history section)."""
    if path.suffix in (".html", ".htm"):
        return render_html(path, rows, extra=history or [])
    if path.suffix == ".tex":
        return render_latex(rows, list(metrics) or None, digits)
    fields, flat = _flat_records(rows, readable=path.suffix == ".md")
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
        cells = [cell_text(record.get(f)).replace("|", "\\|") for f in fields]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
