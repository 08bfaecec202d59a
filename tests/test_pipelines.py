"""``xstash.needs``: experiments that use another's output, on the shipped three-stage tool
(tools/toy-pipeline: primary config ``main``, a ``stage`` group instantiated from ``_target_``,
no schema): data -> train (a sweep) -> evaluate, real files passed through run directories."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from helpers import Project, error_messages

TOOL = Path(__file__).resolve().parent.parent / "tools" / "toy-pipeline"

DATA = """\
tool: pipe
experiment: data
stage:
  n_samples: {n}
xstash:
  expect: {{n_samples: '== {n}'}}
"""
TRAIN = """\
tool: pipe
experiment: train
defaults:
  - main
  - override stage: train
  - _self_
stage:
  data: ${xstash.needs.data.run_dir}/dataset.json
  epochs: 40
xstash:
  needs:
    data: configs/data.yaml
  sweep:
    stage.lr: [0.05, 0.2]
"""
EVALUATE = """\
tool: pipe
experiment: evaluate
defaults:
  - main
  - override stage: evaluate
  - _self_
stage:
  model: ${xstash.needs.model.run_dir}/model.json
  n_samples: ${xstash.needs.data.metrics.n_samples}
xstash:
  needs:
    model: configs/train.yaml::stage.lr=0.2
    data: configs/data.yaml
  expect: {r2: '>= 0.9'}
"""


@pytest.fixture
def pipeline(project: Project, hydra_python: str) -> Project:
    shutil.copytree(TOOL, project.root / "tools" / "pipe", ignore=shutil.ignore_patterns(".venv"))
    project.tools["pipe"] = "\n".join(
        [
            "  pipe:",
            "    path: tools/pipe",
            '    entrypoint: "-m pipeline.main"',
            f'    env: "{hydra_python}"',
        ]
    )
    project._write_meta()
    project.config("data.yaml", DATA.format(n=120))
    project.config("train.yaml", TRAIN)
    project.config("evaluate.yaml", EVALUATE)
    return project


def record(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "xstash.json").read_text())
    return data


def sent_config(run_dir: Path) -> str:
    return (run_dir / "xstash_config" / "xstash_experiment.yaml").read_text()


@pytest.mark.parametrize("workers", [0, 2], ids=["plain", "n2"])
def test_three_stages_pass_files_through_run_dirs(pipeline: Project, workers: int) -> None:
    args = ["configs", "--junitxml=j.xml"] + (["-n", str(workers)] if workers else [])
    result = pipeline.pytester.runpytest(*args)
    result.assert_outcomes(passed=4)
    (data_dir,) = pipeline.run_dirs("data")
    train_dirs = pipeline.run_dirs("train")
    (eval_dir,) = pipeline.run_dirs("evaluate")
    assert (data_dir / "dataset.json").is_file()
    assert all((d / "model.json").is_file() for d in train_dirs)
    # Each train run read stage 1's file; evaluate read the lr=0.2 model and a metric, typed.
    for train_dir in train_dirs:
        assert f"data: {data_dir}/dataset.json" in sent_config(train_dir)
    (lr02,) = [d for d in train_dirs if record(d)["point"] == {"stage.lr": 0.2}]
    text = sent_config(eval_dir)
    assert f"model: {lr02}/model.json" in text and "n_samples: 120\n" in text
    assert "xstash" not in text  # the tool never sees xstash
    # Upstreams ran before their dependents, also under -n 2.
    started = {p: record(d)["started"] for p, d in [("data", data_dir), ("eval", eval_dir)]}
    assert record(data_dir)["ended"] <= min(record(d)["started"] for d in train_dirs)
    assert record(lr02)["ended"] <= started["eval"]
    # The key chains: evaluate's ingredients include its upstreams' run keys.
    assert record(eval_dir)["key_ingredients"]["upstream"]
    cases = ET.parse(pipeline.root / "j.xml").getroot().iter("testcase")
    assert sorted(c.get("name") for c in cases) == [
        "data",
        "evaluate",
        "train[stage.lr=0.05]",
        "train[stage.lr=0.2]",
    ]


def test_failed_upstream_fails_its_dependents_without_running_them(pipeline: Project) -> None:
    pipeline.config("data.yaml", DATA.format(n=120).replace("'== 120'", "'== 5'"))
    result = pipeline.pytester.runpytest("configs", "-n", "2")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        [
            "*train*failed dependency: needs 'data' (configs/data.yaml::data), which failed in "
            "this session*"
        ]
    )
    result.stdout.fnmatch_lines(["*configs/evaluate.yaml::evaluate*failed-dependency*"])
    assert pipeline.run_dirs("train") == [] and pipeline.run_dirs("evaluate") == []


def test_k_on_a_downstream_runs_its_upstreams(pipeline: Project) -> None:
    result = pipeline.pytester.runpytest("configs", "-k", "evaluate", "-v")
    result.assert_outcomes(passed=3)  # data, train[lr=0.2], evaluate; not train[lr=0.05]
    assert len(pipeline.run_dirs("train")) == 1
    # --xstash-no-needs: only the selected one runs, on its upstreams' newest passed runs.
    again = pipeline.pytester.runpytest("configs", "-k", "evaluate", "--xstash-no-needs")
    again.assert_outcomes(passed=1)
    assert len(pipeline.run_dirs("evaluate")) == 2 and len(pipeline.run_dirs("data")) == 1
    shutil.rmtree(pipeline.root / "outputs")
    lone = pipeline.pytester.runpytest("configs", "-k", "evaluate", "--xstash-no-needs")
    lone.assert_outcomes(failed=1)
    lone.stdout.fnmatch_lines(["*needs 'model'*has no passed run in*"])


def test_reuse_chain_reruns_exactly_the_downstream_of_an_edit(pipeline: Project) -> None:
    pipeline.pytester.runpytest("configs").assert_outcomes(passed=4)
    same = pipeline.pytester.runpytest("configs", "--xstash-reuse")
    same.assert_outcomes(passed=4)
    assert all(len(pipeline.run_dirs(c)) == n for c, n in (("data", 1), ("train", 2)))
    # One edit of stage 2: both train points and evaluate rerun, data is reused.
    pipeline.config("train.yaml", TRAIN.replace("epochs: 40", "epochs: 45"))
    edited = pipeline.pytester.runpytest("configs", "--xstash-reuse", "-v")
    edited.assert_outcomes(passed=4)
    assert len(pipeline.run_dirs("data")) == 1
    assert len(pipeline.run_dirs("train")) == 4 and len(pipeline.run_dirs("evaluate")) == 2
    newest = record(pipeline.run_dirs("evaluate")[-1])
    assert "upstream" in newest["rerun_reason"], newest["rerun_reason"]
    assert "config" not in newest["rerun_reason"]  # its own config is unchanged
    train = record(pipeline.run_dirs("train")[-1])
    assert "epochs" in train["rerun_reason"], train["rerun_reason"]


def test_cycle_and_missing_target_are_collection_errors(pipeline: Project) -> None:
    pipeline.config(
        "data.yaml",
        DATA.format(n=120) + "  needs:\n    back: configs/evaluate.yaml\n",
    )
    pipeline.config(
        "lost.yaml",
        "tool: pipe\nexperiment: lost\nxstash:\n  needs:\n    up: configs/nowhere.yaml\n",
    )
    pipeline.config(
        "typo.yaml",
        "tool: pipe\nexperiment: typo\nx: ${xstash.needs.dta.run_dir}\n"
        "xstash:\n  needs:\n    data: configs/train.yaml::stage.lr=0.2\n",
    )
    result = pipeline.pytester.runpytest("configs", "--collect-only")
    ((line, what, fix),) = error_messages(result, "lost.yaml")
    assert "relative to the folder holding configs" in fix
    assert line == 5 and "need 'up': configs/nowhere.yaml does not exist" in what
    ((line, what, _),) = error_messages(result, "data.yaml")
    assert line == 8  # the first need (xstash.needs.back)
    assert what.startswith("needs form a cycle: data.yaml -> evaluate.yaml -> train.yaml")
    typo = error_messages(result, "typo.yaml")
    assert [(n, "names no need of this experiment (data)" in w) for n, w, _ in typo] == [(3, True)]
