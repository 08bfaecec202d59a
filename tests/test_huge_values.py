"""A huge value in a config (a 1 MB sweep value) reaches the record whole, and every text a
person reads shows it elided: the failure report's command, the results table, the report files,
JUnit properties. (A fake tool: the test is about xstash's own texts.)"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from helpers import Project

TOOL = "import sys\nprint('ran with', len(sys.argv), 'arguments')\n"
SIZE = 1_000_000


def test_a_huge_sweep_value_is_elided_in_every_text_a_person_reads(project: Project) -> None:
    project.tool("t", TOOL, env="system", deps=None)
    huge = "v" * SIZE
    project.config(
        "big.yaml",
        f"tool: t\nexperiment: big\nxstash:\n  sweep:\n    note: ['{huge}', short]\n",
    )
    result = project.pytester.runpytest(
        "configs", "--junitxml=r.xml", "--xstash-report=r.md", "-p", "no:cacheprovider"
    )
    # One argument of 1 MB is more than Linux passes to a program (Argument list too long).
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    result.stdout.fnmatch_lines(["*cannot start tool 't'*Argument list too long*"])
    result.stdout.fnmatch_lines(["command: *vvv...vvv*(1,000,00? chars)*"])
    assert len(text) < 50_000, f"{len(text):,} characters of terminal output"
    assert max(len(line) for line in text.splitlines()) < 1_000
    assert (project.root / "r.md").stat().st_size < 10_000
    assert (project.root / "r.xml").stat().st_size < 50_000
    cases = list(ET.parse(project.root / "r.xml").iter("testcase"))
    assert len(cases) == 2
    # The record keeps what was sent, whole.
    runs = project.run_dirs("big")
    records = [json.loads((run / "xstash.json").read_text()) for run in runs]
    (failed,) = [r for r in records if r["status"] == "error"]
    assert any(len(arg) > SIZE for arg in failed["argv"])
    assert failed["point"] == {"note": huge}
