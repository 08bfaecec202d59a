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
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
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


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) bytes of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat = 8, b""
    width = height = channels = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        chunk = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and interlace == 0, (depth, interlace)
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    low7 = int.from_bytes(b"\x7f" * stride, "big")
    high = int.from_bytes(b"\x80" * stride, "big")
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 2:  # Up, the commonest: add the rows bytewise in one big-int sum (SWAR)
            a, b = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
            line = bytearray((((a & low7) + (b & low7)) ^ ((a ^ b) & high)).to_bytes(stride, "big"))
            kind = 0
        for i in range(stride if kind else 0):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
            else:
                raise AssertionError(f"unknown PNG filter {kind}")
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r) for r in rows] if channels == 3 else [_rgb(r) for r in rows]


def _rgb(rgba: bytes) -> bytes:
    return bytes(b for i, b in enumerate(rgba) if i % 4 != 3)


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    if kind == 4:
        p = left + up - corner
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
        return left if pa <= pb and pa <= pc else up if pb <= pc else corner
    return 0


@pytest.mark.parametrize("colour", [2, 6], ids=["rgb", "rgba"])
def test_png_reader_on_a_handmade_image(colour: int) -> None:
    """Five rows, one per filter type (None, Sub, Up, Average, Paeth), values that wrap."""
    channels = 3 if colour == 2 else 4
    pixels = [
        [(255, 255, 255), (10, 20, 30), (200, 0, 0)],
        [(0, 0, 0), (1, 2, 3), (255, 0, 9)],
        [(255, 1, 128), (129, 255, 0), (7, 7, 7)],
        [(3, 250, 4), (254, 253, 252), (0, 128, 255)],
        [(90, 90, 90), (255, 255, 255), (1, 0, 1)],
    ]
    width, height = 3, len(pixels)
    raw, previous = b"", bytes(width * channels)
    for kind, row in enumerate(pixels):
        flat = bytes(c for px in row for c in (*px, 255)[:channels])
        encoded = bytearray([kind])
        for i, value in enumerate(flat):
            left = flat[i - channels] if i >= channels else 0
            corner = previous[i - channels] if i >= channels else 0
            encoded.append((value - _predict(kind, left, previous[i], corner)) & 0xFF)
        raw += bytes(encoded)
        previous = flat

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    assert read_png(png) == (width, height, [bytes(c for px in r for c in px) for r in pixels])


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
    width, height, rows = read_png(shot.read_bytes())
    assert (width, height) == (1400, 1800)
    pixels = width * height
    ink = coloured = 0
    for line in rows:
        for i in range(0, len(line), 3):
            r, g, b = line[i], line[i + 1], line[i + 2]
            if min(r, g, b) < 235:
                ink += 1
            if max(r, g, b) - min(r, g, b) > 60:
                coloured += 1
    # Text, table rules, shaded bands, lines and points: far from blank, and in colour.
    assert ink > pixels * 0.03, f"only {ink} of {pixels} pixels are not white: {shot}"
    assert coloured > pixels * 0.002, f"only {coloured} coloured pixels: {shot}"
