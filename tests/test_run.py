"""Running experiments: real Hydra tools as subprocesses, their run directories and reports.

Tools are real Hydra applications (on the session's ``hydra_python``) unless the test is about
how the orchestrator reacts to a misbehaving process (a crash, a signal, a flood of output);
those use a few lines of plain Python on ``env: system``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from helpers import Project, failure_report, failures_section

# Every test here runs with plain and with preloaded tools (tests/conftest.py).
BOTH_LAUNCH_MODES = True

# A real Hydra tool that prints to both streams and exits with ``cfg.code``.
HYDRA_EXIT = """\
import sys
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    print("out-marker from", HydraConfig.get().job.name, flush=True)
    print("err-marker from", HydraConfig.get().job.name, file=sys.stderr, flush=True)
    sys.exit(int(cfg.code))

if __name__ == "__main__":
    main()
"""

# A real Hydra tool whose main raises; it notes the HYDRA_FULL_ERROR it was given (JSON: null
# when unset) and prints one distinctive line to each stream first.
HYDRA_RAISES = """\
import json, os, sys
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    seen = os.environ.get("HYDRA_FULL_ERROR")
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "full_error.json"), "w") as f:
        json.dump(seen, f)
    print("HYDRA_FULL_ERROR seen:", seen, flush=True)
    print("stderr-marker-7d1f before the crash", file=sys.stderr, flush=True)
    raise ValueError("learning rate must be positive")

if __name__ == "__main__":
    main()
"""

# Same as helpers.HYDRA_MAIN but with the tool's own config folder ``conf/``.
HYDRA_CONF_MAIN = """\
import json, os, sys
from dataclasses import dataclass, field
import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
{schema}
@hydra.main(version_base=None, config_path="conf", config_name=None)
def main(cfg):
    hc = HydraConfig.get()
    with open(os.path.join(hc.runtime.output_dir, "seen.json"), "w") as f:
        json.dump({{"job": hc.job.name, "cfg": OmegaConf.to_container(cfg, resolve=True),
                   "cwd": os.getcwd(), "python": sys.executable}}, f)

if __name__ == "__main__":
    main()
"""

STRICT_SCHEMA = """
@dataclass
class Params:
    lr: float = 0.1
    epochs: int = 2

@dataclass
class Cfg:
    message: str = "x"
    params: Params = field(default_factory=Params)

ConfigStore.instance().store(name="schema", node=Cfg)
"""

# Plain Python (no Hydra): the orchestrator's reaction to a crash is under test.
EXIT_3 = """\
import sys
for i in range(1, 61):
    print(f"stderr line {i:03d}", file=sys.stderr)
print("stdout of the failing tool")
sys.exit(3)
"""

KILL_SELF = """\
import os, resource, signal, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the tool folder
print("about to receive {signame}", file=sys.stderr, flush=True)
os.kill(os.getpid(), signal.{signame})
"""

FLOOD_MB = 200
FLOOD = f"""\
import sys
line = b"x" * 1023 + b"\\n"
chunk = line * 1024  # 1 MiB
out = sys.stdout.buffer
for _ in range({FLOOD_MB}):
    out.write(chunk)
out.flush()
"""

PROPERTIES = (
    "tool",
    "experiment",
    "config",
    "tags",
    "description",
    "estimated_runtime",
    "run_dir",
    "exit_code",
    "duration",
)


def read_record(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "xstash.json").read_text())
    return data


def read_seen(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "seen.json").read_text())
    return data


# --- 1. entrypoints, cwd, run directory --------------------------------------------------


@pytest.mark.parametrize("entrypoint", ["src/main.py", "-m pkg.main"])
def test_entrypoint_styles_run_hydra_in_tool_folder(
    project: Project, hydra_python: str, entrypoint: str
) -> None:
    folder = project.tool("echo", env=hydra_python, deps=None, entrypoint=entrypoint)
    project.config(
        "exp.yaml",
        """\
        tool: echo
        experiment: styled
        message: "lr is ${params.lr}"
        params: {lr: 0.1}
        """,
    )
    result = project.pytester.runpytest("configs", "-v")
    result.assert_outcomes(passed=1)
    (run_dir,) = project.run_dirs("exp")
    seen = read_seen(run_dir)
    assert Path(seen["cwd"]).resolve() == folder.resolve()
    assert seen["job"] == "styled"
    assert seen["cfg"] == {"message": "lr is 0.1", "params": {"lr": 0.1}}
    assert seen["python"] == hydra_python
    # Hydra's output dir is xstash's run dir: its own files land next to the logs.
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "job: styled" in (run_dir / "stdout.log").read_text()
    assert (run_dir / "stderr.log").is_file()
    record = read_record(run_dir)
    assert record["status"] == "passed"
    assert record["exit_code"] == 0
    words = entrypoint.split()
    assert record["argv"][: 1 + len(words)] == [hydra_python, *words]


# --- 3. orchestrator fields never reach a strict tool ------------------------------------


def test_orchestrator_fields_never_reach_structured_schema(
    project: Project, hydra_python: str
) -> None:
    project.tool(
        "strict",
        HYDRA_CONF_MAIN.format(schema=STRICT_SCHEMA),
        env=hydra_python,
        deps=None,
    )
    project.write(
        "tools/strict/src/conf/config.yaml",
        """\
        defaults:
          - schema
          - _self_
        message: from-the-tool
        """,
    )
    project.config(
        "strict/ok.yaml",
        """\
        tool: strict
        experiment: strict_ok
        description: "every orchestrator field is present"
        tags: [paper, fig1]
        estimated_runtime: 5s
        xstash: {}
        defaults:
          - config
          - _self_
        params:
          lr: 0.5
        """,
    )
    # Control: the schema really is strict, so a stray key would have failed the run.
    project.config(
        "strict/stray.yaml",
        """\
        tool: strict
        experiment: strict_stray
        defaults:
          - config
          - _self_
        stray_key: 1
        """,
    )
    result = project.pytester.runpytest("configs", "-v", "--continue-on-collection-errors")
    # The tool's own Hydra refuses the stray key when it composes the config at collection.
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*strict/ok.yaml::strict_ok PASSED*"])
    result.stdout.fnmatch_lines(["*stray.yaml:6: tool 'strict' cannot compose *stray_key*"])
    # And at run time, when nothing composed it first.
    off = project.pytester.runpytest("configs/strict/stray.yaml", "--xstash-compose=off")
    off.assert_outcomes(failed=1)
    assert "stray_key" in failure_report(off, "strict_stray")
    (run_dir,) = project.run_dirs("strict/ok")
    seen = read_seen(run_dir)
    assert seen["job"] == "strict_ok"
    assert seen["cfg"] == {"message": "from-the-tool", "params": {"lr": 0.5, "epochs": 2}}
    sent = (run_dir / "xstash_config" / "xstash_experiment.yaml").read_text()
    for key in ("tool:", "experiment:", "description:", "tags:", "estimated_runtime:", "xstash:"):
        assert key not in sent


# --- 4. tool config groups + sibling fragment ---------------------------------------------


def test_defaults_compose_tool_groups_and_sibling_fragment(
    project: Project, hydra_python: str
) -> None:
    project.tool("grp", HYDRA_CONF_MAIN.format(schema=""), env=hydra_python, deps=None)
    project.write(
        "tools/grp/src/conf/config.yaml",
        """\
        defaults:
          - model: small
          - _self_
        seed: 0
        dataset: tool-default
        """,
    )
    project.write("tools/grp/src/conf/model/small.yaml", "name: small\nhidden: 16\n")
    project.write("tools/grp/src/conf/model/big.yaml", "name: big\nhidden: 128\n")
    project.config("group/_common.yaml", "seed: 7\ndataset: shared-fragment\n")
    project.config(
        "group/big.yaml",
        """\
        tool: grp
        experiment: grp_big
        defaults:
          - config
          - _common
          - override model: big
          - _self_
        lr: 0.2
        """,
    )
    result = project.pytester.runpytest("configs", "-v")
    result.assert_outcomes(passed=1)  # _common.yaml is a fragment, not an experiment
    (run_dir,) = project.run_dirs("group/big")
    assert read_seen(run_dir)["cfg"] == {
        "model": {"name": "big", "hidden": 128},  # from the tool's config group
        "seed": 7,  # from the sibling fragment
        "dataset": "shared-fragment",
        "lr": 0.2,  # from the experiment itself
    }


# --- 5. failures: exit code, signals ------------------------------------------------------


def test_failing_tool_report(project: Project) -> None:
    project.tool("crash", EXIT_3, env="system", deps=None)
    project.config("boom.yaml", "tool: crash\nexperiment: boom\n")
    result = project.pytester.runpytest("configs")
    result.assert_outcomes(failed=1)
    report = failure_report(result, "boom")
    # No exception line in its stderr: the first line ends with the exit and its duration.
    assert re.fullmatch(
        r"experiment 'boom' \(configs/boom\.yaml\): tool 'crash' exited with code 3 after [0-9.]+s",
        report.splitlines()[0],
    )
    assert "command: " in report
    assert "run directory: " in report
    assert "stderr line 060" in report
    assert "stderr line 021" in report  # the 40th line from the end
    assert "stderr line 020" not in report
    assert "stderr line 001" not in report
    # The report shows the stderr tail, so no captured stderr section repeats it.
    assert failures_section(result).count("stderr line 060") == 1
    assert "Captured stderr call" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*- Captured stdout call -*", "stdout of the failing tool"])
    # The report is xstash's message, not a traceback through the plugin.
    assert "Traceback" not in result.stdout.str()
    assert "items.py" not in report
    assert "xstash_plugin" not in report
    (run_dir,) = project.run_dirs("boom")
    assert f"run directory: {run_dir}" in report
    record = read_record(run_dir)
    assert record["status"] == "failed"
    assert record["exit_code"] == 3
    assert record["signal"] is None


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
@pytest.mark.parametrize("full_error", [None, "1"], ids=["unset", "user-set"])
def test_report_leads_with_exception_and_hydra_full_error_is_the_users(
    project: Project,
    hydra_python: str,
    monkeypatch: pytest.MonkeyPatch,
    full_error: str | None,
    workers: int,
) -> None:
    if full_error is None:
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    else:
        monkeypatch.setenv("HYDRA_FULL_ERROR", full_error)
    project.tool("raiser", HYDRA_RAISES, env=hydra_python, deps=None)
    project.config("lr.yaml", "tool: raiser\nexperiment: lr\nlr: -1\n")
    if workers:
        result = project.pytester.runpytest_subprocess("configs", "-n", str(workers))
        result.stdout.fnmatch_lines([f"*created: {workers}/{workers} workers*"])
    else:
        result = project.pytester.runpytest("configs")
    result.assert_outcomes(failed=1)
    (run_dir,) = project.run_dirs("lr")
    # The tool gets the user's HYDRA_FULL_ERROR: none when unset, else exactly theirs.
    assert json.loads((run_dir / "full_error.json").read_text()) == full_error
    report = failure_report(result, "lr")
    # Under xdist, pytest puts the worker's "[gw0] linux -- Python ..." line above the report.
    first = next(line for line in report.splitlines() if not line.startswith("[gw"))
    assert re.fullmatch(
        r"experiment 'lr' \(configs/lr\.yaml\): tool 'raiser' exited with code 1 after [0-9.]+s"
        r": ValueError: learning rate must be positive",
        first,
    ), first
    assert "command: " in report and f"run directory: {run_dir}" in report
    hint = "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."
    if full_error is None:  # Hydra's short traceback, with its hint after the exception line
        assert "Error executing job with overrides" in report
        assert hint in report
        assert "hydra/_internal" not in report
    else:  # the full one, through Hydra's own frames
        assert hint not in report
        assert "hydra/_internal" in report
    # The stderr tail is printed once (in the report), stdout in its captured section.
    out = failures_section(result)
    assert out.count("stderr-marker-7d1f before the crash") == 1
    assert out.count("ValueError: learning rate must be positive") == 2  # first line + tail
    assert "Captured stderr call" not in out
    result.stdout.fnmatch_lines(
        ["*- Captured stdout call -*", f"HYDRA_FULL_ERROR seen: {full_error}"]
    )
    assert read_record(run_dir)["status"] == "failed"


@pytest.mark.parametrize(("signame", "number"), [("SIGKILL", 9), ("SIGSEGV", 11)])
def test_tool_killed_by_signal(project: Project, signame: str, number: int) -> None:
    project.tool("dies", KILL_SELF.format(signame=signame), env="system", deps=None)
    project.config("dies.yaml", "tool: dies\nexperiment: dies\n")
    result = project.pytester.runpytest("configs")
    result.assert_outcomes(failed=1)
    report = failure_report(result, "dies")
    assert f"was killed by {signame} (signal {number})" in report
    assert f"about to receive {signame}" in report
    assert "Traceback" not in result.stdout.str()
    (run_dir,) = project.run_dirs("dies")
    record = read_record(run_dir)
    assert record["status"] == "failed"
    assert record["exit_code"] == -number
    assert record["signal"] == signame


# --- 6. output streams --------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1], ids=["passed", "failed"])
def test_output_captured_without_s(project: Project, hydra_python: str, code: int) -> None:
    project.tool("say", HYDRA_EXIT, env=hydra_python, deps=None)
    project.config("say.yaml", f"tool: say\nexperiment: talk\ncode: {code}\n")
    result = project.pytester.runpytest("configs", "-rP")  # -rP: passed tests' sections too
    result.assert_outcomes(passed=1 - code, failed=code)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*- Captured stdout call -*", "out-marker from talk"])
    if code == 0:
        result.stdout.fnmatch_lines(["*- Captured stderr call -*", "err-marker from talk"])
    else:
        # The failure report shows the stderr tail; the captured section would repeat it.
        assert "Captured stderr call" not in out
        assert "err-marker from talk" in failure_report(result, "talk")
    section = failures_section(result) if code else out
    assert section.count("err-marker from talk") == 1
    assert section.count("out-marker from talk") == 1
    (run_dir,) = project.run_dirs("say")
    assert (run_dir / "stdout.log").read_text() == "out-marker from talk\n"


def test_output_streams_live_with_s(project: Project, hydra_python: str) -> None:
    project.tool("say", HYDRA_EXIT, env=hydra_python, deps=None)
    project.config("say.yaml", "tool: say\nexperiment: talk\ncode: 1\n")
    result = project.pytester.runpytest_subprocess("configs", "-s")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*out-marker from talk*"])
    result.stderr.fnmatch_lines(["*err-marker from talk*"])
    assert "Captured stdout call" not in result.stdout.str()
    assert "Captured stderr call" not in result.stdout.str()
    # Streaming live still keeps the logs.
    (run_dir,) = project.run_dirs("say")
    assert (run_dir / "stdout.log").read_text() == "out-marker from talk\n"
    assert (run_dir / "stderr.log").read_text() == "err-marker from talk\n"


# --- 7. a flood of output -----------------------------------------------------------------


@pytest.mark.slow_integration
@pytest.mark.parametrize("live", [False, True], ids=["captured", "live-s"])
def test_flood_of_stdout_keeps_pytest_memory_flat(project: Project, live: bool) -> None:
    rss_file = project.root / "peak_rss_kb.txt"
    # pytest records its own peak RSS (the tool is a separate process, never counted here).
    project.pytester.makeconftest(
        f"""
        def pytest_unconfigure(config):
            # VmHWM: this process's own peak RSS (ru_maxrss can inherit a forking parent's).
            with open("/proc/self/status") as status:
                peak = next(l.split()[1] for l in status if l.startswith("VmHWM:"))  # KiB
            with open({str(rss_file)!r}, "w") as handle:
                handle.write(str(peak))
        """
    )
    project.tool("flood", FLOOD, env="system", deps=None)
    project.config("flood.yaml", "tool: flood\nexperiment: flood\n")
    if live:
        # With -s every byte also passes through pytest on its way to the terminal; send the
        # terminal to /dev/null so this test does not hold 200 MiB of it either.
        proc = project.pytester.popen(
            [sys.executable, "-m", "pytest", "configs", "-s", "-p", "no:cacheprovider"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode(errors="replace")
    else:
        result = project.pytester.runpytest_subprocess("configs")
        result.assert_outcomes(passed=1)
    (run_dir,) = project.run_dirs("flood")
    log = run_dir / "stdout.log"
    size = log.stat().st_size
    assert size >= FLOOD_MB * 1024 * 1024
    assert read_record(run_dir)["status"] == "passed"
    log.unlink()  # 200 MiB is not worth keeping in the temp folder
    peak_mb = int(rss_file.read_text()) / 1024
    mode = "-s" if live else "captured"
    print(f"peak RSS of pytest ({mode}), tool printed {size / 2**20:.0f} MiB: {peak_mb:.1f} MiB")
    assert peak_mb < 150, f"pytest's peak RSS was {peak_mb:.1f} MiB ({mode})"


# --- 9. JUnit XML properties --------------------------------------------------------------


def junit_properties(path: Path) -> dict[str, dict[str, str]]:
    """testcase name -> its properties."""
    root = ET.parse(path).getroot()
    out: dict[str, dict[str, str]] = {}
    for case in root.iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        out[case.get("name", "")] = props
    return out


@pytest.mark.parametrize("family", ["legacy", "xunit1"])
@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "n2"])
def test_junitxml_properties(
    project: Project, hydra_python: str, family: str, workers: int
) -> None:
    project.tool("say", HYDRA_EXIT, env=hydra_python, deps=None)
    project.config(
        "suite/good.yaml",
        """\
        tool: say
        experiment: good
        description: "passes"
        tags: [paper, fig1]
        estimated_runtime: 5s
        code: 0
        """,
    )
    project.config("suite/bad.yaml", "tool: say\nexperiment: bad\ncode: 4\n")
    args = ["configs", "--junitxml=r.xml", "-o", f"junit_family={family}"]
    if workers:
        result = project.pytester.runpytest_subprocess(*args, "-n", str(workers))
        result.stdout.fnmatch_lines([f"*created: {workers}/{workers} workers*"])
    else:
        result = project.pytester.runpytest(*args)
    result.assert_outcomes(passed=1, failed=1)
    cases = junit_properties(project.root / "r.xml")
    assert set(cases) == {"good", "bad"}
    for props in cases.values():
        assert set(PROPERTIES) <= set(props), props
        assert Path(props["run_dir"]).is_dir()
        assert float(props["duration"]) >= 0
    good, bad = cases["good"], cases["bad"]
    assert good["tool"] == "say"
    assert good["experiment"] == "good"
    assert good["config"] == "configs/suite/good.yaml"
    assert good["tags"] == "paper,fig1"
    assert good["description"] == "passes"
    assert good["estimated_runtime"] == "5s"
    assert good["exit_code"] == "0"
    assert (Path(good["run_dir"]) / "xstash.json").is_file()
    assert bad["experiment"] == "bad"
    assert bad["config"] == "configs/suite/bad.yaml"
    assert bad["tags"] == bad["description"] == bad["estimated_runtime"] == ""
    assert bad["exit_code"] == "4"


# --- 10. -p no:xdist and --lf -------------------------------------------------------------


def test_no_xdist_and_last_failed(project: Project, hydra_python: str) -> None:
    project.tool("say", HYDRA_EXIT, env=hydra_python, deps=None)
    project.config("ok.yaml", "tool: say\nexperiment: ok\ncode: 0\n")
    project.config("bad.yaml", "tool: say\nexperiment: bad\ncode: 2\n")
    first = project.pytester.runpytest("configs", "-p", "no:xdist", "-v")
    first.assert_outcomes(passed=1, failed=1)
    again = project.pytester.runpytest("configs", "-p", "no:xdist", "--lf", "-v")
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(["*run-last-failure: rerun previous 1 failure*"])
    again.stdout.fnmatch_lines(["*bad.yaml::bad FAILED*"])
    assert "ok.yaml::ok" not in again.stdout.str()
    assert len(project.run_dirs("ok")) == 1
    assert len(project.run_dirs("bad")) == 2


# --- 12. every run gets its own directory -------------------------------------------------


def test_each_run_gets_its_own_directory(project: Project, hydra_python: str) -> None:
    project.tool("echo", env=hydra_python, deps=None)
    project.config("same.yaml", "tool: echo\nexperiment: same\nmessage: hi\n")
    for _ in range(2):
        project.pytester.runpytest("configs").assert_outcomes(passed=1)
    first, second = project.run_dirs("same")
    assert first != second
    for run_dir in (first, second):
        assert read_record(run_dir)["status"] == "passed"
        assert read_seen(run_dir)["cfg"] == {"message": "hi"}
    # Same config, same content key: the names differ only where they must.
    assert first.name.split("-")[2] == second.name.split("-")[2]
