"""--xstash-reuse explains a rerun: which ingredient of the run key changed against the newest
passed run of the same experiment (or sweep point): tool code (which files), dependencies,
config (which keys, old -> new), overrides, inputs (which files); in the record
(``rerun_reason``, with ``key_ingredients``), the JUnit properties and, with -v, the terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from helpers import Project

from xstash_plugin.run.provenance import KeyMaker, KeyParts
from xstash_plugin.run.record import RunRecord, Status
from xstash_plugin.run.rerun import explain, keep_trees

# A real Hydra tool: appends its job's name to <project>/runs.log on every run (outside its own
# folder: a file written there would be a change of its code) and writes metrics.
MAIN = """\
import json, os
import hydra
from hydra.core.hydra_config import HydraConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    with open(os.path.join(REPO, "runs.log"), "a") as f:
        f.write(HydraConfig.get().job.name + "\\n")
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "metrics.json"), "w") as f:
        json.dump({"score": float(cfg.get("score", 1.0))}, f)

if __name__ == "__main__":
    main()
"""

CONFIG = """\
tool: t
experiment: a
score: 0.9
model:
  lr: 0.1
  layers: [64, 32]
xstash:
  inputs: [data/train.csv, data/images]
  expect: {score: ">= 0.5"}
"""


@pytest.fixture
def repo(project: Project, hydra_python: str) -> Project:
    """Tool 't' with a pyproject.toml (its dependency spec), run on the hydra_python fixture."""
    project.tool("t", MAIN, env=hydra_python, deps="pyproject")
    project.write("data/train.csv", "a,b\n1,2\n")
    project.write("data/images/cat.txt", "cat\n")
    project.write("data/images/dog.txt", "dog\n")
    project.config("a.yaml", CONFIG)
    return project


def runs(project: Project) -> list[str]:
    log = project.root / "runs.log"
    return log.read_text().split() if log.exists() else []


def run(project: Project, *args: str) -> pytest.RunResult:
    return project.pytester.runpytest(
        "configs", "--xstash-reuse", "-v", "-p", "no:cacheprovider", *args
    )


def record_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "xstash.json").read_text())
    return data


def newest_record(project: Project, config: str = "a") -> dict[str, Any]:
    """The record of the run of ``configs/<config>`` that started last."""
    return max((record_of(d) for d in project.run_dirs(config)), key=lambda r: r["started"])


def junit_properties(path: Path) -> dict[str, str]:
    """The JUnit XML's properties by name (without the 'nodeid::' pytester's xunit2 adds)."""
    found = {}
    for prop in ElementTree.parse(path).iter("property"):
        found[prop.get("name", "").rpartition("::")[2]] = prop.get("value", "")
    return found


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, text
    path.write_text(text.replace(old, new))


CHANGES: dict[str, tuple[Callable[[Project], Any], str]] = {
    "code file": (
        lambda p: edit(p.root / "tools/t/src/main.py", "float(cfg", "float( cfg"),
        "tool code src/main.py changed",
    ),
    "new code file": (
        lambda p: p.write("tools/t/src/helper.py", "X = 1\n"),
        "tool code src/helper.py added",
    ),
    "dependency": (
        lambda p: edit(p.root / "tools/t/pyproject.toml", '"hydra-core', '"pyyaml", "hydra-core'),
        "dependencies pyproject.toml changed",
    ),
    "config key": (
        lambda p: edit(p.root / "configs/a.yaml", "lr: 0.1", "lr: 0.01"),
        "config model.lr 0.1 -> 0.01",
    ),
    "config keys": (
        lambda p: edit(p.root / "configs/a.yaml", "[64, 32]", "[64, 16, 8]\n  dropout: 0.5"),
        "config model.layers[1] 32 -> 16, model.layers[2] (absent) -> 8, "
        "model.dropout (absent) -> 0.5",
    ),
    "input file": (
        lambda p: p.write("data/train.csv", "a,b\n1,3\n"),
        "input data/train.csv changed",
    ),
    "input folder": (
        lambda p: p.write("data/images/dog.txt", "wolf\n"),
        "input data/images: dog.txt changed",
    ),
    "two ingredients": (
        lambda p: (
            p.write("tools/t/src/main.py", MAIN.replace("float(cfg", "float( cfg")),
            edit(p.root / "configs/a.yaml", "score: 0.9", "score: 0.8"),
        ),
        "tool code src/main.py changed; config score 0.9 -> 0.8",
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_changed_ingredient_is_named(repo: Project, change: str) -> None:
    run(repo).assert_outcomes(passed=1)
    assert newest_record(repo)["rerun_reason"] == "no passed run of this experiment yet"
    apply, reason = CHANGES[change]
    apply(repo)
    result = run(repo, "--junitxml=r.xml")
    result.assert_outcomes(passed=1)
    assert runs(repo) == ["a", "a"]
    record = newest_record(repo)
    assert record["rerun_reason"] == reason
    assert junit_properties(repo.root / "r.xml").get("rerun_reason") == reason
    # Unchanged again: reused, and a reused run explains nothing.
    again = run(repo, "--junitxml=r.xml")
    again.assert_outcomes(passed=1)
    assert runs(repo) == ["a", "a"]
    assert "rerun_reason" not in junit_properties(repo.root / "r.xml")


def test_the_record_keeps_each_ingredient_and_what_explains_it(repo: Project) -> None:
    run(repo).assert_outcomes(passed=1)
    record = newest_record(repo)
    ingredients = record["key_ingredients"]
    assert set(ingredients) == {
        "tool",
        "code",
        "dependencies",
        "config",
        "overrides",
        "inputs",
        "upstream",
    }
    assert ingredients["tool"] == "t"
    assert ingredients["upstream"] is None
    assert ingredients["dependencies"] == record["dependency_hash"]
    details = record["key_details"]
    assert details["config"] == {
        "score": "0.9",
        "model.lr": "0.1",
        "model.layers[0]": "64",
        "model.layers[1]": "32",
    }
    assert set(details["inputs"]) == {"data/train.csv", "data/images"}
    assert set(details["dependencies"]) == {"pyproject.toml"}
    # The tool's files, by their git blob id, kept once under the output root.
    trees = repo.root / "outputs" / ".xstash" / "trees"
    files = json.loads((trees / f"{ingredients['code']}.json").read_text())["files"]
    blob = subprocess.run(
        ["git", "hash-object", str(repo.root / "tools/t/src/main.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert files == {"pyproject.toml": files["pyproject.toml"], "src/main.py": blob[:12]}


def test_overrides_added_and_changed(repo: Project) -> None:
    run(repo).assert_outcomes(passed=1)
    run(repo, "--xstash-override", "+extra=1").assert_outcomes(passed=1)
    assert newest_record(repo)["rerun_reason"] == "overrides +extra=1 added"
    run(repo, "--xstash-override", "+extra=2").assert_outcomes(passed=1)
    assert newest_record(repo)["rerun_reason"] == "overrides extra 1 -> 2"
    run(repo, "--xstash-override", "+extra=2").assert_outcomes(passed=1)
    assert runs(repo) == ["a", "a", "a"]


def test_a_rerun_is_told_against_the_newest_passed_run(repo: Project) -> None:
    run(repo).assert_outcomes(passed=1)
    edit(repo.root / "configs/a.yaml", "score: 0.9", "score: 0.8")
    run(repo).assert_outcomes(passed=1)
    edit(repo.root / "configs/a.yaml", "score: 0.8", "score: 0.1")  # fails its expectation
    run(repo).assert_outcomes(failed=1)
    assert newest_record(repo)["rerun_reason"] == "config score 0.8 -> 0.1"
    edit(repo.root / "configs/a.yaml", "score: 0.1", "score: 0.7")
    run(repo).assert_outcomes(passed=1)
    # Against the newest *passed* run (0.8), not the failed one after it (0.1).
    assert newest_record(repo)["rerun_reason"] == "config score 0.8 -> 0.7"


def test_sweep_points_are_explained_one_by_one(repo: Project) -> None:
    edit(repo.root / "configs/a.yaml", "  inputs:", "  sweep: {+x: [1, 2]}\n  inputs:")
    run(repo).assert_outcomes(passed=2)
    edit(repo.root / "configs/a.yaml", "[1, 2]", "[1, 3]")
    edit(repo.root / "configs/a.yaml", "lr: 0.1", "lr: 0.2")
    result = run(repo)
    result.assert_outcomes(passed=2)
    records = sorted((record_of(d) for d in repo.run_dirs("a")), key=lambda r: r["started"])
    reasons = {r["nodeid"]: r["rerun_reason"] for r in records[2:]}
    assert reasons == {
        "configs/a.yaml::a[+x=1]": "config model.lr 0.1 -> 0.2",
        "configs/a.yaml::a[+x=3]": "no passed run of this experiment yet",
    }


def test_the_reason_is_shown_with_v(repo: Project) -> None:
    first = run(repo)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(
        ["configs/a.yaml::a PASSED*", "    rerun: no passed run of this experiment yet"]
    )
    edit(repo.root / "configs/a.yaml", "lr: 0.1", "lr: 0.01")
    second = run(repo)
    second.stdout.fnmatch_lines(
        ["configs/a.yaml::a PASSED*", "    rerun: config model.lr 0.1 -> 0.01"]
    )
    assert second.stdout.lines.count("    rerun: config model.lr 0.1 -> 0.01") == 1
    quiet = repo.pytester.runpytest("configs", "--xstash-reuse", "-p", "no:cacheprovider")
    quiet.assert_outcomes(passed=1)  # reused: nothing to explain, and without -v nothing shown
    assert "rerun:" not in quiet.stdout.str()


def test_reasons_under_xdist(repo: Project) -> None:
    for name in ("b", "c", "d"):
        repo.config(f"{name}.yaml", CONFIG.replace("experiment: a", f"experiment: {name}"))
    first = repo.pytester.runpytest_subprocess("configs", "-n", "2", "--xstash-reuse", "-v")
    first.assert_outcomes(passed=4)
    edit(repo.root / "configs/b.yaml", "score: 0.9", "score: 0.95")
    repo.write("data/train.csv", "a,b\n5,6\n")  # every experiment declares it
    result = repo.pytester.runpytest_subprocess("configs", "-n", "2", "--xstash-reuse", "-v")
    result.assert_outcomes(passed=4)
    expected = {
        "a": "input data/train.csv changed",
        "b": "config score 0.9 -> 0.95; input data/train.csv changed",
        "c": "input data/train.csv changed",
        "d": "input data/train.csv changed",
    }
    for name, reason in expected.items():
        assert newest_record(repo, name)["rerun_reason"] == reason
    text = result.stdout.str()
    for name, reason in expected.items():
        line = rf"PASSED configs/{name}\.yaml::{name} *\n    rerun: {re.escape(reason)}\n"
        assert re.search(line, text), text


def git(folder: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run(["git", "-C", str(folder), *args], check=True, env=env, capture_output=True)


REAL_APP_EXPERIMENT = """\
tool: app
experiment: tree_iris
defaults:
  - train
  - override model: tree
  - _self_
trainer:
  epochs: 2
xstash:
  expect: {accuracy: ">= 0.5"}
"""


def test_a_real_app_in_git_names_its_config_group_file(project: Project, hydra_python: str) -> None:
    """A tool shaped like a real app (primary config 'train', config groups), in a git work
    tree: a changed group option file and a changed key of the experiment are both named."""
    project.real_app(env=hydra_python, primary="train")
    project.config("tree.yaml", REAL_APP_EXPERIMENT)
    project.write(".gitignore", "*.log\noutputs/\n")  # the app's log files are not code
    git(project.root, "init", "-q")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "init")
    args = ("configs", "--xstash-reuse", "-v", "-p", "no:cacheprovider")
    project.pytester.runpytest(*args).assert_outcomes(passed=1)
    project.pytester.runpytest(*args).assert_outcomes(passed=1)
    assert len(project.run_dirs("tree")) == 1  # reused: the log files it wrote do not count
    edit(project.root / "tools/app/app/conf/model/tree.yaml", "depth: 3", "depth: 4")
    edit(project.root / "configs/tree.yaml", "epochs: 2", "epochs: 3")
    project.pytester.runpytest(*args).assert_outcomes(passed=1)
    record = newest_record(project, "tree")
    assert record["rerun_reason"] == (
        "tool code app/conf/model/tree.yaml changed; config trainer.epochs 2 -> 3"
    )
    assert record["key_details"]["config"]["defaults[1].override model"] == '"tree"'


def _parts(tmp_path: Path, **config: Any) -> KeyParts:
    tool = tmp_path / "tool"
    if not tool.exists():
        (tool / "src").mkdir(parents=True)
        (tool / "src" / "main.py").write_text("print('hi')\n")
    return KeyMaker().parts("t", tool, config, [], {})


def _record(parts: KeyParts | None) -> RunRecord:
    record = RunRecord(
        status=Status.PASSED,
        experiment="a",
        config="configs/a.yaml",
        nodeid="configs/a.yaml::a",
        tool="t",
        tool_path="tools/t",
        started=0.0,
    )
    if parts is not None:
        record.update(key_ingredients=parts.ingredients, key_details=parts.details)
    return record


def test_explain_without_ingredients_and_with_a_new_dependency_file(tmp_path: Path) -> None:
    before = _parts(tmp_path, lr=0.1)
    assert "does not keep its key's ingredients" in explain(_record(None), before, tmp_path)
    trees = tmp_path / "trees"
    keep_trees(trees, before, set())
    (tmp_path / "tool" / "requirements.txt").write_text("hydra-core\n")
    after = _parts(tmp_path, lr=0.1)
    assert explain(_record(before), after, trees) == "dependencies requirements.txt added"
    # The tool's old file list is not kept (another output root): told without file names.
    (tmp_path / "tool" / "src" / "main.py").write_text("print('bye')\n")
    later = _parts(tmp_path, lr=0.2)
    assert explain(_record(after), later, tmp_path / "elsewhere") == (
        "tool code changed; config lr 0.1 -> 0.2"
    )
    # At most three changes are named per ingredient; the rest are counted.
    many = _parts(tmp_path, lr=0.2, extra=[1, 2, 3, 4])
    assert explain(_record(later), many, tmp_path) == (
        "config extra[0] (absent) -> 1, extra[1] (absent) -> 2, extra[2] (absent) -> 3 and 1 more"
    )


def test_explain_names_the_upstream_that_changed(tmp_path: Path) -> None:
    """The ingredient later experiments that use another's output fill (a name per upstream
    and its run key): which one changed is named."""
    tool = tmp_path / "tool"
    (tool / "src").mkdir(parents=True)
    (tool / "src" / "main.py").write_text("print('hi')\n")
    keys = KeyMaker()
    plain = keys.parts("t", tool, {"lr": 0.1}, [], {})
    assert plain.key == keys.parts("t", tool, {"lr": 0.1}, [], {}, upstream={}).key
    before = keys.parts("t", tool, {"lr": 0.1}, [], {}, upstream={"pretrain": "k1", "data": "d"})
    after = keys.parts("t", tool, {"lr": 0.1}, [], {}, upstream={"pretrain": "k2", "data": "d"})
    assert before.key != after.key != plain.key
    assert explain(_record(before), after, tmp_path) == "upstream pretrain changed"
    assert explain(_record(plain), after, tmp_path) == "upstream data added, pretrain added"
