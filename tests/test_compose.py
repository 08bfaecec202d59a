"""Deep validation at collection: each tool composes each experiment through one long-lived
compose process; the verdicts, their lines and their cache.

The tools here are shaped like real Hydra apps (``Project.real_app``: a primary config named
``main``, config groups, ``_target_`` instantiation, colorlog, optionally a dataclass schema),
in a real environment with hydra-core.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import Project

EXPERIMENT = "tool: app\nexperiment: {name}\n"
# Real apps import torch, scikit-learn and the like before Hydra sees a config: the test tool's
# import sleeps this long (it is paid once per compose process, which the tests also count).
IMPORT_SECONDS = 1.0


@pytest.fixture
def app(project: Project, hydra_python: str) -> Project:
    project.real_app(env=hydra_python, import_seconds=IMPORT_SECONDS)
    return project


def literal(patterns: list[str]) -> list[str]:
    """fnmatch patterns where '[' is a bracket, not a character class ('*' stays a wildcard)."""
    return [p.replace("[", "[[]") for p in patterns]


def collect(project: Project, *args: str) -> pytest.RunResult:
    return project.pytester.runpytest("configs", "--collect-only", *args)


def test_an_experiment_without_defaults_extends_the_primary_config(app: Project) -> None:
    app.config("small.yaml", EXPERIMENT.format(name="small") + "trainer:\n  epochs: 2\n")
    result = app.pytester.runpytest("configs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*composed 1 run(s) with their tools: 1 by 1 compose process*"])
    (run,) = app.run_dirs("small")
    sent = (run / "xstash_config" / "xstash_experiment.yaml").read_text()
    assert sent.startswith("defaults:\n- main\n- _self_\n"), sent
    composed = (run / ".hydra" / "config.yaml").read_text()
    assert "epochs: 2" in composed and "_target_: app.models.Linear" in composed
    assert "test_size: 0.2" in composed  # the primary config's own keys are there


# (experiment body, expected lines of the no-schema app, of the schema app); '<n>' is a line.
CASES = {
    "no-defaults-ok": ("test_size: 0.3\ntrainer:\n  epochs: 2\n", None, None),
    "defaults-naming-groups": (
        "defaults:\n  - main\n  - override model: tree\n  - _self_\nmodel:\n  depth: 5\n",
        None,
        None,
    ),
    "wrong-primary-name": (
        "defaults:\n  - config\n  - _self_\n",
        [
            "*app.yaml:4: defaults entry 'config': tool 'app' has no config named 'config'; "
            "its primary config is 'main' (config groups: dataset, model).",
            "*fix: write '- main' to extend the tool's primary config, or leave out "
            "'defaults:' altogether: an experiment without one extends 'main'",
        ],
        ["*app.yaml:4: defaults entry 'config': * its primary config is 'main'*"],
    ),
    "typo-top-level": (
        "test_sise: 0.3\n",
        [
            "*app.yaml:3: unknown key 'test_sise': the config this experiment extends ('main' "
            "and its defaults of tool 'app') has no such key. Did you mean 'test_size'?",
            "*fix: correct the key; to add a new key on purpose, declare it: "
            "xstash: {new_keys: [test_sise]}",
        ],
        [
            "*app.yaml:3: tool 'app' cannot compose this experiment: *Key 'test_sise' not in "
            "'AppSchema'* Did you mean 'test_size'?",
        ],
    ),
    "typo-nested": (
        "seed: 3\ntrainer:\n  epochz: 2\n",
        ["*app.yaml:5: unknown key 'trainer.epochz': * Did you mean 'trainer.epochs'?"],
        ["*app.yaml:5: *Key 'epochz' not in 'TrainerSchema'* Did you mean 'trainer.epochs'?"],
    ),
    "typo-group-option": (
        "defaults:\n  - main\n  - override model: linaer\n  - _self_\n",
        [
            "*app.yaml:5: defaults entry 'model/linaer': config group 'model' of tool 'app' "
            "has no option 'linaer'; its options: linear, tree. Did you mean 'linear'?",
            "*fix: choose one of the options of 'model'",
        ],
        ["*app.yaml:5: defaults entry 'model/linaer': * Did you mean 'linear'?"],
    ),
    "new-keys-declared": (
        "trainer:\n  warmup: 2\nxstash:\n  new_keys: [trainer.warmup]\n",
        None,
        ["*app.yaml:4: *Key 'warmup' not in 'TrainerSchema'*"],
    ),
    "sweep-over-a-typo": (
        "xstash:\n  sweep:\n    trainer.epochz: [1, 2]\n",
        [
            "*app.yaml:5: sweep key 'trainer.epochz': tool 'app' has no key 'trainer.epochz' in "
            "its config. Did you mean 'trainer.epochs'?",
            "*fix: correct the key, or write '+trainer.epochz' to add it as a new key",
        ],
        ["*app.yaml:5: sweep key 'trainer.epochz': * Did you mean 'trainer.epochs'?"],
    ),
    "group-value-instead-of-defaults": (
        "model: tree\n",
        [
            "*app.yaml:3: 'model' is a config group of tool 'app' (options: linear, tree): a "
            "value here replaces the group's whole config with 'tree' instead of choosing an "
            "option",
            "*fix: choose the option in the defaults list: defaults: [main, "
            "{override model: tree}, _self_], or sweep it*",
        ],
        None,  # the schema declares model: Any, and the group check is the same
    ),
    "key-of-the-other-group-option": (
        "model:\n  lr: 0.5\nxstash:\n  sweep:\n    model: [linear, tree]\n",
        [
            "*app.yaml:4: unknown key 'model.lr': * (sweep point model=tree)",
        ],
        ["*app.yaml:4: *Key 'lr' not in 'TreeSchema'* (sweep point model=tree)"],
    ),
    "interpolations": (
        "note: ${seeed}\nhome: ${oc.env:XSTASH_TEST_UNSET_VARIABLE}\ncycle: ${cycle}\n"
        "when: ${no_such_resolver:1}\nfine: ${trainer.epochs}\n"
        "xstash:\n  new_keys: [note, home, cycle, when, fine]\n",
        [
            "*app.yaml:3: interpolation at 'note' cannot resolve: Interpolation key 'seeed' not "
            "found",
            "*app.yaml:4: interpolation at 'home' cannot resolve: *XSTASH_TEST_UNSET_VARIABLE*",
            "*fix: set the environment variable XSTASH_TEST_UNSET_VARIABLE where pytest runs, "
            "or give a default: ${oc.env:XSTASH_TEST_UNSET_VARIABLE,<default>}",
            "*app.yaml:5: interpolation at 'cycle' cannot resolve: Recursive interpolation*",
            "*fix: break the cycle*",
            "*app.yaml:6: interpolation at 'when' cannot resolve: Unsupported interpolation "
            "type no_such_resolver",
        ],
        None,  # the schema refuses the new keys first
    ),
}


@pytest.mark.parametrize("schema", [False, True], ids=["no-schema", "schema"])
@pytest.mark.parametrize("case", list(CASES))
def test_verdicts_and_their_lines(
    project: Project, hydra_python: str, case: str, schema: bool
) -> None:
    body, plain_lines, schema_lines = CASES[case]
    expected = schema_lines if schema else plain_lines
    if schema and schema_lines is None and plain_lines is not None:
        pytest.skip("covered by the no-schema app")
    project.real_app(env=hydra_python, schema=schema, import_seconds=IMPORT_SECONDS)
    project.config("app.yaml", EXPERIMENT.format(name="app") + body)
    project.config("good.yaml", EXPERIMENT.format(name="good") + "seed: 1\n")
    result = collect(project)
    assert "Traceback" not in result.stdout.str()
    assert "version_base" not in result.stdout.str()  # Hydra's warnings are not the message
    if expected is None:
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        result.stdout.fnmatch_lines(["*<ExperimentItem app*>"])
        return
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting configs/app.yaml*", *literal(expected)])
    result.stdout.fnmatch_lines(["*<ExperimentItem good>"])  # the others still collect


def test_compose_off_collects_what_only_the_tool_could_refuse(app: Project) -> None:
    app.config("typo.yaml", EXPERIMENT.format(name="typo") + "test_sise: 0.3\n")
    off = collect(app, "--xstash-compose=off")
    assert off.ret == pytest.ExitCode.OK
    off.stdout.fnmatch_lines(["*<ExperimentItem typo>"])
    assert "composed" not in off.stdout.str()
    assert app.starts() == 0
    app.pytester.makeini("[pytest]\nxstash_compose = off\n")
    assert collect(app).ret == pytest.ExitCode.OK
    assert collect(app, "--xstash-compose").ret == pytest.ExitCode.INTERRUPTED  # flag wins
    app.pytester.makeini("[pytest]\nxstash_compose = sometimes\n")
    bad = collect(app)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*ini xstash_compose (*) = 'sometimes': use on or off*"])


def test_one_compose_process_per_tool_and_verdicts_cached(app: Project) -> None:
    for i in range(4):
        app.config(f"e{i}.yaml", EXPERIMENT.format(name=f"e{i}") + f"seed: {i}\n")
    app.config("sweep.yaml", EXPERIMENT.format(name="sw") + "xstash:\n  sweep: {seed: [1, 2, 3]}\n")
    first = collect(app)
    first.stdout.fnmatch_lines(["*composed 7 run(s) with their tools: 7 by 1 compose process*"])
    assert app.starts() == 1, "one import of the tool for all seven checks"
    second = collect(app)
    second.stdout.fnmatch_lines(["*composed 7 run(s) with their tools: 7 unchanged since*"])
    assert app.starts() == 1, "unchanged configs must not start the tool again"
    # A changed value composes again, only that config; so does a changed override.
    app.config("e0.yaml", EXPERIMENT.format(name="e0") + "seed: 10\n")
    collect(app).stdout.fnmatch_lines(["*7 run(s)*: 1 by 1 compose process*, 6 unchanged*"])
    collect(app, "--xstash-override", "trainer.epochs=1").stdout.fnmatch_lines(
        ["*7 run(s)*: 7 by 1 compose process*"]
    )
    # A change to the tool's configs invalidates every verdict of that tool...
    conf = app.root / "tools" / "app" / "app" / "conf" / "model" / "linear.yaml"
    conf.write_text(conf.read_text().replace("lr: 0.1", "lr: 0.2"))
    collect(app).stdout.fnmatch_lines(["*7 run(s)*: 7 by 1 compose process*"])
    # ...but not a file a run leaves in the tool's folder (a log of a cwd-relative logger).
    (conf.parent.parent.parent.parent / "app.log").write_text("a run's log\n")
    collect(app).stdout.fnmatch_lines(["*7 run(s)*: 7 unchanged since*"])


def test_a_changed_fragment_beside_the_experiment_composes_again(app: Project) -> None:
    app.config("_common.yaml", "seed: 4\n")
    app.config("uses.yaml", EXPERIMENT.format(name="uses") + "defaults: [main, _common, _self_]\n")
    assert collect(app).ret == pytest.ExitCode.OK
    app.config("_common.yaml", "seed: ${no_such_key}\n")  # the experiment itself is unchanged
    result = collect(app)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*uses.yaml:2: interpolation at 'seed' cannot resolve (at 'seed' in the tool's config)*"]
    )


def test_collect_only_composes_only_the_paths_given(project: Project, hydra_python: str) -> None:
    project.real_app("a", env=hydra_python)
    project.real_app("b", env=hydra_python)
    project.config("x/one.yaml", "tool: a\nexperiment: one\n")
    project.config("x/two.yaml", "tool: a\nexperiment: two\nseed: 2\n")
    project.config("y/three.yaml", "tool: b\nexperiment: three\n")
    result = project.pytester.runpytest("configs/x", "--collect-only")
    result.stdout.fnmatch_lines(["*composed 2 run(s) with their tools: 2 by 1 compose process*"])
    assert (project.starts("a"), project.starts("b")) == (1, 0)
    project.pytester.runpytest("configs", "--collect-only")
    assert (project.starts("a"), project.starts("b")) == (1, 1)  # a's verdicts are cached


def test_compose_under_xdist_and_in_junit(app: Project) -> None:
    for i in range(3):
        app.config(f"e{i}.yaml", EXPERIMENT.format(name=f"e{i}") + "trainer:\n  epochs: 1\n")
    app.config("typo.yaml", EXPERIMENT.format(name="typo") + "trainer:\n  epochz: 1\n")
    result = app.pytester.runpytest_subprocess(
        "configs", "-n", "2", "--junitxml=report.xml", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*typo.yaml:4: unknown key 'trainer.epochz'*"])
    verdicts = list((app.root / "outputs" / ".xstash" / "compose").glob("*.json"))
    assert len(verdicts) == 4, "each run composed once, whichever worker got to it"
    assert not list((app.root / "outputs" / ".xstash" / "compose").glob("*.claim"))
    suite = ET.parse(app.root / "report.xml").getroot()
    errors = [case for case in suite.iter("testcase") if case.find("error") is not None]
    assert len(errors) == 1
    text = errors[0].find("error").text or ""  # type: ignore[union-attr]
    assert "typo.yaml:4: unknown key 'trainer.epochz'" in text
    assert "Did you mean 'trainer.epochs'?" in text


def test_a_tool_that_cannot_import_fails_its_experiments_collection(
    app: Project, hydra_python: str
) -> None:
    main = app.root / "tools" / "app" / "app" / "main.py"
    main.write_text(
        main.read_text().replace("import hydra\n", "import hydra\nimport nonexistent\n")
    )
    app.config("e.yaml", EXPERIMENT.format(name="e"))
    result = collect(app)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*e.yaml:1: tool 'app' could not compose this experiment: importing its entry "
            "failed: No module named 'nonexistent' (traceback in *app-*.log)",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_a_tool_whose_environment_fails_fails_collection_with_uvs_message(
    project: Project,
) -> None:
    project.real_app()  # env: uv, from its pyproject.toml
    pyproject = project.root / "tools" / "app" / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "dependencies = [", 'dependencies = ["xstash-no-such-package-anywhere==9.9", '
        )
    )
    project.config("e.yaml", EXPERIMENT.format(name="e"))
    result = collect(project)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*e.yaml:2: tool 'app' cannot compose this experiment: preparing the environment of "
            "tool 'app' failed: uv sync exited with 1",
            "*uv says:*",
            "*xstash-no-such-package-anywhere*",
        ]
    )


def test_tools_that_are_not_hydra_apps_are_not_composed(project: Project) -> None:
    project.tool("plain", "import sys\nprint('hi')\n", env="system", deps=None)
    project.config("p.yaml", "tool: plain\nexperiment: p\nanything: 1\n")
    result = collect(project)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*xstash: tool 'plain' is not composed at collection: no @hydra.main in src/main.py"]
    )


def test_collections_with_a_cold_cache_never_crash(project: Project, hydra_python: str) -> None:
    """Regression: composing used worker threads that touched lazy global state (sysconfig)
    and crashed now and then with a plugin traceback."""
    for name in ("a", "b", "c"):
        project.real_app(name, env=hydra_python)
        project.config(f"{name}.yaml", f"tool: {name}\nexperiment: {name}\nseed: 1\n")
    cache = project.root / "outputs" / ".xstash" / "compose"
    for attempt in range(30):
        result = collect(project)
        text = result.stdout.str()
        assert result.ret == pytest.ExitCode.OK, f"attempt {attempt}:\n{text}"
        assert "Traceback" not in text and "INTERNALERROR" not in text
        assert "composed 3 run(s) with their tools: 3 by 3 compose process(es)" in text
        for verdict in cache.glob("*.json"):
            verdict.unlink()
    assert [project.starts(n) for n in "abc"] == [30, 30, 30]


def test_a_shared_compose_config_is_never_seen_half_written(tmp_path: Path) -> None:
    """Configs with the same tool view share one compose folder, across xdist workers: a
    compose process reading it while another worker rewrites it must see the whole file."""
    from xstash_plugin.run.rundir import CONFIG_DIR, CONFIG_NAME, write_tool_config

    payload = {"defaults": ["train", "_self_"], "notes": "x" * 20000}
    path = write_tool_config(tmp_path, payload) / f"{CONFIG_NAME}.yaml"
    assert path.parent.name == CONFIG_DIR
    whole = len(path.read_bytes())
    stop = threading.Event()
    seen: set[int] = set()

    def reader() -> None:
        while not stop.is_set():
            seen.add(len(path.read_bytes()))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(300):
            write_tool_config(tmp_path, payload)
    finally:
        stop.set()
        thread.join()
    assert seen == {whole}
