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


# A real Hydra tool that fails with a secret in its exception and prints another one, and
# reports a third as a metric: what the tool writes itself stays as written, everything xstash
# writes or reports has *** instead.
LEAKS_SECRETS = """\
import json, os, sys
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"seen": os.environ["MY_LAB_CREDENTIALS_FILE_CONTENT"], "ok": 1}, f)
    print("using", os.environ["XSTASH_TEST_TOKEN"], flush=True)
    print("and", os.environ["LAB_DB_URL"], file=sys.stderr, flush=True)
    if cfg.fail:
        raise RuntimeError("boom: " + os.environ["AWS_SECRET_ACCESS_KEY"])

if __name__ == "__main__":
    main()
"""
LEAKED = {
    "AWS_SECRET_ACCESS_KEY": "aws-0f9e8d7c6b5a",
    "XSTASH_TEST_TOKEN": "token-1a2b3c4d5e",
    "MY_LAB_CREDENTIALS_FILE_CONTENT": "cred-9z8y7x6w",
    "LAB_DB_URL": "postgres://lab:hunter2-db@db/lab",  # secret only through xstash_secret_env
}


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
def test_secret_values_are_masked_in_everything_xstash_writes(
    project: Project, hydra_python: str, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    for name, value in LEAKED.items():
        monkeypatch.setenv(name, value)
    project.pytester.makeini("[pytest]\nxstash_secret_env =\n    LAB_DB_URL\n")
    project.tool("t", LEAKS_SECRETS, env=hydra_python, deps=None)
    project.config("fails.yaml", "tool: t\nexperiment: fails\nfail: true\n")
    project.config("passes.yaml", "tool: t\nexperiment: passes\nfail: false\n")
    run = project.pytester.runpytest_subprocess if workers else project.pytester.runpytest
    extra = ["-n", str(workers)] if workers else []
    result = run(
        "configs",
        "--junitxml=r.xml",
        "-o",
        "junit_logging=all",
        "--xstash-report=r.html",
        "-rA",
        *extra,
    )
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*tool 't' exited with code 1 after *: RuntimeError: boom: ****"])
    written = {"terminal": out}
    for path in [project.root / "r.xml", project.root / "r.html"]:
        written[path.name] = path.read_text()
    for path in (project.root / "outputs").rglob("xstash.json"):
        written[str(path)] = path.read_text()
    assert len(written) == 5
    for where, text in written.items():
        for name, value in LEAKED.items():
            assert value not in text, f"{name} leaked into {where}"
    assert "***" in written["r.xml"]
    # The tool's own logs are the tool's: left as it wrote them.
    (failed,) = project.run_dirs("fails")
    assert LEAKED["AWS_SECRET_ACCESS_KEY"] in (failed / "stderr.log").read_text()
    assert LEAKED["XSTASH_TEST_TOKEN"] in (failed / "stdout.log").read_text()
    record = json.loads((failed / "xstash.json").read_text())
    assert record["metrics"] == {"seen": "***", "ok": 1}


def test_which_values_are_secret() -> None:
    from xstash_plugin.masking import Masker, secret_values

    environ = {
        "AWS_SECRET_ACCESS_KEY": "aws-0f9e8d7c6b5a",
        "GITHUB_TOKEN": "ghp_abcdefgh",
        "db_password": "hunter2!",
        "SSH_KEY_ENABLED": "true",  # a flag, not a secret: masking 'true' everywhere hides more
        "API_KEY": "abc",  # too short to mask
        "LAB_URL": "postgres://u:pw@h/db",  # only when named in xstash_secret_env
        "HOME": "/root",
    }
    assert secret_values(environ) == ["aws-0f9e8d7c6b5a", "ghp_abcdefgh", "hunter2!"]
    values = secret_values(environ, ["LAB_URL"])
    assert values[0] == "postgres://u:pw@h/db"  # longest first: a secret inside another
    masker = Masker(values)
    assert masker.text("url postgres://u:pw@h/db, key aws-0f9e8d7c6b5a, true") == (
        "url ***, key ***, true"
    )
    assert masker.data({"a": ["ghp_abcdefgh", 1], "hunter2!": None}) == {
        "a": ["***", 1],
        "***": None,
    }


def test_a_slurm_job_gets_only_xstashs_changes_pickled() -> None:
    from xstash_plugin.launchers.slurm import job_environment

    base = {"HOME": "/root", "GITHUB_TOKEN": "ghp_abcdefgh", "PATH": "/usr/bin", "VIRTUAL_ENV": "x"}
    run = {"HOME": "/root", "GITHUB_TOKEN": "ghp_abcdefgh", "PATH": "/t/.venv/bin:/usr/bin"}
    run["XSTASH_RUN"] = "cookie"
    changed, removed = job_environment(run, base)
    assert changed == {"PATH": "/t/.venv/bin:/usr/bin", "XSTASH_RUN": "cookie"}
    assert removed == ["VIRTUAL_ENV"]
