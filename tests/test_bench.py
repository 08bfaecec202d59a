"""The benchmark scripts keep working: ``bench/run_all.py --smoke`` runs them all at small
sizes.

No timing is asserted (the numbers mean nothing at these sizes, and on a loaded machine); what
is checked is that every script runs to the end, that both sides of every benchmark ran, and
that each row of the table has a measured ratio or size and the command that reproduces it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each benchmark and the rows of the table it gives (run one by one, so -n spreads them).
EXPECTED_ROWS = {
    "B1": 1,
    "B2": 1,
    "B3": 1,
    "B4": 2,
    "B5": 2,
    "B6": 3,
    "B7": 1,
    "B8": 1,
    "B9": 1,
    "B10": 1,
    "B11": 1,
}
NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"


def test_every_benchmark_of_run_all_is_checked() -> None:
    listed = re.findall(r'^    "(B[0-9]+)": \(', (ROOT / "bench" / "run_all.py").read_text(), re.M)
    assert listed == list(EXPECTED_ROWS)


@pytest.mark.slow_integration
@pytest.mark.parametrize("bid", list(EXPECTED_ROWS))
def test_every_benchmark_runs_at_smoke_size(tmp_path: Path, bid: str) -> None:
    table = tmp_path / "table.md"
    argv = [sys.executable, "bench/run_all.py", "--smoke", "--repeat", "1", "--only", bid]
    proc = subprocess.run(
        [*argv, "--out", str(table)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=900,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in table.read_text().splitlines()
        if re.match(r"\| B[0-9]+ \|", line)
    ]
    assert [row[0] for row in rows] == [bid] * EXPECTED_ROWS[bid], table.read_text()
    for bid, what, goal, measured, met, command in rows:
        assert what and goal.startswith("<="), (bid, what, goal)
        assert re.match(rf"{NUMBER}|[+-]{NUMBER} MiB", measured), (bid, measured)
        assert "failed" not in measured and met in ("met", "NOT met"), (bid, measured, met)
        assert re.fullmatch(r"`python bench/\w+\.py .*`", command), (bid, command)
    if bid == "B1":  # it times every tool run on both sides, so it can print the equalised ratio
        assert re.search(rf"ratio with the tools' own time equalised: .* = {NUMBER}", output)
        assert "tool runs: median" in output
    if bid == "B4":  # the preload row really ran (it is skipped, with a message, when it cannot)
        assert "skipping the 'preload: true' row" not in output
    assert "Smoke sizes (not measurements), median of 1" in table.read_text()
