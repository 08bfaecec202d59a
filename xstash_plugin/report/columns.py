"""Columns for pytest-html's report: tool, time against the estimate, key metrics, run directory.

Registered by :func:`xstash_plugin.plugin.pytest_configure` only when pytest-html is active, so
xstash never imports it. pytest-html builds its header once at session start, before any result
exists, so the metrics share one column (those with expectations first, as in the terminal
table). A row's data is ``report.xstash``, the experiment's result row; pytest-xdist carries it
from the workers. Reports without it (setup errors, other tests) get empty cells, so every row
keeps the header's shape.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin.config.durations import format_duration
from xstash_plugin.report.html import link_target
from xstash_plugin.report.rows import (
    TERMINAL_METRICS,
    fmt,
    is_number,
    metric_columns,
    metric_value,
    verdict_of,
)

HEADER = (
    '<th class="sortable" data-column-type="xstashTool">Tool</th>',
    '<th data-column-type="xstashTime">Time / estimate</th>',
    '<th data-column-type="xstashMetrics">Metrics</th>',
    '<th data-column-type="xstashRunDir">Run directory</th>',
)
TOOL_COLUMN = 2  # after Result and Test


def time_cell(row: dict[str, Any]) -> str:
    """``12.3s / est 30s``: how long the run took against its ``estimated_runtime``."""
    duration, estimate = row.get("duration"), row.get("estimated_runtime")
    took = "" if duration is None else format_duration(float(duration))
    if estimate:
        return f"{took or '-'} / est {estimate}"
    return took


def metrics_cell(row: dict[str, Any], limit: int = TERMINAL_METRICS) -> str:
    """The first metrics (those with expectations first), each marked by its verdict."""
    parts = []
    for name in metric_columns([row], limit):
        value = metric_value(row, name)
        verdict = verdict_of(row, name)
        text = f"{escape(name)}={escape(fmt(value))}"
        if verdict is not None:
            ok = bool(verdict.get("ok"))
            expected = escape(f"expected {verdict.get('expected')}", quote=True)
            colour = "green" if ok else "red"
            mark = "✓" if ok else "✗"
            text = (
                f'<span class="xstash-metric" style="color:{colour}" title="{expected}">'
                f"{text} {mark}</span>"
            )
        elif is_number(value):
            text = f'<span class="xstash-metric">{text}</span>'
        parts.append(text)
    return ", ".join(parts)


class HtmlColumns:
    """pytest-html hooks (4.x): cells are HTML strings."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def report_folder(self) -> Path:
        # Where pytest-html writes its file (its own rule): links are relative to that folder.
        raw = str(self.config.getoption("htmlpath", None) or "report.html")
        return (Path.cwd() / Path(os.path.expandvars(raw)).expanduser()).parent

    @pytest.hookimpl
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(TOOL_COLUMN, HEADER[0])
        cells.extend(HEADER[1:])

    @pytest.hookimpl
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        row: dict[str, Any] = getattr(report, "xstash", None) or {}
        run_dir = row.get("run_dir")
        link = ""
        if run_dir:
            href = link_target(Path(str(run_dir)), self.report_folder()) + "/"
            link = (
                f'<a class="xstash-run-dir" href="{escape(href)}" '
                f'title="{escape(str(run_dir))}">{escape(Path(str(run_dir)).name)}</a>'
            )
        cells.insert(
            TOOL_COLUMN, f'<td class="col-xstashTool">{escape(str(row.get("tool") or ""))}</td>'
        )
        cells.append(f'<td class="col-xstashTime">{escape(time_cell(row))}</td>')
        cells.append(f'<td class="col-xstashMetrics">{metrics_cell(row)}</td>')
        cells.append(f'<td class="col-xstashRunDir">{link}</td>')
