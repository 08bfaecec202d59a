"""pytest-html's report gains xstash's columns: tool, time against the estimate, key metrics and
a link to the run directory. pytest-html 4 renders its table in the browser from a JSON blob
(the ``data-jsonblob`` attribute); the tests read that blob and the header back. The sweep
project is tests/test_html_report.py's, run once serially and once under ``-n 2`` (the same
runs that write the xstash results page).
"""

from __future__ import annotations

import json
import os
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from test_html_report import EXPERIMENTS, FAILING, SweepRun, run_sweep

from xstash_plugin.report.columns import metrics_cell, time_cell

if os.environ.get("CI"):
    import pytest_html  # noqa: F401  (CI installs the dev extras: a missing one is a failure)
else:
    pytest.importorskip("pytest_html")

HEADER = ["Tool", "Time / estimate", "Metrics", "Run directory"]


class Report(HTMLParser):
    """pytest-html's page: the header cells' text and the tests' JSON blob."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.header: list[str] = []
        self.blob: dict[str, Any] = {}
        self._th: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "th":
            self._th = []
        if values.get("id") == "data-container":
            self.blob = json.loads(values["data-jsonblob"] or "{}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self._th is not None:
            self.header.append("".join(self._th).strip())
            self._th = None

    def handle_data(self, data: str) -> None:
        if self._th is not None:
            self._th.append(data)


def cell(cells: list[str], column: str) -> str:
    """The inner HTML of the cell of class ``col-<column>``."""
    (found,) = [c for c in cells if f'class="col-{column}"' in c]
    match = re.fullmatch(r"<td[^>]*>(.*)</td>", found, re.S)
    assert match is not None, found
    return match.group(1)


def check_report(path: Path) -> None:
    report = Report(path.read_text(encoding="utf-8"))
    header = report.header
    assert header[:3] == ["Result", "Test", "Tool"]
    assert header[-3:] == HEADER[1:]
    tests = report.blob["tests"]
    assert len(tests) == EXPERIMENTS
    for nodeid, entries in tests.items():
        (entry,) = entries
        cells = entry["resultsTableRow"]
        assert len(cells) == len(header), cells
        name = nodeid.rsplit("::", 1)[-1]
        assert entry["result"] == ("Failed" if name in FAILING else "Passed")
        assert cell(cells, "xstashTool") == "m"
        assert entry["xstashTool"] == "m"  # sortable: pytest-html keeps the value
        time = cell(cells, "xstashTime")
        assert re.fullmatch(r"\d+\.\ds( / est (5s|10s))?", time), time
        metrics = unescape(re.sub(r"<[^>]+>", "", cell(cells, "xstashMetrics")))
        link = re.search(r'href="([^"]+)"', cell(cells, "xstashRunDir"))
        assert link is not None
        run_dir = path.parent / unquote(link.group(1))
        assert (run_dir / "xstash.json").is_file()
        assert json.loads((run_dir / "xstash.json").read_text())["nodeid"] == nodeid
        if name == "diverge":
            assert metrics == "" and time.endswith("s") and "est" not in time
        elif name == "grid[lr=0.0001-model=small]":
            assert metrics == "accuracy=0.7 ✗, loss=0.3 ✓"
            assert 'style="color:red" title="expected &gt;= 0.72"' in cells[-2]
        elif name == "baseline":
            assert metrics == "accuracy=0.83 ✓, loss=0.17"
            assert time.endswith(" / est 10s")


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory, hydra_python: str) -> SweepRun:
    return run_sweep(tmp_path_factory, hydra_python, "serial")


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory, hydra_python: str) -> SweepRun:
    return run_sweep(tmp_path_factory, hydra_python, "xdist")


def test_columns_in_pytest_html(serial: SweepRun) -> None:
    check_report(serial.root / "site" / "report.html")


def test_columns_in_pytest_html_under_xdist(parallel: SweepRun) -> None:
    check_report(parallel.root / "site" / "report.html")


def test_cells_on_hand_made_rows() -> None:
    row: dict[str, Any] = {
        "duration": 12.34,
        "estimated_runtime": "30s",
        "metrics": {"a": 1, "b": {"c": 0.5}, "d": "x<y", "e": 2, "f": 3},
        "verdicts": [{"metric": "f", "expected": "< 1", "ok": False}],
    }
    assert time_cell(row) == "12.3s / est 30s"
    assert time_cell({"duration": None, "estimated_runtime": "5m"}) == "- / est 5m"
    assert time_cell({}) == ""
    text = unescape(re.sub(r"<[^>]+>", "", metrics_cell(row)))
    assert text == "f=3 ✗, a=1, b.c=0.5, d=x<y"  # expectations first, then four in all
    assert "x&lt;y" in metrics_cell(row)
