"""The HTML results page in a real browser: headless Chromium runs the page's JavaScript.

``results.html#sort=accuracy:desc`` must come out sorted (the same function a header click
calls), the plots drawn, and a screenshot must show a page, not a blank one. Chromium comes
from Debian (.ci/run installs it); without it the tests skip, except in CI where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from test_html_report import EXPERIMENTS, FAILING, Page, SweepRun, check_page, name_of, run_sweep

CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 90


def chromium() -> str:
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path is None:
        message = "chromium is not installed (apt-get install chromium; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Headless Chromium with ``args``, in a process group of its own killed whatever happens
    (Chromium starts helper processes that a plain kill would leave behind)."""
    profile = tmp_path / "chromium-profile"
    argv = [
        chromium(),
        "--headless",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=2000",  # lets the page's script run before the dump
        *args,
    ]
    env = dict(os.environ, HOME=str(tmp_path))
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT}s: {argv}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers still alive after the main process
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, hydra_python: str) -> SweepRun:
    chromium()  # skip (or fail in CI) before running the sweep
    return run_sweep(tmp_path_factory, hydra_python, "serial")


def test_hash_sorts_the_table_in_chromium(sweep: SweepRun, tmp_path: Path) -> None:
    report = sweep.root / "results.html"
    check_page(report)
    url = report.as_uri() + "#sort=accuracy:desc"
    dom = run_chromium(tmp_path, "--dump-dom", url).stdout.decode()
    page = Page(dom)
    assert len(page.rows) == EXPERIMENTS
    # The script ran: the table says how it is sorted, the header shows it.
    assert 'id="results" data-sort="accuracy:desc"' in dom
    assert 'data-column="accuracy" class="metric" aria-sort="descending"' in dom
    keys = [page.sort_key(row, "accuracy") for row in page.rows]
    values = [float(k) for k in keys if k]
    assert values == sorted(values, reverse=True) and len(values) == EXPERIMENTS - 1
    assert keys[-1] == "" and name_of(page, page.rows[-1]) == "diverge"  # no value: last
    assert page.summary["data-failed"] == str(len(FAILING))
    # The plots are drawn: lines, points, bands.
    assert len(page.svgs) == 4
    for svg in page.svgs:
        assert svg.count("path", "series") >= 2 and svg.count("circle") >= 4
        assert svg.count("rect", "band") >= 1
    # Another column, ascending, and the filters from the hash too.
    dom = run_chromium(tmp_path, "--dump-dom", report.as_uri() + "#sort=lr:asc&tag=grid").stdout
    page = Page(dom.decode())
    shown = [row for row in page.rows if "hidden" not in row.attrs]
    assert len(shown) == 6 and "6 of 8 shown" in dom.decode()
    lrs = [float(page.sort_key(row, "lr") or "nan") for row in shown]
    assert lrs == sorted(lrs)


def test_screenshot_is_a_page(sweep: SweepRun, tmp_path: Path) -> None:
    report = sweep.root / "results.html"
    shot = tmp_path / "results.png"
    run_chromium(
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1400,1800",
        report.as_uri() + "#sort=status:asc",
    )
    print(f"screenshot: {shot}")
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    assert (width, height) == (1400, 1800)
    pixels = width * height
    red, green, blue = rgb.split()
    darkest = ImageChops.darker(ImageChops.darker(red, green), blue)  # min(r, g, b) per pixel
    lightest = ImageChops.lighter(ImageChops.lighter(red, green), blue)  # max(r, g, b)
    spread = ImageChops.subtract(lightest, darkest)
    ink = sum(darkest.histogram()[:235])  # min(r, g, b) < 235
    coloured = sum(spread.histogram()[61:])  # max(r, g, b) - min(r, g, b) > 60
    # Text, table rules, shaded bands, lines and points: far from blank, and in colour.
    assert ink > pixels * 0.03, f"only {ink} of {pixels} pixels are not white: {shot}"
    assert coloured > pixels * 0.002, f"only {coloured} coloured pixels: {shot}"
