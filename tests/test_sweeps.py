"""Sweeps: ``xstash.sweep`` turns one experiment file into one test item per point.

Every point gets its own item id, run directory, record, metrics, expectations and report row;
its values reach the tool through Hydra overrides as exactly the values YAML loaded (never
through a shell). ``--xstash-override`` adds overrides to every run, after the point's.

Tools are real Hydra applications on the session's ``hydra_python``; collection-only tests never
start them.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import HYDRA_MAIN, Project, error_messages

from xstash_plugin.plugin import parse_cli_overrides

REPO = Path(__file__).resolve().parent.parent

# HYDRA_MAIN (writes seen.json with the resolved cfg) that also writes cfg.metrics to
# metrics.json and exits with cfg.code.
SWEEP_TOOL = """\
import json, os, sys
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    conf = OmegaConf.to_container(cfg, resolve=True)
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, "seen.json"), "w") as f:
        json.dump({"job": HydraConfig.get().job.name, "cfg": conf}, f)
    if isinstance(conf.get("metrics"), dict):
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(conf["metrics"], f)
    sys.exit(int(conf.get("code") or 0))

if __name__ == "__main__":
    main()
"""

# The same with the tool's own config folder ``conf/`` (config groups live there).
GROUP_TOOL = SWEEP_TOOL.replace("config_path=None", 'config_path="conf"')

GRID = """\
tool: s
experiment: fig1
params: {lr: 1.0}
model: none
metrics: {lr: "${params.lr}", model: "${model}"}
xstash:
  expect: {lr: "<= 0.1"}
  sweep: {params.lr: [0.1, 0.01], model: [small, big]}
"""
GRID_IDS = [
    "configs/x.yaml::fig1[params.lr=0.1-model=small]",
    "configs/x.yaml::fig1[params.lr=0.1-model=big]",
    "configs/x.yaml::fig1[params.lr=0.01-model=small]",
    "configs/x.yaml::fig1[params.lr=0.01-model=big]",
]
GRID_POINTS = [
    {"params.lr": 0.1, "model": "small"},
    {"params.lr": 0.1, "model": "big"},
    {"params.lr": 0.01, "model": "small"},
    {"params.lr": 0.01, "model": "big"},
]

CANARY = Path("/tmp/pwned-xstash")

# (the value as written in YAML, the value the tool must see). Written one per line in block
# style (`- val: <text>`), so each text is exactly what a person would type.
ROUND_TRIP: list[tuple[str, Any]] = [
    ('"a string with spaces"', "a string with spaces"),
    ("a,b", "a,b"),
    ("'it''s'", "it's"),
    ("'say \"hi\"'", 'say "hi"'),
    ('"both \' and \\""', "both ' and \""),
    ("k=v=w", "k=v=w"),
    ('"$(touch /tmp/pwned-xstash)"', "$(touch /tmp/pwned-xstash)"),
    (
        '"`touch /tmp/pwned-xstash`; touch /tmp/pwned-xstash"',
        "`touch /tmp/pwned-xstash`; touch /tmp/pwned-xstash",
    ),
    ('"$HOME"', "$HOME"),
    ("'[1,2]'", "[1,2]"),
    ("'{a: 1}'", "{a: 1}"),
    ('"ünïcödé ✓"', "ünïcödé ✓"),
    ("''", ""),
    ("'true'", "true"),
    ("'1.5'", "1.5"),
    ("'null'", "null"),
    ("null", None),
    ('[1, "two", null]', [1, "two", None]),
    ("{a: 1, b: [x, y]}", {"a": 1, "b": ["x", "y"]}),
    ("'C:\\path\\'", "C:\\path\\"),  # single-quoted YAML: backslashes are literal
    ("'C:\\\\share\\\\'", "C:\\\\share\\\\"),  # two backslashes each, one at the end
    ('"a\\\\\'b"', "a\\'b"),  # a backslash before a quote
    ('"tab\\there\\nnewline"', "tab\there\nnewline"),
    ("' padded '", " padded "),
    ("[]", []),
    ("{}", {}),
    ("0.1", 0.1),
    ("1.0e-05", 1e-05),
    ("-3", -3),
    ("0", 0),
    ("true", True),
    ("false", False),
]

SAFE_ID = re.compile(r"[A-Za-z0-9_.+,=@%~-]+")


@pytest.fixture
def repo(project: Project, hydra_python: str) -> Project:
    """A repository with the tools 't' (HYDRA_MAIN) and 's' (SWEEP_TOOL)."""
    project.tool("t", HYDRA_MAIN, env=hydra_python, deps=None)
    project.tool("s", SWEEP_TOOL, env=hydra_python, deps=None)
    return project


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def runs(project: Project, config: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """node id -> (record, seen.json) of every run of ``configs/<config>``."""
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for run_dir in project.run_dirs(config):
        record = read_json(run_dir / "xstash.json")
        assert record["nodeid"] not in out, f"two records for {record['nodeid']}"
        seen = read_json(run_dir / "seen.json") if (run_dir / "seen.json").exists() else {}
        out[record["nodeid"]] = (record, seen)
    return out


def typed(value: Any) -> Any:
    """``value`` with the type of every part, so 1, 1.0, True and '1' all differ."""
    if isinstance(value, dict):
        return ("dict", {key: typed(item) for key, item in value.items()})
    if isinstance(value, list):
        return ("list", [typed(item) for item in value])
    return (type(value).__name__, value)


def collect_ids(project: Project, *args: str) -> list[str]:
    result = project.pytester.runpytest("--collect-only", "-q", *args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    return [line for line in result.outlines if "::" in line]


def reported_ids(result: pytest.RunResult, outcome: str) -> list[str]:
    """The ids -v reported with ``outcome`` (``ID PASSED`` serially, ``PASSED ID`` under xdist)."""
    serial = re.compile(rf"^(\S+::\S+) {outcome} +\[ *\d+%\]$")
    xdist = re.compile(rf"^\[gw\d+\] \[ *\d+%\] {outcome} (\S+::\S+) *$")
    found = (serial.match(line) or xdist.match(line) for line in result.outlines)
    return [m[1] for m in found if m]


def passed_ids(result: pytest.RunResult) -> list[str]:
    return reported_ids(result, "PASSED")


def results_table_ids(result: pytest.RunResult) -> list[str]:
    """The ids of the rows of the 'xstash results' table, in their order."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if re.match(r"^=+ xstash results =+$", line))
    return [line.split()[0] for line in lines[start + 2 :] if line.startswith("configs/")]


# --- 1. grid and list: ids, order, one run per point -------------------------------------


def test_grid_ids_order_runs_and_records(repo: Project) -> None:
    repo.config("x.yaml", GRID)
    listing = repo.pytester.runpytest_subprocess("--collect-only", "-q", "configs")
    assert listing.ret == pytest.ExitCode.OK
    assert listing.outlines[:-1] == [*GRID_IDS, ""], listing.stdout.str()
    assert re.fullmatch(r"4 tests collected in [\d.]+s", listing.outlines[-1])

    result = repo.pytester.runpytest("configs", "-v")
    # Each point is judged by its own metrics: lr <= 0.1 holds for every point.
    result.assert_outcomes(passed=4)
    assert passed_ids(result) == GRID_IDS
    assert results_table_ids(result) == GRID_IDS
    found = runs(repo, "x")
    assert len(repo.run_dirs("x")) == 4
    assert sorted(found) == sorted(GRID_IDS)
    for nodeid, point in zip(GRID_IDS, GRID_POINTS, strict=True):
        record, seen = found[nodeid]
        assert record["status"] == "passed"
        assert record["point"] == point
        lr, model = point["params.lr"], point["model"]
        assert record["overrides"] == [f"params.lr={lr}", f"model='{model}'"]
        assert record["argv"][-2:] == record["overrides"]  # one argv element each, no shell
        assert seen["cfg"]["params"] == {"lr": lr}
        assert seen["cfg"]["model"] == model
        assert record["metrics"] == {"lr": lr, "model": model}
        assert [v["metric"] for v in record["expectations"]] == ["lr"]
        assert record["expectations"][0]["ok"] is True
    # Different points, different content keys (the run directory names carry it).
    assert len({record["config_key"] for record, _ in found.values()}) == 4


def test_list_sweep_ids_order_runs_and_records(repo: Project) -> None:
    repo.config(
        "x.yaml",
        """\
        tool: t
        experiment: fig1
        params: {lr: 1.0}
        model: none
        xstash:
          sweep:
            - {params.lr: 0.1, model: small}
            - {params.lr: 0.01}
            - {model: big, params.lr: 0.001}
        """,
    )
    ids = [
        "configs/x.yaml::fig1[params.lr=0.1-model=small]",
        "configs/x.yaml::fig1[params.lr=0.01]",
        "configs/x.yaml::fig1[model=big-params.lr=0.001]",
    ]
    listing = repo.pytester.runpytest_subprocess("--collect-only", "-q", "configs")
    assert listing.outlines[:-1] == [*ids, ""], listing.stdout.str()
    assert re.fullmatch(r"3 tests collected in [\d.]+s", listing.outlines[-1])
    result = repo.pytester.runpytest("configs", "-v")
    result.assert_outcomes(passed=3)
    assert passed_ids(result) == ids
    found = runs(repo, "x")
    assert len(repo.run_dirs("x")) == 3
    expected = [
        ({"params.lr": 0.1, "model": "small"}, {"params": {"lr": 0.1}, "model": "small"}),
        ({"params.lr": 0.01}, {"params": {"lr": 0.01}, "model": "none"}),
        ({"model": "big", "params.lr": 0.001}, {"params": {"lr": 0.001}, "model": "big"}),
    ]
    for nodeid, (point, cfg) in zip(ids, expected, strict=True):
        record, seen = found[nodeid]
        assert record["point"] == point
        assert list(record["point"]) == list(point)  # the order written
        assert seen["cfg"] == cfg


def test_a_sweep_point_fails_on_its_own_expectation(repo: Project) -> None:
    repo.config("x.yaml", GRID.replace('"<= 0.1"', '"< 0.1"'))
    result = repo.pytester.runpytest("configs", "-v")
    result.assert_outcomes(passed=2, failed=2)
    assert passed_ids(result) == GRID_IDS[2:]
    for nodeid, (record, _) in runs(repo, "x").items():
        lr = record["point"]["params.lr"]
        assert record["status"] == ("failed" if lr == 0.1 else "passed"), nodeid
        assert record["expectations"][0]["measured"] == lr


# --- 2. values reach the tool exactly -----------------------------------------------------


def test_sweep_values_round_trip_to_the_tool(repo: Project) -> None:
    for text, value in ROUND_TRIP:  # the table itself: each text is YAML for its value
        assert typed(yaml.safe_load(f"v: {text}")["v"]) == typed(value), text
    CANARY.unlink(missing_ok=True)
    lines = "\n".join(f"    - val: {text}" for text, _ in ROUND_TRIP)
    repo.config("vals.yaml", f"tool: t\nexperiment: vals\nval: 0\nxstash:\n  sweep:\n{lines}\n")
    ids = collect_ids(repo, "configs")
    assert len(ids) == len(ROUND_TRIP)
    assert len(set(ids)) == len(ids), ids
    assert collect_ids(repo, "configs") == ids  # deterministic
    for nodeid in ids:
        label = nodeid.removeprefix("configs/vals.yaml::vals[").removesuffix("]")
        assert SAFE_ID.fullmatch(label), nodeid

    result = repo.pytester.runpytest_subprocess("configs", "-n", "2")
    result.assert_outcomes(passed=len(ROUND_TRIP))
    found = runs(repo, "vals")
    assert sorted(found) == sorted(ids)
    for nodeid, (_, value) in zip(ids, ROUND_TRIP, strict=True):
        record, seen = found[nodeid]
        assert typed(record["point"]) == typed({"val": value}), nodeid
        assert typed(seen["cfg"]["val"]) == typed(value), (nodeid, seen["cfg"]["val"], value)
        assert record["argv"][-1] == record["overrides"][-1]  # one argv element, no shell
    assert not CANARY.exists(), "a sweep value ran a shell command"


def test_yaml_dates_in_a_sweep_reach_the_tool_as_in_the_body(repo: Project) -> None:
    repo.config(
        "d.yaml",
        "tool: t\nexperiment: d\nwhen: 2024-02-29\nxstash:\n  sweep: {+day: [2024-02-29]}\n",
    )
    result = repo.pytester.runpytest("configs", "-v")
    result.assert_outcomes(passed=1)
    ((nodeid, (record, seen)),) = runs(repo, "d").items()
    assert nodeid == "configs/d.yaml::d[+day=2024-02-29]"
    assert record["point"] == {"+day": "2024-02-29"}
    assert typed(seen["cfg"]["day"]) == typed(seen["cfg"]["when"]) == typed("2024-02-29")


def test_scientific_notation_in_a_sweep_is_a_float_as_in_the_body(repo: Project) -> None:
    repo.config("e.yaml", "tool: t\nexperiment: e\nbody: 1e-5\nxstash:\n  sweep: {+v: [1e-5]}\n")
    repo.pytester.runpytest("configs").assert_outcomes(passed=1)
    ((_, seen),) = runs(repo, "e").values()
    assert typed(seen["cfg"]["body"]) == typed(1e-05)
    assert typed(seen["cfg"]["v"]) == typed(1e-05)


# --- 3. config groups -----------------------------------------------------------------------


def test_group_choice_sweep(project: Project, hydra_python: str) -> None:
    project.tool("g", GROUP_TOOL, env=hydra_python, deps=None)
    project.write(
        "tools/g/src/conf/config.yaml",
        "defaults:\n  - model: small\n  - _self_\nseed: 0\n",
    )
    project.write("tools/g/src/conf/model/small.yaml", "name: small\nhidden: 16\n")
    project.write("tools/g/src/conf/model/big.yaml", "name: big\nhidden: 128\n")
    project.config(
        "grp.yaml",
        """\
        tool: g
        experiment: grp
        defaults:
          - config
          - _self_
        xstash:
          sweep: {model: [small, big]}
        """,
    )
    result = project.pytester.runpytest("configs", "-v")
    result.assert_outcomes(passed=2)
    found = runs(project, "grp")
    small = found["configs/grp.yaml::grp[model=small]"]
    big = found["configs/grp.yaml::grp[model=big]"]
    assert small[1]["cfg"] == {"model": {"name": "small", "hidden": 16}, "seed": 0}
    assert big[1]["cfg"] == {"model": {"name": "big", "hidden": 128}, "seed": 0}
    assert big[0]["point"] == {"model": "big"}
    assert big[0]["overrides"] == ["model='big'"]


# --- 4. selecting points: -k, node ids, --lf, -n 2 ------------------------------------------


def test_k_and_node_id_select_points(repo: Project) -> None:
    repo.config("x.yaml", GRID)
    # pytest's -k words cannot hold '=', so a point is picked by the words of its values
    # (substrings of the id: "0.1" does not occur in "0.01").
    assert collect_ids(repo, "configs", "-k", "0.01 and big") == [GRID_IDS[3]]
    assert collect_ids(repo, "configs", "-k", "params.lr and 0.1 and not big") == [GRID_IDS[0]]
    assert collect_ids(repo, "configs", "-k", "small") == [GRID_IDS[0], GRID_IDS[2]]
    assert collect_ids(repo, "configs", "-k", "fig1 and not small") == GRID_IDS[1::2]
    assert collect_ids(repo, GRID_IDS[2]) == [GRID_IDS[2]]  # the id itself, as an argument
    wrong = repo.pytester.runpytest("--collect-only", "-q", "configs", "-k", "lr=0.01")
    assert wrong.ret == pytest.ExitCode.USAGE_ERROR
    assert "Wrong expression passed to '-k'" in wrong.stderr.str()

    result = repo.pytester.runpytest("configs", "-v", "-k", "0.01 and big")
    result.assert_outcomes(passed=1, deselected=3)
    assert passed_ids(result) == [GRID_IDS[3]]
    ((record, seen),) = runs(repo, "x").values()
    assert record["point"] == {"params.lr": 0.01, "model": "big"}
    assert seen["cfg"]["model"] == "big"


def test_last_failed_reruns_only_the_failed_points(repo: Project) -> None:
    repo.config(
        "f.yaml",
        "tool: s\nexperiment: f\ncode: 0\nseed: 0\nxstash:\n"
        "  sweep: {code: [0, 3], seed: [1, 2]}\n",
    )
    ok = ["configs/f.yaml::f[code=0-seed=1]", "configs/f.yaml::f[code=0-seed=2]"]
    bad = ["configs/f.yaml::f[code=3-seed=1]", "configs/f.yaml::f[code=3-seed=2]"]
    first = repo.pytester.runpytest("configs", "-v")
    first.assert_outcomes(passed=2, failed=2)
    assert passed_ids(first) == ok
    again = repo.pytester.runpytest("configs", "--lf", "-v")
    again.assert_outcomes(failed=2)
    again.stdout.fnmatch_lines(["*run-last-failure: rerun previous 2 failures*"])
    # In any order: the rerun starts the points that took longest last time first.
    assert sorted(reported_ids(again, "FAILED")) == bad
    assert reported_ids(again, "PASSED") == []
    for nodeid in ok:
        assert nodeid not in again.stdout.str()
    records = [read_json(d / "xstash.json") for d in repo.run_dirs("f")]
    assert sorted(r["nodeid"] for r in records) == sorted([*ok, *bad, *bad])
    for record in records:
        assert record["status"] == ("failed" if record["point"]["code"] == 3 else "passed")
        assert record["exit_code"] == record["point"]["code"]


def test_xdist_runs_every_point_once_with_the_serial_ids(repo: Project) -> None:
    repo.config(
        "x.yaml",
        "tool: t\nexperiment: six\nparams: {lr: 1.0}\nmodel: none\nxstash:\n"
        "  sweep: {params.lr: [0.1, 0.01, 0.001], model: [small, big]}\n",
    )
    serial = collect_ids(repo, "configs")
    assert len(serial) == 6
    result = repo.pytester.runpytest_subprocess("configs", "-n", "2", "-v")
    result.stdout.fnmatch_lines(["*created: 2/2 workers*"])
    result.assert_outcomes(passed=6)
    assert sorted(passed_ids(result)) == sorted(serial)
    assert results_table_ids(result) == serial  # the table keeps the collection order
    found = runs(repo, "x")
    assert len(repo.run_dirs("x")) == 6
    assert sorted(found) == sorted(serial)
    for record, seen in found.values():
        assert record["status"] == "passed"
        assert seen["cfg"]["params"]["lr"] == record["point"]["params.lr"]
        assert seen["cfg"]["model"] == record["point"]["model"]


# --- 5. --xstash-override ---------------------------------------------------------------------


def junit_properties(path: Path) -> dict[str, dict[str, str]]:
    """testcase name -> its properties."""
    root = ET.parse(path).getroot()
    return {
        case.get("name", ""): {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        for case in root.iter("testcase")
    }


def test_cli_overrides_reach_the_tool_record_and_reports(repo: Project) -> None:
    CANARY.unlink(missing_ok=True)
    repo.config(
        "o.yaml",
        "tool: t\nexperiment: o\nparams: {lr: 1.0}\nmodel: none\nxstash:\n"
        "  sweep: {model: [small, big]}\n",
    )
    options = [
        "model=cli",  # a swept key: the command line wins
        "params.lr=0.5",
        "+extra=a,b",
        "+eq=x=y",
        "+cmd=$(touch /tmp/pwned-xstash)",
        "+num=1.5",
        "+text='1.5'",
        "+items=[1, two]",
    ]
    args = [arg for option in options for arg in ("--xstash-override", option)]
    result = repo.pytester.runpytest(
        "configs", "-v", *args, "--xstash-report=r.csv", "--junitxml=r.xml", "-ojunit_family=xunit1"
    )
    result.assert_outcomes(passed=2)
    overrides = [
        "model='cli'",
        "params.lr=0.5",
        "+extra='a,b'",
        "+eq='x=y'",
        "+cmd='$(touch /tmp/pwned-xstash)'",
        "+num=1.5",
        "+text='1.5'",
        "+items=[1,'two']",
    ]
    expected_cfg = {
        "params": {"lr": 0.5},
        "model": "cli",
        "extra": "a,b",
        "eq": "x=y",
        "cmd": "$(touch /tmp/pwned-xstash)",
        "num": 1.5,
        "text": "1.5",
        "items": [1, "two"],
    }
    ids = ["configs/o.yaml::o[model=small]", "configs/o.yaml::o[model=big]"]
    found = runs(repo, "o")
    assert sorted(found) == sorted(ids)
    for record, seen in found.values():
        # The record shows what ran: the command line's value of the swept key.
        assert record["point"] == {"model": "cli"}
        assert record["overrides"] == overrides
        assert record["argv"][-len(overrides) :] == overrides
        assert typed(seen["cfg"]) == typed(expected_cfg)
    assert not CANARY.exists(), "an override ran a shell command"
    with (repo.root / "r.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == ids  # collection order
    for row in rows:
        assert row["overrides"] == " ".join(overrides)
    cases = junit_properties(repo.root / "r.xml")
    assert set(cases) == {"o[model=small]", "o[model=big]"}
    for props in cases.values():
        assert props["overrides"] == " ".join(overrides)
        assert props["sweep.model"] == "cli"  # what ran, as in the record


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("novalue", "write KEY=VALUE"),
        ("bad key=1", "write KEY=VALUE"),
        ("=1", "write KEY=VALUE"),
        ("a..b=1", "write KEY=VALUE"),
        ("v={'a b': 1}", "mapping key 'a b' cannot be written as a Hydra override"),
    ],
)
def test_bad_cli_override_is_a_usage_error(repo: Project, option: str, message: str) -> None:
    repo.config("x.yaml", GRID)
    result = repo.pytester.runpytest("configs", "--xstash-override", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--xstash-override {option!r}: " in result.stderr.str()
    assert message in result.stderr.str()
    assert repo.run_dirs("x") == []


def test_cli_override_value_starting_with_hash_is_a_string() -> None:
    assert parse_cli_overrides(["color=#ff0000"]) == (("color", "#ff0000"),)


def test_cli_override_scientific_notation_is_a_float() -> None:
    assert typed(parse_cli_overrides(["lr=1e-5"])) == typed((("lr", 1e-05),))


# --- 6. collection errors, large grids --------------------------------------------------------

HEAD = "tool: t\nexperiment: bad\nparams: {lr: 0.1}\nxstash:\n"  # the sweep starts at line 5

# (the sweep block from line 5, the line of the error, parts of the message, part of the fix)
BAD_SWEEPS = [
    pytest.param("  sweep: {}\n", 5, ["the sweep is empty"], "write a grid", id="empty-grid"),
    pytest.param("  sweep: []\n", 5, ["the sweep is empty"], "write a grid", id="empty-list"),
    pytest.param(
        "  sweep: params.lr=0.1\n",
        5,
        ["'xstash.sweep' must be a mapping or a list, not str"],
        "write a grid",
        id="scalar",
    ),
    pytest.param(
        "  sweep:\n    params.lr: 0.1\n",
        6,
        ["sweep values of 'params.lr' must be a list, not 0.1"],
        "write: params.lr: [0.1]",
        id="scalar-axis",
    ),
    pytest.param(
        "  sweep:\n    params.lr: [0.1]\n    model: {a: 1}\n",
        7,
        ["sweep values of 'model' must be a list"],
        "write a grid",
        id="mapping-axis",
    ),
    pytest.param(
        "  sweep:\n    params.lr: []\n",
        6,
        ["sweep values of 'params.lr' are empty"],
        "give at least one value",
        id="empty-axis",
    ),
    pytest.param(
        "  sweep:\n    params.lr: [0.1]\n    1: [a, b]\n",
        7,
        ["sweep key 1 is not a string"],
        "a Hydra override key",
        id="int-key",
    ),
    pytest.param(
        "  sweep:\n    bad key: [1]\n",
        6,
        ["sweep key 'bad key' is not a Hydra override key"],
        "+key to add a key",
        id="space-key",
    ),
    pytest.param(
        "  sweep:\n    params.lr: [0.1]\n    lr=0.1: [1]\n",
        7,
        ["sweep key 'lr=0.1' is not a Hydra override key"],
        "a dotted config key",
        id="equals-key",
    ),
    pytest.param(
        "  sweep:\n    ~params.lr: [1]\n",
        6,
        ["sweep key '~params.lr' is not a Hydra override key"],
        "a dotted config key",
        id="delete-key",
    ),
    pytest.param(
        "  sweep:\n    params..lr: [1]\n",
        6,
        ["sweep key 'params..lr' is not a Hydra override key"],
        "a dotted config key",
        id="empty-part-key",
    ),
    pytest.param(
        "  sweep:\n    params.lr:\n      - 0.1\n      - 0.01\n      - 0.1\n",
        9,
        ["sweep value 0.1 of 'params.lr' is listed twice (items 1 and 3)"],
        "remove the duplicate",
        id="duplicate-value",
    ),
    pytest.param(
        "  sweep:\n    +v: [[1, a], [1, a]]\n",
        6,
        ["sweep value [1, 'a'] of '+v' is listed twice (items 1 and 2)"],
        "remove the duplicate",
        id="duplicate-list-value",
    ),
    pytest.param(
        "  sweep:\n    - {params.lr: 0.1, model: small}\n    - {params.lr: 0.01}\n"
        "    - {model: small, params.lr: 0.1}\n",
        8,
        ["sweep point 3 repeats point 1"],
        "remove the duplicate point",
        id="duplicate-point",
    ),
    pytest.param(
        "  sweep:\n    - {params.lr: 0.1}\n    - 0.01\n",
        7,
        ["sweep point 2 must be a non-empty mapping", "not 0.01"],
        "write a grid",
        id="scalar-point",
    ),
    pytest.param(
        "  sweep:\n    - {}\n",
        6,
        ["sweep point 1 must be a non-empty mapping"],
        "write a grid",
        id="empty-point",
    ),
    pytest.param(
        "  sweep:\n    - {params.lr: 0.1}\n    - {bad key: 1}\n",
        7,
        ["sweep key 'bad key' is not a Hydra override key"],
        "a Hydra override key",
        id="bad-key-in-point",
    ),
    pytest.param(
        '  sweep:\n    +v: [ok, "x\\0y"]\n',
        6,
        ["sweep value of '+v'", "contains a NUL character"],
        "",
        id="nul-character",
    ),
    pytest.param(
        "  sweep:\n    +v: [{a b: 1}]\n",
        6,
        ["sweep value of '+v'", "mapping key 'a b' cannot be written as a Hydra override"],
        "",
        id="unwritable-mapping-key",
    ),
]


@pytest.mark.parametrize(("sweep", "line", "what", "fix"), BAD_SWEEPS)
def test_bad_sweep_is_a_collection_error_with_file_and_line(
    repo: Project, sweep: str, line: int, what: list[str], fix: str
) -> None:
    repo.config("good.yaml", GRID.replace("fig1", "good"))
    repo.config("bad.yaml", HEAD + sweep)
    result = repo.pytester.runpytest("--collect-only", "-q", "configs")
    messages = error_messages(result, "bad.yaml")
    assert any(
        at == line and all(w in text for w in what) and fix in hint for at, text, hint in messages
    ), f"no message at line {line} with {what} / fix {fix!r} in {messages}"
    assert "Traceback" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert [x for x in result.outlines if x.startswith("configs/good.yaml::")] == [
        gid.replace("x.yaml::fig1", "good.yaml::good") for gid in GRID_IDS
    ]


def test_every_sweep_problem_of_a_file_is_reported_at_once(repo: Project) -> None:
    repo.config(
        "bad.yaml",
        HEAD + "  sweep:\n    bad key: [1]\n    params.lr: 0.1\n    +v: [a, b, a]\n",
    )
    result = repo.pytester.runpytest("--collect-only", "-q", "configs")
    lines = sorted((at, text) for at, text, _ in error_messages(result, "bad.yaml"))
    assert lines == [
        (6, "sweep key 'bad key' is not a Hydra override key"),
        (7, "sweep values of 'params.lr' must be a list, not 0.1"),
        (
            8,
            "sweep value 'a' of '+v' is listed twice (items 1 and 3): it would run the same "
            "point twice",
        ),
    ]


def test_a_1200_point_grid_collects(repo: Project) -> None:
    lrs = ", ".join(f"{i / 1000}" for i in range(1, 41))
    seeds = ", ".join(str(i) for i in range(30))
    repo.config(
        "big.yaml",
        f"tool: t\nexperiment: big\nparams: {{lr: 1.0}}\nseed: 0\nxstash:\n"
        f"  sweep:\n    params.lr: [{lrs}]\n    seed: [{seeds}]\n",
    )
    start = time.perf_counter()
    result = repo.pytester.runpytest("--collect-only", "-q", "configs")
    seconds = time.perf_counter() - start
    print(f"1200-point grid: --collect-only -q took {seconds:.2f}s (in-process pytester)")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert re.fullmatch(
        r"1200 tests collected in [\d.]+s( \(\d+:\d\d:\d\d\))?", result.outlines[-1]
    ), f"{result.outlines[-1]} (measured {seconds:.2f}s)"
    ids = [line for line in result.outlines if "::" in line]
    assert len(ids) == len(set(ids)) == 1200, f"measured {seconds:.2f}s"
    assert ids[0] == "configs/big.yaml::big[params.lr=0.001-seed=0]"
    assert ids[29] == "configs/big.yaml::big[params.lr=0.001-seed=29]"
    assert ids[-1] == "configs/big.yaml::big[params.lr=0.04-seed=29]"


# --- 7. report files under xdist -----------------------------------------------------------


def test_csv_report_has_a_column_per_swept_key_under_xdist(repo: Project) -> None:
    repo.config(
        "r.yaml",
        """\
        tool: s
        experiment: rep
        params: {lr: 1.0}
        model: none
        metrics: {score: "${params.lr}"}
        xstash:
          sweep: {params.lr: [0.1, 0.01, 0.001], model: [small, big]}
        """,
    )
    serial = collect_ids(repo, "configs")
    result = repo.pytester.runpytest_subprocess(
        "configs", "-n", "2", "--xstash-report", "out/r.csv"
    )
    result.assert_outcomes(passed=6)
    with (repo.root / "out" / "r.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    fixed = ["id", "experiment", "config", "tool", "status", "duration", "estimated_runtime"]
    assert fields == [*fixed, "exit_code", "params.lr", "model", "score", "overrides", "run_dir"]
    assert [row["id"] for row in rows] == serial
    points = [(lr, m) for lr in ("0.1", "0.01", "0.001") for m in ("small", "big")]
    for row, (lr, model) in zip(rows, points, strict=True):
        assert row["id"] == f"configs/r.yaml::rep[params.lr={lr}-model={model}]"
        assert (row["params.lr"], row["model"], row["score"]) == (lr, model, lr)
        assert row["status"] == "passed"
        assert row["overrides"] == f"params.lr={lr} model='{model}'"
        record = read_json(Path(row["run_dir"]) / "xstash.json")
        assert record["nodeid"] == row["id"]
        assert record["point"] == {"params.lr": float(lr), "model": model}


# --- 8. scripts/run_experiment TOOL CONFIG key=value ---------------------------------------


def test_run_experiment_passes_key_value_as_overrides(repo: Project) -> None:
    CANARY.unlink(missing_ok=True)
    shutil.copytree(REPO / "scripts", repo.root / "scripts")
    repo.config(
        "sw.yaml",
        "tool: t\nexperiment: sw\nparams: {lr: 1.0}\nxstash:\n  sweep: {+seed: [1, 2]}\n",
    )

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(repo.root / "scripts" / "run_experiment"), *args],
            cwd=repo.root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    proc = script(
        "t", "sw", "params.lr=0.5", "+extra=a,b", "+cmd=$(touch /tmp/pwned-xstash)", "--", "-v"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    assert (
        "$ pytest configs/sw.yaml -s -q --xstash-override params.lr=0.5 --xstash-override "
        "+extra=a,b --xstash-override '+cmd=$(touch /tmp/pwned-xstash)' -v"
    ) in proc.stdout
    found = runs(repo, "sw")
    assert sorted(found) == ["configs/sw.yaml::sw[+seed=1]", "configs/sw.yaml::sw[+seed=2]"]
    for record, seen in found.values():
        seed = record["point"]["+seed"]
        assert record["overrides"] == [
            f"+seed={seed}",
            "params.lr=0.5",
            "+extra='a,b'",
            "+cmd='$(touch /tmp/pwned-xstash)'",
        ]
        assert seen["cfg"] == {
            "params": {"lr": 0.5},
            "seed": seed,
            "extra": "a,b",
            "cmd": "$(touch /tmp/pwned-xstash)",
        }
    assert not CANARY.exists()

    # Validation sees the overrides too: a bad one is pytest's usage error.
    bad = script("t", "sw", "bad key=1", "--validate-only")
    assert bad.returncode == pytest.ExitCode.USAGE_ERROR, bad.stdout + bad.stderr
    assert "--xstash-override 'bad key=1': write KEY=VALUE" in bad.stderr
    good = script("t", "sw", "+extra=1", "--validate-only")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "configs/sw.yaml::sw[+seed=1]" in good.stdout
    assert len(repo.run_dirs("sw")) == 2  # validation ran nothing
