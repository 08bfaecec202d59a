"""--xstash-compose: the tool composes each experiment at collection; verdicts are cached."""

from __future__ import annotations

import pytest
from helpers import Project

# A real Hydra tool with a strict schema and a config group; every start of the tool (compose
# or run) appends a line to starts.log, so a test can count how often it was spawned.
MAIN = """\
import os
from dataclasses import dataclass, field
import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# (outside the tool's folder: a file written there would count as a change of the tool)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
with open(os.path.join(REPO, "starts.log"), "a") as f:
    f.write("start\\n")

@dataclass
class Model:
    name: str = MISSING
    width: int = MISSING

@dataclass
class Params:
    lr: float = 0.1
    epochs: int = 2

@dataclass
class Cfg:
    model: Model = MISSING
    params: Params = field(default_factory=Params)
    note: str = ""

ConfigStore.instance().store(name="schema", node=Cfg)
ConfigStore.instance().store(group="model", name="model_schema", node=Model)

@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    print(cfg.model.name, cfg.params.lr)

if __name__ == "__main__":
    main()
"""

GOOD = """\
tool: strict
experiment: {name}
defaults: [config, _self_]
params: {{lr: 0.5}}
"""


@pytest.fixture
def strict(project: Project, hydra_python: str) -> Project:
    folder = project.tool("strict", MAIN, entrypoint="src/main.py", env=hydra_python, deps=None)
    conf = folder / "src" / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "config.yaml").write_text("defaults:\n  - schema\n  - model: small\n  - _self_\n")
    for name, width in (("small", 8), ("big", 64)):
        (conf / "model" / f"{name}.yaml").write_text(
            f"defaults: [model_schema]\nname: {name}\nwidth: {width}\n"
        )
    project.config("good.yaml", GOOD.format(name="good"))
    return project


def starts(project: Project) -> int:
    log = project.root / "starts.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def collect(project: Project, *args: str) -> pytest.RunResult:
    return project.pytester.runpytest("configs", "--collect-only", "-q", "--xstash-compose", *args)


@pytest.mark.parametrize(
    ("body", "hydra_says"),
    [
        pytest.param(
            "defaults: [config, _self_]\nparams: {lr: 0.5, momentum: 0.9}\n",
            "Key 'momentum' not in 'Params'",
            id="unknown-key-under-schema",
        ),
        pytest.param(
            "defaults: [config, {override model: huge}, _self_]\n",
            "Could not find 'model/huge'",
            id="missing-group-option",
        ),
        pytest.param(
            "defaults: [config, _self_]\nnote: ${model.depth}\n",
            "depth",
            id="bad-interpolation-into-a-group",
        ),
    ],
)
def test_compose_errors_are_collection_errors(strict: Project, body: str, hydra_says: str) -> None:
    strict.config("bad.yaml", f"tool: strict\nexperiment: bad\n{body}")
    # Without --xstash-compose the orchestrator cannot know: the config collects.
    plain = strict.pytester.runpytest("configs", "--collect-only", "-q")
    plain.stdout.fnmatch_lines(["configs/bad.yaml::bad"])
    result = collect(strict)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting configs/bad.yaml*",
            "*bad.yaml:2: tool 'strict' cannot compose experiment 'bad':",
            f"*{hydra_says}*",
            "*fix: make the config match the tool's schema*",
        ]
    )
    result.stdout.fnmatch_lines(["configs/good.yaml::good"])
    assert "Config search path" not in result.stdout.str()


def test_each_sweep_point_is_composed(strict: Project) -> None:
    strict.config(
        "sweep.yaml",
        "tool: strict\nexperiment: sw\ndefaults: [config, _self_]\n"
        "xstash:\n  sweep: {model: [small, big, huge]}\n",
    )
    result = collect(strict)
    result.stdout.fnmatch_lines(
        [
            "*sweep.yaml:2: tool 'strict' cannot compose experiment 'sw' (sweep point model=huge):",
            "*Could not find 'model/huge'*",
        ]
    )
    assert "model=small" not in result.stdout.str().split("ERROR collecting")[1]


def test_verdicts_are_cached_and_invalidated_by_changes(strict: Project) -> None:
    for i in range(3):
        strict.config(f"e{i}.yaml", GOOD.format(name=f"e{i}"))
    first = collect(strict)
    first.stdout.fnmatch_lines(["*4 tests collected*"])
    assert starts(strict) == 4
    second = strict.pytester.runpytest("configs", "--collect-only", "--xstash-compose")
    second.stdout.fnmatch_lines(["*checked 4 run(s): 0 composed by their tools, 4 unchanged*"])
    assert starts(strict) == 4, "an unchanged config must not spawn its tool again"
    # A changed value composes again (only that config); so does a changed override.
    strict.config("e0.yaml", GOOD.format(name="e0").replace("0.5", "0.25"))
    collect(strict)
    assert starts(strict) == 5
    collect(strict, "--xstash-override", "params.epochs=7")
    assert starts(strict) == 9
    # A change to the tool's code invalidates every verdict of that tool.
    conf = strict.root / "tools" / "strict" / "src" / "conf" / "model" / "small.yaml"
    conf.write_text(conf.read_text().replace("width: 8", "width: 9"))
    collect(strict)
    assert starts(strict) == 13


def test_a_failed_verdict_is_cached_too(strict: Project) -> None:
    strict.config("bad.yaml", "tool: strict\nexperiment: bad\ndefaults: [config, _self_]\nx: 1\n")
    assert collect(strict).ret == pytest.ExitCode.INTERRUPTED
    count = starts(strict)
    again = collect(strict)
    assert again.ret == pytest.ExitCode.INTERRUPTED
    again.stdout.fnmatch_lines(["*Key 'x' not in 'Cfg'*"])
    assert starts(strict) == count


def test_compose_then_run(strict: Project) -> None:
    result = strict.pytester.runpytest("configs", "--xstash-compose", "-v")
    result.assert_outcomes(passed=1)
    assert starts(strict) == 2  # one compose, one run


def test_compose_under_xdist(strict: Project) -> None:
    strict.config("e1.yaml", GOOD.format(name="e1"))
    result = strict.pytester.runpytest_subprocess("configs", "--xstash-compose", "-n", "2")
    result.assert_outcomes(passed=2)
    # Both workers collect; per-key locks and the cache keep it to one compose per config.
    assert starts(strict) == 2 + 2


def test_ini_enables_compose(strict: Project) -> None:
    strict.pytester.makeini("[pytest]\nxstash_compose = true\n")
    strict.config("bad.yaml", "tool: strict\nexperiment: bad\ndefaults: [config, _self_]\nx: 1\n")
    result = strict.pytester.runpytest("configs", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "cannot compose" in result.stdout.str()
