"""Report files (``--xstash-report``): csv, json and md written here, html by report/html.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from xstash_plugin.report.html import render_html
from xstash_plugin.report.rows import (
    FIXED_COLUMNS,
    cell_text,
    column_name,
    flatten,
    fmt,
    metric_columns,
    sweep_columns,
)


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
        cells = [cell_text(record.get(f)).replace("|", "\\|") for f in fields]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
