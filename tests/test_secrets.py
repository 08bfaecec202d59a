"""The tool gets the environment (it needs it); records and reports never copy a value of it."""

from __future__ import annotations

import json

import pytest
from helpers import Project

SECRET = "s3cr3t-value-7f1c9e"

# A real Hydra tool that uses the secret (as a real tool would) without printing it.
USES_SECRET = """\
import json, os
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    token = os.environ["XSTASH_TEST_TOKEN"]
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"token_length": len(token)}, f)

if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
def test_no_environment_value_reaches_records_or_reports(
    project: Project, hydra_python: str, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setenv("XSTASH_TEST_TOKEN", SECRET)
    project.tool("t", USES_SECRET, env=hydra_python, deps=None)
    project.config(
        "a.yaml",
        f"tool: t\nexperiment: a\nxstash:\n  expect: {{token_length: '== {len(SECRET)}'}}\n",
    )
    project.config("b.yaml", "tool: t\nexperiment: b\nxstash:\n  sweep: {+k: [1, 2]}\n")
    run = project.pytester.runpytest_subprocess if workers else project.pytester.runpytest
    extra = ["-n", str(workers)] if workers else []
    for report in ("r.json", "r.csv"):
        result = run("configs", "--junitxml=r.xml", "--xstash-report", report, *extra)
        result.assert_outcomes(passed=3)
        assert SECRET not in result.stdout.str()
    written = [project.root / "r.xml", project.root / "r.json", project.root / "r.csv"]
    written += sorted((project.root / "outputs").rglob("xstash.json"))
    assert len(written) >= 6
    for path in written:
        assert SECRET not in path.read_text(), f"the secret leaked into {path}"
    record = json.loads(written[-1].read_text())
    assert "env" not in record
