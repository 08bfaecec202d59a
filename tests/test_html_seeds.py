"""Seeds on the HTML results page (``--xstash-report results.html``): hand-made rows following the
seeds contract (3 learning rates x 5 seeds; one failing seed under a passing aggregate, whose
statistics are therefore incomplete; one aggregate failing its expectation on the mean).

The table: one row per aggregate (``mean ± half the CI``, ``n=``, the statistics as tooltip), its
seed rows right after it (``tr.seed``, ``data-parent``), folded by the page's script behind the
aggregate's toggle (``button.fold``). The plot: per line, a CI band (``polygon.ci-band``) from
ci_low to ci_high and the seeds as faint points (``.seed-point``). In Chromium: the toggle shows
the seed rows, and sorting keeps them under their aggregate.
"""

from __future__ import annotations

import math
import re
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from test_browser import chromium, run_chromium
from test_html_report import Page, Row, row

from xstash_plugin.report.html import render_html
from xstash_plugin.report.svg_seeds import plus_minus

CONFIG = "configs/seeds.yaml"
LRS = (0.001, 0.01, 0.1)
SEEDS = (0, 1, 2, 3, 4)
BASE = {0.001: 0.78, 0.01: 0.86, 0.1: 0.91}  # lr=0.001 fails 'accuracy: mean >= 0.8'
OFFSETS = (-0.012, -0.004, 0.0, 0.005, 0.011)
T95 = {3: 3.182446, 4: 2.776445}  # Student's t, 97.5% quantile, by degrees of freedom
FAILED_SEED = (0.01, 2)  # crashed (its accuracy says it diverged): not in the statistics
INCOMPLETE = "seed 2 failed: the statistics are over 4 of 5 seeds"


def agg_id(lr: float) -> str:
    return f"{CONFIG}::lr_sweep[lr={lr}]::mean"


def stat(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else None
    sem = std / n**0.5 if std is not None else None
    half = T95[n - 1] * sem if sem is not None else None
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "sem": sem,
        "ci_low": mean - half if half is not None else None,
        "ci_high": mean + half if half is not None else None,
        "min": min(values),
        "max": max(values),
    }


def seed_row(lr: float, seed: int) -> dict[str, Any]:
    failed = (lr, seed) == FAILED_SEED
    accuracy = 0.5 if failed else round(BASE[lr] + OFFSETS[seed], 4)
    return row(
        f"lr_sweep[lr={lr}-seed={seed}]",
        "failed" if failed else "passed",
        id=f"{CONFIG}::lr_sweep[lr={lr}-seed={seed}]",
        experiment="lr_sweep",
        config=CONFIG,
        point={"lr": lr, "seed": seed},
        seed=seed,
        group=agg_id(lr),
        metrics={"accuracy": accuracy, "loss": round(1 - accuracy, 4)},
        exit_code=1 if failed else 0,
        duration=2.0,
    )


def aggregate(lr: float, seeds: list[dict[str, Any]]) -> dict[str, Any]:
    used = [s for s in seeds if s["status"] == "passed"]
    stats = {m: stat([s["metrics"][m] for s in used]) for m in ("accuracy", "loss")}
    mean = stats["accuracy"]["mean"]
    ok = mean >= 0.8
    return row(
        f"lr_sweep[lr={lr}]::mean",
        "passed" if ok else "failed",
        id=agg_id(lr),
        kind="aggregate",
        experiment="lr_sweep",
        config=CONFIG,
        point={"lr": lr},
        seed_key="seed",
        seeds=list(SEEDS),
        n=len(used),
        ci_method="t",
        confidence=0.95,
        stats=stats,
        metrics={m: s["mean"] for m, s in stats.items()},
        verdicts=[
            {
                "metric": "accuracy",
                "statistic": "mean",
                "expected": ">= 0.8",
                "measured": mean,
                "ok": ok,
                "note": "",
                "bounds": {"low": 0.8, "high": None},
            }
        ],
        direction={"accuracy": "max", "loss": "min"},
        seed_runs=[
            {"seed": s["seed"], "id": s["id"], "status": s["status"], "from": None} for s in seeds
        ],
        incomplete=INCOMPLETE if len(used) < len(seeds) else None,
        duration=None,
        run_dir=None,
        exit_code=None,
    )


def seeded_rows() -> list[dict[str, Any]]:
    """Seed rows, then their aggregate, per learning rate (as the session orders them)."""
    rows: list[dict[str, Any]] = []
    for lr in LRS:
        seeds = [seed_row(lr, s) for s in SEEDS]
        rows += [*seeds, aggregate(lr, seeds)]
    for order, r in enumerate(rows):
        r["order"] = order
    return rows


def render(tmp_path: Path, rows: list[dict[str, Any]]) -> str:
    return render_html(tmp_path / "results.html", rows)


def svgs_of(text: str) -> dict[str, ET.Element]:
    """The page's plots, parsed as XML, by metric (one swept key)."""
    found = [ET.fromstring(m) for m in re.findall(r'<svg class="plot".*?</svg>', text, re.S)]
    return {str(svg.get("data-metric")): svg for svg in found}


def classes(element: ET.Element) -> set[str]:
    return set(element.get("class", "").split())


def elements(svg: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in svg.iter(tag) if cls in classes(e)]


def y_pixel(svg: ET.Element) -> Any:
    """The plot's y scale (value -> pixel), read back from its tick labels."""
    ticks = [
        (float(t.text or ""), float(t.get("y", "")))
        for t in svg.iter("text")
        if "tick" in classes(t) and t.get("text-anchor") == "end"
    ]
    (v1, y1), (v2, y2) = ticks[0], ticks[-1]
    scale = (y2 - y1) / (v2 - v1)
    return lambda value: y1 + (value - v1) * scale


def vertices(polygon: ET.Element) -> list[tuple[float, float]]:
    pairs = (p.split(",") for p in polygon.get("points", "").split())
    return [(float(x), float(y)) for x, y in pairs]


def rows_by_id(page: Page) -> dict[str, Row]:
    return {r.attrs["data-id"]: r for r in page.rows}


# --- the table ---------------------------------------------------------------------------------


def test_seed_rows_fold_under_their_aggregate(tmp_path: Path) -> None:
    rows = seeded_rows()
    text = render(tmp_path, rows)
    page = Page(text)
    assert len(page.rows) == 18
    aggregates = [r for r in page.rows if r.attrs.get("data-kind") == "aggregate"]
    children = [r for r in page.rows if "seed" in r.attrs["class"].split()]
    assert len(aggregates) == 3 and len(children) == 15
    # Failed first among aggregates; each aggregate's seed rows right after it, in seed order,
    # the failed seed under its passing aggregate.
    order = [r.attrs["data-id"] for r in page.rows]
    assert order[0] == agg_id(0.001) and "fail" in page.rows[0].attrs["class"].split()
    for lr in LRS:
        at = order.index(agg_id(lr))
        kids = page.rows[at + 1 : at + 6]
        assert [k.attrs["data-parent"] for k in kids] == [agg_id(lr)] * 5
        assert [k.attrs["data-seed"] for k in kids] == [str(s) for s in SEEDS]
    failed_seed = rows_by_id(page)[f"{CONFIG}::lr_sweep[lr=0.01-seed=2]"]
    assert failed_seed.attrs["data-outcome"] == "fail"
    assert order.index(failed_seed.attrs["data-id"]) == order.index(agg_id(0.01)) + 3
    # Folded by default (by the script: without it, all rows show, and the toggle is hidden).
    for agg in aggregates:
        assert agg.attrs["data-expanded"] == "false" and agg.attrs["data-seeds"] == "5"
    assert all("hidden" not in r.attrs for r in page.rows)
    buttons = re.findall(r'<button type="button" class="fold"[^>]*>', text)
    assert len(buttons) == 3
    for button, agg in zip(buttons, aggregates, strict=True):
        assert 'aria-expanded="false"' in button and button.endswith(" hidden>")
        at = page.rows.index(agg)
        ids = [page.rows[at + i].attrs["id"] for i in range(1, 6)]
        assert f'aria-controls="{" ".join(ids)}"' in button
    # The counts are of experiments (aggregates); seed runs in the detail.
    assert page.summary["data-total"] == "3" and page.summary["data-failed"] == "1"
    assert page.summary["data-seed-runs"] == "15"
    assert "15 seed runs under 3 aggregates, 1 not passed" in text
    assert '<span id="shown">3 of 3 shown</span>' in text
    assert "<title>xstash results: 3 experiment(s)</title>" in text
    assert page.columns[:6] == ["status", "experiment", "tool", "tags", "lr", "seed"]


def test_aggregate_cells_show_mean_and_half_ci(tmp_path: Path) -> None:
    rows = seeded_rows()
    aggs = {r["id"]: r for r in rows if r.get("kind") == "aggregate"}
    text = render(tmp_path, rows)
    page = Page(text)
    for agg_row in aggs.values():
        shown = rows_by_id(page)[agg_row["id"]]
        for metric in ("accuracy", "loss"):
            st = agg_row["stats"][metric]
            half = (st["ci_high"] - st["ci_low"]) / 2
            decimals = 2 - math.floor(math.log10(half))  # 3 significant digits; the mean alike
            assert 0.01 < half < 0.1 and decimals == 4
            cell = page.cell(shown, metric)
            assert cell.startswith(f"{st['mean']:.4f} ± {half:.4f} n={st['n']}"), cell
            assert page.sort_key(shown, metric) == repr(st["mean"])
    first = rows_by_id(page)[agg_id(0.001)]
    assert page.cell(first, "accuracy").endswith("✗expected mean >= 0.8")
    assert page.cell(first, "experiment").startswith("lr_sweep[lr=0.001]::mean")
    assert page.cell(first, "experiment").endswith("5 seeds")
    # The tooltip: every statistic, the interval and its method, then the verdict.
    st = aggs[agg_id(0.01)]["stats"]["accuracy"]
    (title,) = re.findall(r'data-sort="0.86" class="num stat ok" title="([^"]*)"', text)
    assert title.split("\n") == [
        "accuracy over seeds",
        "n = 4",
        f"mean = {st['mean']:.6g}",
        f"std = {st['std']:.6g}",
        f"sem = {st['sem']:.6g}",
        f"95% CI = [{st['ci_low']:.6g}, {st['ci_high']:.6g}]",
        f"min = {st['min']:.6g}",
        f"max = {st['max']:.6g}",
        "CI method: t (Student&#x27;s t distribution)",
        "ok: expected mean &gt;= 0.8",
    ]
    # The status: the aggregate's, its failed seed runs, what is incomplete.
    status = page.cell(rows_by_id(page)[agg_id(0.01)], "status")
    assert status == f"passed1 of 5 seed runs not passed{INCOMPLETE}"
    assert page.cell(rows_by_id(page)[agg_id(0.1)], "status") == "passed"
    # Duration: its seed runs' total.
    assert page.cell(rows_by_id(page)[agg_id(0.1)], "duration") == "10.0s"


@pytest.mark.parametrize(
    ("mean", "half", "shown"),
    [
        (0.930454, 0.0361234, ("0.9305", "0.0361")),
        (0.0682298, 0.17412, ("0.068", "0.174")),
        (0.78, 0.01, ("0.7800", "0.0100")),
        (45678.9, 1234.5, ("45680", "1230")),
        (3.25, 0.0, ("3.25", "0")),
    ],
)
def test_mean_shown_to_the_precision_of_its_interval(
    mean: float, half: float, shown: tuple[str, str]
) -> None:
    assert plus_minus(mean, half) == shown


def test_one_seed_is_the_mean_alone(tmp_path: Path) -> None:
    seed = seed_row(0.1, 0)
    agg = aggregate(0.1, [seed])
    agg["n"] = 1
    page = Page(text := render(tmp_path, [seed, agg]))
    cell = page.cell(rows_by_id(page)[agg_id(0.1)], "accuracy")
    assert cell == f"{seed['metrics']['accuracy']:.6g} n=1 ✓"
    assert "95% CI = none (fewer than 2 seeds)" in text and "std = none" in text
    svg = svgs_of(text)["accuracy"]
    assert elements(svg, "polygon", "ci-band") == [] and elements(svg, "line", "ci-bar") == []
    assert len(elements(svg, "circle", "seed-point")) == 1
    legend = [t.text for t in svg.iter("text") if t.text]
    assert "seeds" in legend and "95% CI" not in legend  # no band drawn, none in the legend


def test_seed_rows_without_their_aggregate_are_ordinary_rows(tmp_path: Path) -> None:
    seeds = [r for r in seeded_rows() if r.get("kind") != "aggregate"][:5]
    plain = [{k: v for k, v in r.items() if k not in ("group", "seed")} for r in seeds]
    assert render(tmp_path, seeds) == render(tmp_path, plain)
    page = Page(render(tmp_path, seeds))
    assert len(page.rows) == 5 and all("data-parent" not in r.attrs for r in page.rows)


# --- the plots ---------------------------------------------------------------------------------


def test_plot_has_ci_band_and_faint_seeds(tmp_path: Path) -> None:
    rows = seeded_rows()
    aggs = [r for r in rows if r.get("kind") == "aggregate"]
    text = render(tmp_path, rows)
    plots = svgs_of(text)
    assert set(plots) == {"accuracy", "loss"}  # the seed is no swept key: no plot against it
    for metric, svg in plots.items():
        to_y = y_pixel(svg)
        # The means: the line, one point per learning rate (the failed one's in a group).
        means = elements(svg, "circle", "point")
        means += [c for g in elements(svg, "g", "point") for c in g.iter("circle")]
        xs = sorted(float(c.get("cx", "")) for c in means)
        assert len(xs) == 3
        # One CI band per series: along ci_high left to right, back along ci_low.
        (band,) = elements(svg, "polygon", "ci-band")
        corners = vertices(band)
        assert len(corners) == 6
        upper, lower = corners[:3], corners[3:][::-1]
        assert [x for x, _ in upper] == xs == [x for x, _ in lower]
        for (_, top), (_, bottom), agg in zip(upper, lower, aggs, strict=True):
            st = agg["stats"][metric]
            assert top < bottom  # the upper edge above the lower one
            assert top == pytest.approx(to_y(st["ci_high"]), abs=0.6)
            assert bottom == pytest.approx(to_y(st["ci_low"]), abs=0.6)
        assert float(band.get("fill-opacity", "1")) < 0.5
        # The seeds: faint points at their aggregate's x; the failed one a cross.
        seeds = [e for e in svg.iter() if "seed-point" in classes(e)]
        assert len(seeds) == 15
        faint = [e for e in seeds if e.tag == "circle"]
        assert len(faint) == 14 and all(float(c.get("fill-opacity", "1")) < 0.5 for c in faint)
        assert all(float(c.get("r", "9")) < 4 for c in faint)
        (failed,) = [e for e in seeds if "failed" in classes(e)]
        assert failed.get("data-seed") == "2" and elements(failed, "path", "cross")
        assert "lr=0.01-seed=2" in (failed.findtext("title") or "")
        for seed in faint:  # at the x of its learning rate
            (lr,) = [lr for lr in LRS if f"[lr={lr}-seed=" in (seed.findtext("title") or "")]
            assert float(seed.get("cx", "")) == xs[LRS.index(lr)]
        # The legend: the band and the seeds.
        legend = [t.text for t in svg.iter("text") if t.text]
        assert "95% CI" in legend and "seeds" in legend
    # The expectation's band is still drawn; the key explains the CI band and the seeds.
    assert elements(plots["accuracy"], "rect", "band")
    assert "the 95% CI (confidence interval) of the mean over the seeds" in text
    assert "faint points: the single seed runs" in text
    assert "3 point(s) over 15 seed runs" in text


def test_two_swept_keys_one_band_per_line(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = []
    for model in ("small", "big"):
        for lr in LRS:
            seeds = [seed_row(lr, s) for s in SEEDS]
            for s in seeds:
                s["id"] = s["id"].replace("-seed", f"-model={model}-seed")
                s["point"] = {"lr": lr, "model": model, "seed": s["seed"]}
            agg = aggregate(lr, seeds)
            agg["id"] = agg["id"].replace("]::mean", f"-model={model}]::mean")
            agg["point"] = {"lr": lr, "model": model}
            for s in seeds:
                s["group"] = agg["id"]
            rows += [*seeds, agg]
    text = render(tmp_path, rows)
    plots = [ET.fromstring(m) for m in re.findall(r'<svg class="plot".*?</svg>', text, re.S)]
    by_key = {(p.get("data-metric"), p.get("data-key")): p for p in plots}
    assert set(by_key) == {(m, k) for m in ("accuracy", "loss") for k in ("lr", "model")}
    for (_, key), svg in by_key.items():
        series = elements(svg, "path", "series")
        bands = elements(svg, "polygon", "ci-band")
        assert len(bands) == len(series) == (2 if key == "lr" else 3)
        assert {b.get("data-series") for b in bands} == {s.get("data-series") for s in series}
        assert len([e for e in svg.iter() if "seed-point" in classes(e)]) == 30


# --- in a browser ------------------------------------------------------------------------------

CLICK = """<script>
(function () {  // a click on lr=0.01's toggle, two on the accuracy header (descending)
  var rows = document.querySelectorAll("#results tbody tr[data-kind=aggregate]");
  for (var i = 0; i < rows.length; i++) {
    if (rows[i].getAttribute("data-id") === %s) rows[i].querySelector("button.fold").click();
  }
  var head = document.querySelector('th[data-column="accuracy"] button');
  head.click();
  head.click();
})();
</script>
"""
# After the page's script: mark each row (and toggle) as the browser lays it out (shown or not).
PROBE = """<script>
(function () {
  var all = document.querySelectorAll("#results tbody tr, button.fold");
  for (var i = 0; i < all.length; i++) {
    all[i].setAttribute("data-probe", all[i].getClientRects().length ? "shown" : "none");
  }
})();
</script>
"""


def in_chromium(tmp_path: Path, text: str, name: str, hash_: str = "") -> tuple[str, list[Row]]:
    """The DOM of page ``text`` (probed) after its scripts ran in headless Chromium; its rows."""
    page = tmp_path / name
    page.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = run_chromium(tmp_path, "--dump-dom", page.as_uri() + hash_).stdout.decode()
    return dom, Page(dom).rows


def shown(rows: list[Row]) -> list[str]:
    return [r.attrs["data-id"] for r in rows if r.attrs["data-probe"] == "shown"]


def test_toggle_and_sorting_in_chromium(tmp_path: Path) -> None:
    chromium()
    text = render(tmp_path, seeded_rows())
    # Without the page's script: every row shows (seed rows indented), no toggle.
    no_js = re.sub(r"<script>.*?</script>", "", text, flags=re.S)
    dom, rows = in_chromium(tmp_path, no_js, "no-js.html")
    assert len(rows) == 18 and len(shown(rows)) == 18
    assert dom.count('class="fold"') == 3 and 'data-probe="shown"></button>' not in dom
    assert len(re.findall(r'<button type="button" class="fold"[^>]*data-probe="none"', dom)) == 3
    # With it: the seed rows folded, the toggles shown.
    dom, rows = in_chromium(tmp_path, text, "results.html")
    assert shown(rows) == [agg_id(0.001), agg_id(0.01), agg_id(0.1)]
    assert len(re.findall(r'<button type="button" class="fold"[^>]*data-probe="shown"', dom)) == 3
    assert "3 of 3 shown" in dom
    # Click lr=0.01's toggle, then sort by accuracy (descending): its seed rows show, every
    # aggregate keeps its seed rows right after it.
    script = CLICK % repr(agg_id(0.01)).replace("'", '"')
    dom, rows = in_chromium(tmp_path, text.replace("</body>", script + "</body>"), "clicked.html")
    assert 'data-sort="accuracy:desc"' in dom
    order = [r.attrs["data-id"] for r in rows]
    assert [i for i in order if i.endswith("::mean")] == [agg_id(lr) for lr in reversed(LRS)]
    for lr in LRS:
        at = order.index(agg_id(lr))
        assert [r.attrs.get("data-parent") for r in rows[at + 1 : at + 6]] == [agg_id(lr)] * 5
        assert rows[at].attrs["data-expanded"] == ("true" if lr == 0.01 else "false")
    at = order.index(agg_id(0.01))
    assert shown(rows) == [agg_id(0.1), *order[at : at + 6], agg_id(0.001)]
    button = re.search(r'<tr[^>]*lr=0.01\]::mean"[^>]*>.*?<button([^>]*)>', dom, re.S)
    assert button is not None and 'aria-expanded="true"' in button.group(1)
    # A filter acts on the aggregates: their seed rows go with them (folded here).
    dom, rows = in_chromium(tmp_path, text, "filtered.html", "#status=failed")
    assert "1 of 3 shown" in dom and shown(rows) == [agg_id(0.001)]
    dom, rows = in_chromium(tmp_path, text, "searched.html", "#q=5%20seeds")  # not the toggle
    assert "0 of 3 shown" in dom and shown(rows) == []
