"""The HTML results page (``--xstash-report results.html``).

Unit tests render hand-made rows; the others run a real sweep once per module (a Hydra tool on
the session's ``hydra_python``: a 3 x 2 grid with one point failing its expectation, a passing
experiment and one that crashes) and read the page back with the stdlib's ``html.parser``:
serial, and under ``-n 2`` with ``--junitxml`` parsed back. ``run_sweep`` and ``Page`` are
shared with tests/test_pytest_html.py and tests/test_browser.py.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from xstash_plugin.config.expectations import Expectation
from xstash_plugin.report.axes import is_log_axis, log_ticks, nice_ticks
from xstash_plugin.report.files import render
from xstash_plugin.report.html import link_target, render_html
from xstash_plugin.report.rows import REPORT_SUFFIXES
from xstash_plugin.report.svg import band_of
from xstash_plugin.run.judge import judge

# accuracy grows with log10(lr) and with the model size; 'crash: true' exits 3 without metrics.
SWEEP_TOOL = """\
import json, math, os, sys
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    conf = OmegaConf.to_container(cfg, resolve=True)
    print("training with", json.dumps(conf, sort_keys=True))
    if conf.get("crash"):
        print("diverged: loss is nan", file=sys.stderr)
        sys.exit(3)
    bonus = {"small": 0.0, "big": 0.05}[conf["model"]]
    accuracy = round(0.7 + 0.08 * math.log10(float(conf["lr"]) / 1e-4) + bonus, 4)
    metrics = {"accuracy": accuracy, "loss": round(1 - accuracy, 4)}
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f)

if __name__ == "__main__":
    main()
"""

CONFIGS = {
    "grid.yaml": """\
        tool: m
        experiment: grid
        description: "learning rate x model size"
        tags: [paper, grid]
        estimated_runtime: 5s
        lr: 0.001
        model: small
        xstash:
          sweep:
            lr: [0.0001, 0.001, 0.01]
            model: [small, big]
          expect:
            accuracy: ">= 0.72"
            loss: {ref: 0.2, tol: 0.15}
        """,
    "baseline.yaml": """\
        tool: m
        experiment: baseline
        tags: [baseline]
        estimated_runtime: 10s
        lr: 0.001
        model: big
        xstash:
          expect:
            accuracy: ">= 0.5"
        """,
    "diverge.yaml": """\
        tool: m
        experiment: diverge
        tags: [paper]
        lr: 0.1
        model: small
        crash: true
        """,
}
EXPERIMENTS = 8  # 6 grid points, baseline, diverge
FAILING = {"grid[lr=0.0001-model=small]", "diverge"}


@dataclass
class SweepRun:
    root: Path
    result: subprocess.CompletedProcess[str]

    def output(self) -> str:
        return self.result.stdout + self.result.stderr


def make_project(root: Path, hydra_python: str) -> Path:
    """The sweep repository in ``root``: tool 'm' (on ``hydra_python``) and three configs."""
    (root / "tools" / "m" / "src").mkdir(parents=True)
    (root / "tools" / "m" / "src" / "main.py").write_text(SWEEP_TOOL)
    (root / "configs").mkdir()
    (root / "configs" / "meta.yaml").write_text(
        f'tools:\n  m:\n    path: tools/m\n    entrypoint: src/main.py\n    env: "{hydra_python}"\n'
    )
    for name, text in CONFIGS.items():
        (root / "configs" / name).write_text(textwrap.dedent(text))
    (root / "pytest.ini").write_text("[pytest]\njunit_family = xunit1\n")
    return root


def run_pytest(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``pytest configs ARGS`` in ``root``, in a subprocess (module fixtures share one run)."""
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "configs", "-p", "no:cacheprovider", "-rA", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The two real runs every report test reads (this module's, tests/test_pytest_html.py's and
# tests/test_browser.py's): serial and under -n 2, each writing all the reports at once.
HAS_PYTEST_HTML = importlib.util.find_spec("pytest_html") is not None
PYTEST_HTML_ARGS = ("--html=site/report.html", "--self-contained-html")
RUNS = {
    "serial": ("--xstash-report=results.html",),
    "xdist": ("-n", "2", "--xstash-report=out/results.html", "--junitxml=junit.xml"),
}
_done: dict[str, SweepRun] = {}


def run_sweep(factory: pytest.TempPathFactory, hydra_python: str, kind: str) -> SweepRun:
    """The sweep project run ``kind`` ('serial' or 'xdist'); once per test process."""
    if kind not in _done:
        root = make_project(factory.mktemp(f"sweep-{kind}"), hydra_python)
        extra = PYTEST_HTML_ARGS if HAS_PYTEST_HTML else ()
        result = run_pytest(root, *RUNS[kind], *extra)
        run = SweepRun(root, result)
        assert result.returncode == 1, run.output()  # two experiments fail, on purpose
        _done[kind] = run
    return _done[kind]


# --- reading the page back ---------------------------------------------------------------------


@dataclass
class Row:
    attrs: dict[str, str]
    cells: list[str] = field(default_factory=list)
    sort_keys: list[str | None] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)


@dataclass
class Svg:
    attrs: dict[str, str]
    elements: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(
            1
            for t, a in self.elements
            if t == tag and (cls is None or cls in a.get("class", "").split())
        )


class Page(HTMLParser):
    """What the tests look at: header columns, body rows, SVG plots, every attribute value."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.columns: list[str] = []
        self.rows: list[Row] = []
        self.svgs: list[Svg] = []
        self.attr_values: list[str] = []
        self.tags: list[str] = []
        self.headings: list[str] = []
        self.summary: dict[str, str] = {}
        self._in_tbody = False
        self._cell: list[str] | None = None
        self._svg_depth = 0
        self._heading: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        self.attr_values.extend(values.values())
        if tag == "th" and "data-column" in values:
            self.columns.append(values["data-column"])
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self.rows.append(Row(values))
        elif tag == "td" and self._in_tbody:
            self._cell = []
            self.rows[-1].sort_keys.append(values.get("data-sort"))
        elif tag == "a" and self._cell is not None:
            self.rows[-1].links[values.get("data-kind", "")] = values.get("href", "")
        elif tag == "p" and values.get("id") == "summary":
            self.summary = values
        elif tag in ("h1", "h2", "h3"):
            self._heading = []
        if tag == "svg" and "plot" in values.get("class", "").split():
            self.svgs.append(Svg(values))
            self._svg_depth = 1
        elif self._svg_depth:
            self.svgs[-1].elements.append((tag, values))
            self._svg_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_tbody = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].cells.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None
        if self._svg_depth:
            self._svg_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)

    def cell(self, row: Row, column: str) -> str:
        return row.cells[self.columns.index(column)]

    def sort_key(self, row: Row, column: str) -> str | None:
        return row.sort_keys[self.columns.index(column)]

    def plot(self, metric: str, key: str) -> Svg:
        (svg,) = [
            s
            for s in self.svgs
            if (s.attrs.get("data-metric"), s.attrs.get("data-key")) == (metric, key)
        ]
        return svg


def name_of(page: Page, row: Row) -> str:
    """The test name of a row, without its file."""
    return row.attrs["data-id"].rsplit("::", 1)[-1]


def check_page(report: Path) -> Page:
    """Everything a complete page of the sweep run shows; returns the page for more checks."""
    text = report.read_text(encoding="utf-8")
    page = Page(text)
    # Nothing fetched from the network: no URL at all, no external scripts, styles or fonts.
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and " src=" not in text and "@import" not in text
    assert page.summary["data-total"] == str(EXPERIMENTS)
    assert page.summary["data-failed"] == str(len(FAILING))
    # One row per experiment, failed ones first.
    assert len(page.rows) == EXPERIMENTS
    outcomes = [row.attrs["data-outcome"] for row in page.rows]
    assert outcomes == ["fail"] * len(FAILING) + ["pass"] * (EXPERIMENTS - len(FAILING))
    assert {name_of(page, row) for row in page.rows[: len(FAILING)]} == FAILING
    # Each row links its run directory and logs, relative to the page's folder.
    for row in page.rows:
        assert set(row.links) == {"run dir", "stdout", "stderr", "record"}, row
        for kind, href in row.links.items():
            assert not href.startswith(("/", "file:")), href
            target = report.parent / unquote(href)
            assert target.is_dir() if kind == "run dir" else target.is_file(), target
    diverge = next(row for row in page.rows if name_of(page, row) == "diverge")
    stderr = report.parent / unquote(diverge.links["stderr"])
    assert "diverged: loss is nan" in stderr.read_text()
    # One plot per (metric, swept key), each with its expectation's band.
    pairs = {(s.attrs["data-metric"], s.attrs["data-key"]) for s in page.svgs}
    assert pairs == {(m, k) for m in ("accuracy", "loss") for k in ("lr", "model")}
    assert len(page.svgs) == 4
    for svg in page.svgs:
        assert svg.count("rect", "band") >= 2  # the region, and its legend swatch
        assert svg.count("path", "series") >= 2
    assert page.plot("accuracy", "lr").attrs["data-scale"] == "log"
    assert page.plot("accuracy", "model").attrs["data-scale"] == "category"
    # The failing point is marked, in both plots of each metric.
    for key in ("lr", "model"):
        assert page.plot("accuracy", key).count("g", "failed") == 1
        assert page.plot("loss", key).count("g", "failed") == 1
    assert page.plot("accuracy", "lr").count("path", "series") == 2  # model=small, model=big
    assert page.plot("accuracy", "model").count("path", "series") == 3  # one per lr
    return page


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory, hydra_python: str) -> SweepRun:
    return run_sweep(tmp_path_factory, hydra_python, "serial")


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory, hydra_python: str) -> SweepRun:
    return run_sweep(tmp_path_factory, hydra_python, "xdist")


def test_page_of_a_real_sweep(serial: SweepRun) -> None:
    page = check_page(serial.root / "results.html")
    assert f"results written to {serial.root / 'results.html'}" in serial.output()
    assert page.headings[0] == "xstash results"
    assert page.columns[:4] == ["status", "experiment", "tool", "tags"]
    assert {"lr", "model", "accuracy", "loss", "duration", "estimate"} <= set(page.columns)
    # Metric cells show the value and, when it failed, the expectation.
    failed = next(r for r in page.rows if name_of(page, r) == "grid[lr=0.0001-model=small]")
    assert page.cell(failed, "accuracy").startswith("0.7 ✗")
    assert "expected >= 0.72" in page.cell(failed, "accuracy")
    assert page.sort_key(failed, "lr") == "0.0001"
    baseline = next(r for r in page.rows if name_of(page, r) == "baseline")
    assert page.cell(baseline, "lr") == ""  # not a sweep point
    assert "baseline" in page.cell(baseline, "tags")


def test_page_under_xdist_matches_junit(parallel: SweepRun) -> None:
    report = parallel.root / "out" / "results.html"
    page = check_page(report)
    cases = ET.parse(parallel.root / "junit.xml").getroot().iter("testcase")
    run_dirs = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}["run_dir"]
        for case in cases
    }
    assert len(run_dirs) == EXPERIMENTS
    for row in page.rows:
        run_dir = os.path.normpath(report.parent / unquote(row.links["run dir"]))
        assert run_dirs[name_of(page, row)] == run_dir


# --- unit tests on hand-made rows --------------------------------------------------------------


def row(name: str, status: str = "passed", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"configs/s.yaml::{name}",
        "experiment": name.split("[")[0],
        "config": "configs/s.yaml",
        "tool": "t",
        "tags": ["demo"],
        "point": {},
        "status": status,
        "duration": 1.0,
        "estimated_runtime": None,
        "estimated_seconds": None,
        "exit_code": 0,
        "metrics": {},
        "verdicts": [],
        "run_dir": None,
    }
    base.update(extra)
    return base


EXPECTATIONS = [
    Expectation("m", "cmp", op=">=", value=0.9),
    Expectation("m", "cmp", op=">", value=0.9),
    Expectation("m", "cmp", op="<", value=-2.5),
    Expectation("m", "cmp", op="<=", value=1e-5),
    Expectation("m", "cmp", op="==", value=3),
    Expectation("m", "tol", value=0.05, ref=0.31),
    Expectation("m", "rel", value=0.1, ref=-200),
    Expectation("m", "bounds", ref=100, lower=-0.1, upper=0.3),
    Expectation("m", "bounds", ref=100, lower=None, upper=0.3),
    Expectation("m", "bounds", ref=100, lower=-0.5, upper=None),
]


@pytest.mark.parametrize("expectation", EXPECTATIONS, ids=lambda e: e.describe())
def test_band_is_the_region_the_expectation_allows(expectation: Expectation) -> None:
    band = band_of(judge([expectation], {})[0].as_dict())  # as a run's record keeps it
    assert band is not None
    assert band.label == f"expected {expectation.describe()}"
    probes = [-1e9, -250, -200, -180, -2.5, -1, 0, 1e-5, 0.26, 0.3, 0.9, 0.95, 3, 90, 130, 1e9]
    for value in [*probes, band.low, band.high]:
        if math.isfinite(value) and value not in (band.low, band.high):  # strict edges aside
            assert (band.low <= value <= band.high) == expectation.holds(value), value


def test_no_band_for_not_equal_or_a_verdict_without_bounds() -> None:
    assert band_of(judge([Expectation("m", "cmp", op="!=", value=0)], {})[0].as_dict()) is None
    # A record of an older version: its verdicts have the text, not the bounds.
    assert band_of({"metric": "m", "expected": ">= 3", "ok": True}) is None
    assert (
        band_of({"metric": "m", "expected": ">= 3", "bounds": {"low": "3", "high": None}}) is None
    )


def test_bands_are_drawn_from_bounds_and_old_records_still_render(tmp_path: Path) -> None:
    (verdict,) = [v.as_dict() for v in judge([Expectation("acc", "tol", value=0.1, ref=1)], {})]
    old = {k: v for k, v in verdict.items() if k != "bounds"}  # written before bounds existed

    def sweep(verdicts: list[dict[str, Any]]) -> Svg:
        rows = [
            row(f"s[lr={lr}]", point={"lr": lr}, metrics={"acc": 1.0}, verdicts=verdicts)
            for lr in (0.1, 0.2)
        ]
        (svg,) = Page(render_html(tmp_path / "r.html", rows)).svgs
        return svg

    assert sweep([verdict]).count("rect", "band") == 2  # the region, and its legend swatch
    assert sweep([old]).count("rect", "band") == 0
    assert sweep([old]).count("circle", "point") == 2


def test_axes() -> None:
    assert is_log_axis([1e-4, 1e-3, 1e-2])
    assert not is_log_axis([0.02, 0.05, 0.2])  # one decade: linear
    assert not is_log_axis([0, 1, 100])
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.63, 0.97) == [0.7, 0.8, 0.9]
    assert log_ticks(1e-4, 0.1) == [1e-4, 1e-3, 1e-2, 0.1]
    assert log_ticks(0.02, 2) == [0.02, 0.05, 0.1, 0.2, 0.5, 1, 2]


def test_links_are_relative_where_they_can_be(tmp_path: Path) -> None:
    target = tmp_path / "outputs" / "a b" / "stdout.log"
    assert link_target(target, tmp_path / "site") == "../outputs/a%20b/stdout.log"
    assert link_target(Path("/proc/self"), tmp_path) == "file:///proc/self"


def test_failed_first_and_user_text_escaped(tmp_path: Path) -> None:
    run = tmp_path / "outputs" / "r1"
    run.mkdir(parents=True)
    (run / "stdout.log").write_text("hi")
    rows = [
        row("ok", metrics={"acc": 0.9}, run_dir=str(run)),
        row(
            "bad<script>",
            "failed",
            tags=["<b>x</b>"],
            metrics={"acc": "<img src=x>", "n": {"k": 2}},
            verdicts=[{"metric": "acc", "expected": ">= 0.5", "measured": 0, "ok": False}],
        ),
        row("slow", "timeout", duration=30.0, estimated_runtime="5s", estimated_seconds=5.0),
    ]
    text = render(tmp_path / "site" / "r.html", rows)
    assert ".html" in REPORT_SUFFIXES and ".htm" in REPORT_SUFFIXES
    assert text.count("<script>") == 1  # the page's own
    assert "bad&lt;script&gt;" in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert "<img" not in text
    page = Page(text)
    names = [name_of(page, r) for r in page.rows]
    assert names == ["bad<script>", "slow", "ok"]  # failed, timeout, passed
    assert page.columns == [
        "status",
        "experiment",
        "tool",
        "tags",
        "acc",
        "n.k",
        "duration",
        "estimate",
    ]
    assert page.rows[2].links == {"run dir": "../outputs/r1/", "stdout": "../outputs/r1/stdout.log"}
    assert page.cell(page.rows[0], "acc").startswith("<img src=x> ✗")
    assert 'class="num slow" title="more than twice the estimated runtime">30.0s<' in text
    assert page.svgs == []  # no sweep, no plot
    assert page.summary["data-failed"] == "2"


def test_only_script_is_the_page_own(tmp_path: Path) -> None:
    text = render_html(tmp_path / "r.html", [row("x<script>alert(1)</script>")])
    assert text.count("<script>") == 1


def test_one_key_sweep_is_one_line_and_categories_keep_sweep_order(tmp_path: Path) -> None:
    rows = [
        row(
            f"s[opt={o}]",
            "passed" if o != "adam" else "failed",
            point={"opt": o},
            metrics={"acc": a},
        )
        for o, a in (("sgd", 0.5), ("adam", 0.7), ("lion", 0.6))
    ]
    page = Page(render_html(tmp_path / "r.html", rows))
    (svg,) = page.svgs
    assert svg.attrs["data-scale"] == "category"
    assert svg.count("path", "series") == 1
    assert svg.count("circle", "point") == 2 and svg.count("g", "failed") == 1
    assert svg.count("rect", "band") == 0  # no expectation
    labels = [a for t, a in svg.elements if t == "text"]
    assert labels  # ticks and axis labels exist
    text = render_html(tmp_path / "r.html", rows)
    text = text[text.index("<svg") :]  # the plot, not the table (failed first)
    assert text.index(">sgd<") < text.index(">adam<") < text.index(">lion<")


def test_failed_run_without_value_is_marked_on_the_axis(tmp_path: Path) -> None:
    rows = [
        row("s[lr=0.1]", point={"lr": 0.1}, metrics={"acc": 0.5}),
        row("s[lr=0.01]", "failed", point={"lr": 0.01}, metrics={}),
        row("s[lr=0.001]", point={"lr": 0.001}, metrics={"acc": 0.7}),
    ]
    page = Page(render_html(tmp_path / "r.html", rows))
    (svg,) = page.svgs
    assert svg.attrs["data-scale"] == "log"
    assert svg.count("g", "no-value") == 1


def test_empty_session_is_a_valid_page(tmp_path: Path) -> None:
    page = Page(render_html(tmp_path / "r.html", []))
    assert page.rows == [] and page.summary["data-total"] == "0"
