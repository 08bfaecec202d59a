"""Project.real_app: a test tool shaped like a real public Hydra app works end to end."""

from __future__ import annotations

import json

from helpers import Project

TREE = """\
tool: app
experiment: tree_iris
defaults:
  - main
  - override model: tree
  - _self_
trainer:
  epochs: 2
"""

TYPO = """\
tool: strict
experiment: typo
defaults: [main, _self_]
trainer:
  epochz: 2
"""


def test_real_app_runs_an_experiment(project: Project, hydra_python: str) -> None:
    project.real_app(env=hydra_python)
    project.config("tree.yaml", TREE)
    result = project.pytester.runpytest("configs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (run_dir,) = project.run_dirs("tree")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 < metrics["accuracy"] <= 1.0
    assert metrics["n_test"] == 30  # iris: 150 samples, test_size 0.2
    stdout = (run_dir / "stdout.log").read_text()
    assert "model=tree dataset=iris epochs=2" in stdout
    assert project.starts("app") >= 1  # the run (and, by default, the compose check at collection)


def test_real_app_schema_rejects_unknown_keys_at_run_time(
    project: Project, hydra_python: str
) -> None:
    project.real_app("strict", schema=True, env=hydra_python)
    project.config("typo.yaml", TYPO)
    # No compose check at collection: the tool itself must refuse the key when it runs.
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "--xstash-compose", "off"
    )
    result.assert_outcomes(failed=1)
    (run_dir,) = project.run_dirs("typo")
    assert "Key 'epochz' not in 'TrainerSchema'" in (run_dir / "stderr.log").read_text()
    assert not (run_dir / "metrics.json").exists()
    assert project.starts("strict") == 1
