"""The compose process says what Hydra says: for every run, its verdict on whether the config
composes and resolves is the verdict of a plain ``<tool> --cfg job --resolve`` of the same
config, over the shipped configs and over configs (good and bad) of tools shaped like real apps.

The unknown-key check comes on top of Hydra's verdict (Hydra's command line refuses an unknown
key, a config file does not): it is not part of this comparison.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers import Project
from test_compose import CASES, EXPERIMENT

from xstash_plugin.config.compose import ComposeService, Run
from xstash_plugin.config.compose_client import Answer
from xstash_plugin.config.experiment import load_experiment
from xstash_plugin.config.overrides import overrides_for
from xstash_plugin.config.registry import load_registry
from xstash_plugin.config.sweeps import point_labels
from xstash_plugin.errors import XstashError
from xstash_plugin.run.envs import EnvManager
from xstash_plugin.run.rundir import CONFIG_NAME

REPO = Path(__file__).resolve().parent.parent


def verdicts(
    configs: Path, state_dir: Path, envs_dir: Path, answers: list[tuple[str, Answer]] | None = None
) -> list[tuple[str, bool, bool]]:
    """(run, compose process says it composes, ``--cfg job --resolve`` exits 0) for every run
    of every experiment below ``configs``; the compose process's answers go to ``answers``."""
    registry = load_registry(configs / "meta.yaml")
    envs = EnvManager(envs_dir, uuid.uuid4().hex)
    service = ComposeService(state_dir, envs)
    found = []
    try:
        for path in sorted(configs.rglob("*.yaml")):
            if path.name == "meta.yaml" or any(p.startswith("_") for p in path.parts):
                continue
            try:
                experiment = load_experiment(path, registry)
            except XstashError:
                continue  # not a config the tool is asked about
            points = list(experiment.points) or [()]
            labels = point_labels(points) if experiment.points else [""]
            runs = [
                Run(label, dict(point), overrides_for(point))
                for point, label in zip(points, labels, strict=True)
            ]
            python = envs.python_for(experiment.tool)
            for item in service.compose(experiment, runs):
                assert item.answer is not None, item.problem
                assert item.request is not None
                argv = [
                    python,
                    *experiment.tool.entrypoint,
                    "--config-dir",
                    item.request["config_dir"],
                    "--config-name",
                    CONFIG_NAME,
                    *item.request["overrides"],
                    "--cfg",
                    "job",
                    "--resolve",
                ]
                proc = subprocess.run(
                    argv, cwd=experiment.tool.path, capture_output=True, text=True, check=False
                )
                name = f"{path.relative_to(configs)}[{item.run.label}]"
                found.append((name, item.answer.hydra_ok, proc.returncode == 0))
                if answers is not None:
                    answers.append((name, item.answer))
    finally:
        service.close()
    return found


def test_shipped_configs(tmp_path: Path) -> None:
    # The tools' environments are the repository's own (shared, under its output root's lock).
    found = verdicts(REPO / "configs", tmp_path, REPO / "outputs" / ".xstash")
    assert len(found) >= 20
    assert all(ours for _, ours, _ in found), "every shipped config composes"
    assert [(n, ours) for n, ours, _ in found] == [(n, hydra) for n, _, hydra in found]


@pytest.mark.parametrize("schema", [False, True], ids=["no-schema", "schema"])
def test_configs_of_tools_shaped_like_real_apps(
    project: Project, hydra_python: str, schema: bool
) -> None:
    project.real_app(env=hydra_python, schema=schema)
    for case, (body, _, _) in CASES.items():
        project.config(f"{case}.yaml", EXPERIMENT.format(name=case) + body)
    root = project.root
    found = verdicts(root / "configs", root / "outputs" / ".xstash", root / "outputs" / ".xstash")
    assert len(found) == len(CASES) + 2  # two sweeps of two points
    assert {ours for _, ours, _ in found} == {True, False}, "both verdicts are exercised"
    assert [(n, ours) for n, ours, _ in found] == [(n, hydra) for n, _, hydra in found]


# Sweeps whose points differ in config-group choices, in values, or both; some points fail (a
# group option that does not exist, a value the schema refuses, an interpolation to nowhere).
SWEEPS = {
    "groups-and-values": "xstash:\n  sweep:\n    model: [linear, tree, linaer]\n"
    "    trainer.epochs: [1, many]\n",
    "values-only": "xstash:\n  sweep:\n    test_size: [0.1, 0.2]\n"
    "    trainer.epochs: [2, '${seed}', '${nokey}']\n",
    "value-mapping": "xstash:\n  sweep:\n    trainer: [{epochs: 1}, {epochs: 2, log_every: x}]\n",
}


@pytest.mark.parametrize("schema", [False, True], ids=["no-schema", "schema"])
def test_sweep_points_composed_from_one_defaults_list_say_what_hydra_says(
    project: Project, hydra_python: str, schema: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compose process takes the points of a sweep that share their config-group choices
    from one defaults list and merged config (compose_server_memo.py): every point's verdict is
    still Hydra's own, and every answer is the one composing each point from scratch gives."""
    project.real_app(env=hydra_python, schema=schema)
    for name, body in SWEEPS.items():
        project.config(f"{name}.yaml", EXPERIMENT.format(name=name) + body)
    root = project.root
    envs = root / "outputs" / ".xstash"
    remembered: list[tuple[str, Answer]] = []
    found = verdicts(root / "configs", root / "memo-on", envs, remembered)
    assert len(found) == 6 + 6 + 2
    assert {ours for _, ours, _ in found} == {True, False}, "both verdicts are exercised"
    assert [(n, ours) for n, ours, _ in found] == [(n, hydra) for n, _, hydra in found]
    recalled = {name for name, answer in remembered if answer.recalled}
    assert len(recalled) >= 8, "later points of each sweep reuse a defaults list"

    monkeypatch.setenv("XSTASH_COMPOSE_MEMO", "off")
    scratch: list[tuple[str, Answer]] = []
    assert verdicts(root / "configs", root / "memo-off", envs, scratch) == found
    assert not any(answer.recalled for _, answer in scratch)
    strip = [(n, a.ok, a.hydra_ok, a.errors) for n, a in remembered]
    assert strip == [(n, a.ok, a.hydra_ok, a.errors) for n, a in scratch]


def test_the_same_sweep_beside_other_fragments_is_not_recalled_from_the_first(
    project: Project, hydra_python: str
) -> None:
    """Two folders hold the same experiment (one config folder for both) beside different `_`
    fragments: Hydra finds those through ``hydra.searchpath``, so the second sweep's defaults
    list is not the first one's, and its points fail as Hydra says."""
    project.real_app(env=hydra_python)
    body = "defaults:\n  - main\n  - _common\n  - _self_\nxstash:\n  sweep:\n    seed: [1, 2]\n"
    for folder, log_every in (("a", "2"), ("b", "${nokey}")):
        project.config(f"{folder}/_common.yaml", f"trainer:\n  log_every: {log_every}\n")
        project.config(f"{folder}/e.yaml", EXPERIMENT.format(name="e") + body)
    root = project.root
    answers: list[tuple[str, Answer]] = []
    found = verdicts(
        root / "configs", root / "outputs" / ".xstash", root / "outputs" / ".xstash", answers
    )
    assert [(n, ours, hydra) for n, ours, hydra in found] == [
        ("a/e.yaml[seed=1]", True, True),
        ("a/e.yaml[seed=2]", True, True),
        ("b/e.yaml[seed=1]", False, False),
        ("b/e.yaml[seed=2]", False, False),
    ]
    assert [answer.recalled for _, answer in answers] == [False, True, False, True]


def test_the_shipped_configs_catch_a_typo_at_its_line(pytester: pytest.Pytester) -> None:
    """`pytest configs --collect-only` on the shipped repository (a copy: configs/ and the
    toy-classifier tool, whose environment uv builds from its cache) with one typo'd key."""
    shutil.copytree(REPO / "configs", pytester.path / "configs")
    shutil.copytree(
        REPO / "tools" / "toy-classifier",
        pytester.path / "tools" / "toy-classifier",
        ignore=shutil.ignore_patterns(".venv", "__pycache__", "uv.lock"),
    )
    meta = pytester.path / "configs" / "meta.yaml"
    meta.write_text(
        "tools:\n  toy-classifier:\n    path: tools/toy-classifier\n"
        '    entrypoint: "-m classify.main"\n'
    )
    for other in ("examples", "test_integration.yaml"):  # their tools are not copied
        target = pytester.path / "configs" / other
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    typo = pytester.path / "configs" / "classify" / "typo.yaml"
    source = (pytester.path / "configs" / "classify" / "centroid_blobs.yaml").read_text()
    typo.write_text(
        source.replace("experiment: centroid_blobs", "experiment: typo").replace(
            "test_size: 0.3", "test_sise: 0.3"
        )
    )
    line = typo.read_text().splitlines().index("test_sise: 0.3") + 1
    result = pytester.runpytest("configs", "--collect-only")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*composed * run(s) with their tools*",
            f"*configs/classify/typo.yaml:{line}: unknown key 'test_sise': the config this "
            "experiment extends ('main' and its defaults of tool 'toy-classifier') has no such "
            "key. Did you mean 'test_size'?",
        ]
    )
    result.stdout.fnmatch_lines(["*<ExperimentItem centroid_blobs>*"])
