"""Collection is validation: every bad experiment file fails its own collection with
``file:line: what`` and ``fix: how``, while the good files beside it still collect.

Most tests here only collect (``--collect-only``) with a tool that never runs, so they are fast;
the few that run an experiment use a real Hydra tool on the session's hydra python.
"""

from __future__ import annotations

import pytest
from helpers import Project, error_messages

# A tool that is never started by collection-only tests (and is cheap when it is).
PLAIN_MAIN = "print('ran')\n"

GOOD = """\
tool: trainer
experiment: good
params: {lr: 0.1}
"""


@pytest.fixture
def repo(project: Project) -> Project:
    """A repository with the tool 'trainer' and ``configs/good.yaml`` (experiment 'good')."""
    project.tool("trainer", PLAIN_MAIN, env="system", deps=None)
    project.config("good.yaml", GOOD)
    return project


def collect(project: Project, *args: str) -> pytest.RunResult:
    return project.pytester.runpytest("--collect-only", "-q", *args)


def collected(result: pytest.RunResult) -> list[str]:
    """The node ids ``--collect-only -q`` listed."""
    return [line for line in result.outlines if "::" in line and " " not in line]


def assert_rejected(
    result: pytest.RunResult,
    config: str,
    line: int,
    *what: str,
    fix: str,
    good: tuple[str, ...] = ("configs/good.yaml::good",),
) -> None:
    """``configs/<config>`` failed collection at ``line`` with ``what`` and ``fix`` in the
    message; the ``good`` items were still collected; the session exits non-zero."""
    messages = error_messages(result, config)
    assert any(
        at == line and all(w in text for w in what) and fix in hint for at, text, hint in messages
    ), f"no message at line {line} with {what} / fix {fix!r} in {messages}"
    for node in good:
        assert node in collected(result), f"{node} not collected:\n{result.stdout.str()}"
    assert "Traceback" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED


def assert_collects(result: pytest.RunResult, *nodes: str) -> None:
    assert collected(result) == list(nodes), result.stdout.str()
    assert "ERROR collecting" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.OK


# 1. YAML syntax ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        pytest.param(
            "tool: trainer\nexperiment: bad\nparams:\n  lr: a: b\n",
            4,
            "mapping values are not allowed",
            id="colon-in-value",
        ),
        pytest.param(
            "tool: trainer\nexperiment: bad\nparams:\n\tlr: 1\n",
            4,
            "cannot start any token",
            id="tab-indent",
        ),
        pytest.param(
            "tool: trainer\nexperiment: bad\nlrs: [0.1, 0.2\nseed: 3\n",
            4,
            "flow sequence started at line 3",
            id="unclosed-bracket",
        ),
        pytest.param(
            "tool: trainer\nexperiment: bad\nparams:\n  lr: 1\n seed: 2\n",
            5,
            "did not find expected key",
            id="bad-dedent",
        ),
    ],
)
def test_yaml_syntax_error_reports_its_line(repo: Project, text: str, line: int, what: str) -> None:
    repo.config("bad.yaml", text)
    result = collect(repo)
    assert_rejected(
        result, "bad.yaml", line, "YAML syntax error", what, fix="correct the YAML syntax"
    )


def test_non_utf8_file_is_rejected(repo: Project) -> None:
    (repo.root / "configs" / "bad.yaml").write_bytes(b"tool: trainer\nexperiment: bad\nx: \xff\n")
    result = collect(repo)
    assert_rejected(result, "bad.yaml", 3, "not valid UTF-8", fix="save the file as UTF-8")


# 2. top level -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "what", "fix"),
    [
        pytest.param(
            "- tool: trainer\n- experiment: bad\n",
            "the top level must be a mapping, not a list",
            "write 'key: value' lines",
            id="list",
        ),
        pytest.param(
            "just a sentence\n",
            "the top level must be a mapping, not a string",
            "write 'key: value' lines",
            id="scalar",
        ),
        pytest.param("42\n", "not a number", "write 'key: value' lines", id="number"),
        pytest.param("", "the file is empty", "write at least 'tool: <name>'", id="empty"),
        pytest.param(
            "# only a comment\n", "the file is empty", "'experiment: <name>'", id="comment-only"
        ),
    ],
)
def test_top_level_must_be_a_mapping(repo: Project, text: str, what: str, fix: str) -> None:
    repo.config("bad.yaml", text)
    assert_rejected(collect(repo), "bad.yaml", 1, what, fix=fix)


# 3. tool ----------------------------------------------------------------------------------


def test_missing_tool(repo: Project) -> None:
    repo.config("bad.yaml", "experiment: bad\nparams: {lr: 1}\n")
    result = collect(repo)
    assert_rejected(result, "bad.yaml", 1, "missing required key 'tool'", fix="registered: trainer")
    assert_rejected(result, "bad.yaml", 1, "missing required key 'tool'", fix="add 'tool: <name>'")


def test_unknown_tool_suggests_the_close_name(repo: Project) -> None:
    repo.config("bad.yaml", "experiment: bad\ntool: trainr\n")
    assert_rejected(
        collect(repo),
        "bad.yaml",
        2,
        "Tool not found in meta config",
        "unknown tool 'trainr'",
        "Did you mean 'trainer'?",
        fix="register it under 'tools:'",
    )


def test_unknown_tool_without_close_name_lists_registered(repo: Project) -> None:
    repo.config("bad.yaml", "tool: zzz\nexperiment: bad\n")
    result = collect(repo)
    assert_rejected(
        result, "bad.yaml", 1, "Tool not found in meta config", "registered: trainer", fix="tools:"
    )
    assert "Did you mean" not in result.stdout.str()


def test_tool_must_be_a_name(repo: Project) -> None:
    repo.config("bad.yaml", "experiment: bad\ntool: [trainer]\n")
    assert_rejected(
        collect(repo), "bad.yaml", 2, "'tool' must be a tool name", fix="registered: trainer"
    )


def test_misconfigured_tool_fails_only_its_experiments(repo: Project) -> None:
    repo.tool("broken", PLAIN_MAIN, env="system", deps=None, extra="entrypiont: src/main.py")
    repo.config("uses_broken.yaml", "experiment: uses_broken\ntool: broken\n")
    result = collect(repo)
    # meta.yaml: tools:(1) trainer:(2) path(3) entrypoint(4) env(5) broken:(6) path(7)
    # entrypoint(8) env(9) entrypiont(10)
    assert_rejected(
        result,
        "uses_broken.yaml",
        2,
        "tool 'broken' is misconfigured in meta.yaml",
        fix="configs/meta.yaml:10: unknown key 'entrypiont' in tool 'broken'. "
        "Did you mean 'entrypoint'?",
    )


# 4. experiment name -----------------------------------------------------------------------


def test_missing_experiment_name(repo: Project) -> None:
    repo.config("bad.yaml", "tool: trainer\nparams: {lr: 1}\n")
    assert_rejected(
        collect(repo),
        "bad.yaml",
        1,
        "missing required key 'experiment'",
        fix="add 'experiment: bad'",
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("runs/first", id="slash"),
        pytest.param("my experiment", id="space"),
        pytest.param("x" * 500, id="500-chars"),
        pytest.param("a::b", id="double-colon"),
        pytest.param("-leading-dash", id="leading-dash"),
    ],
)
def test_experiment_name_must_be_plain(repo: Project, name: str) -> None:
    repo.config("bad.yaml", f"tool: trainer\nexperiment: '{name}'\n")
    assert_rejected(
        collect(repo),
        "bad.yaml",
        2,
        f"experiment name '{name}' is not a plain name",
        fix="use 1-100 characters from letters, digits",
    )


# 5. orchestrator field types --------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "line", "what", "fix"),
    [
        pytest.param(
            "description: 42", 3, "'description' must be a string", "quote it", id="description"
        ),
        pytest.param(
            "tags: paper",
            3,
            "'tags' must be a list of strings",
            "write: tags: [paper]",
            id="tags-scalar",
        ),
        pytest.param(
            "tags: {paper: 1}",
            3,
            "'tags' must be a list of strings",
            "write: tags: [paper, fig1]",
            id="tags-mapping",
        ),
        pytest.param(
            "tags:\n  - paper\n  - 3", 5, "tag 3 is not a string", "quote it", id="tag-number"
        ),
        pytest.param(
            "tags: [paper, skip]",
            3,
            "tag 'skip' is reserved by pytest",
            "choose another name, e.g. 'skip_'",
            id="tag-reserved",
        ),
        pytest.param(
            "tags: ['fig 1']",
            3,
            "tag 'fig 1' cannot be a pytest marker",
            "use letters, digits",
            id="tag-with-space",
        ),
        pytest.param(
            "estimated_runtime: 5 minutes",
            3,
            "estimated_runtime: '5 minutes' is not a duration",
            "write a duration like '90s', '5m', '1h30m'",
            id="runtime-words",
        ),
        pytest.param(
            "estimated_runtime: -5",
            3,
            "estimated_runtime: -5 is negative",
            "write a duration like",
            id="runtime-negative",
        ),
    ],
)
def test_orchestrator_field_types(
    repo: Project, field: str, line: int, what: str, fix: str
) -> None:
    repo.config("bad.yaml", f"tool: trainer\nexperiment: bad\n{field}\n")
    assert_rejected(collect(repo), "bad.yaml", line, what, fix=fix)


@pytest.mark.parametrize("runtime", ["1h30m", "90s", "45", "'2d'", "0.5"])
def test_estimated_runtime_accepts_durations(repo: Project, runtime: str) -> None:
    repo.config(
        "timed.yaml",
        f"tool: trainer\nexperiment: timed\nestimated_runtime: {runtime}\n"
        "description: a timed run\ntags: [paper, fig-1]\n",
    )
    # Longest first: the one with an estimate goes before the one without.
    assert_collects(collect(repo), "configs/timed.yaml::timed", "configs/good.yaml::good")


def test_every_problem_of_a_file_is_reported_at_once(repo: Project) -> None:
    repo.config(
        "bad.yaml",
        """\
        tool: trainer
        experiment: bad
        description: 1
        tags: [skip]
        estimated_runtime: soon
        xstash: {timout: 5}
        """,
    )
    result = collect(repo)
    assert [line for line, _, _ in error_messages(result, "bad.yaml")] == [3, 4, 5, 6]
    assert_rejected(result, "bad.yaml", 6, "unknown key 'xstash.timout'", fix="supported keys")


# 6. the xstash: block ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "line", "what", "fix"),
    [
        pytest.param(
            "xstash:\n  timout: 60",
            4,
            ("unknown key 'xstash.timout'", "Did you mean 'timeout'?"),
            "supported keys",
            id="typo-suggests",
        ),
        pytest.param(
            "xstash:\n  bogus: 1",
            4,
            ("unknown key 'xstash.bogus'",),
            "supported keys",
            id="unknown",
        ),
        pytest.param(
            "xstash:\n  launcher: kubernetes",
            4,
            ("launcher 'kubernetes' is not one of local, slurm",),
            "write launcher: local or launcher: slurm",
            id="bad-launcher",
        ),
        pytest.param(
            "xstash: [timeout]", 3, ("'xstash' must be a mapping",), "xstash: {", id="not-mapping"
        ),
    ],
)
def test_xstash_block_keys(
    repo: Project, block: str, line: int, what: tuple[str, ...], fix: str
) -> None:
    repo.config("bad.yaml", f"tool: trainer\nexperiment: bad\n{block}\n")
    result = collect(repo)
    assert_rejected(result, "bad.yaml", line, *what, fix=fix)


# 7. interpolations ------------------------------------------------------------------------


def test_missing_interpolation_key_is_an_error_at_its_line(repo: Project) -> None:
    repo.config(
        "bad.yaml",
        """\
        tool: trainer
        experiment: bad
        params:
          lr: 0.1
        optimizer:
          lr: ${params.lr}
          momentum: ${params.missing}
        """,
    )
    result = collect(repo)
    assert_rejected(
        result,
        "bad.yaml",
        7,
        "interpolation '${params.missing}' at 'optimizer.momentum' cannot resolve",
        "Interpolation key 'params.missing' not found",
        fix="point it at a key that exists in this config",
    )
    assert [line for line, _, _ in error_messages(result, "bad.yaml")] == [7]
    assert "full_key" not in result.stdout.str()  # OmegaConf's internals stay out


def test_missing_interpolation_in_a_list_item(repo: Project) -> None:
    repo.config(
        "bad.yaml",
        "tool: trainer\nexperiment: bad\nseeds:\n  - 1\n  - ${nothing}\n",
    )
    assert_rejected(
        collect(repo),
        "bad.yaml",
        5,
        "interpolation '${nothing}' at 'seeds.1' cannot resolve",
        fix="point it at a key",
    )


def test_resolvers_and_valid_references_are_not_errors(repo: Project) -> None:
    repo.config(
        "resolvers.yaml",
        """\
        tool: trainer
        experiment: resolvers
        params: {lr: 0.1}
        year: ${now:%Y}
        job: ${hydra:job.name}
        home: ${oc.env:HOME}
        lr: ${params.lr}
        label: "lr=${params.lr} in ${now:%Y-%m-%d}"
        custom: ${my_resolver:1}
        escaped: \\${not.an.interpolation}
        hydra:
          run: {dir: "${hydra:runtime.cwd}/${missing.in.hydra}"}
        """,
    )
    assert_collects(collect(repo), "configs/good.yaml::good", "configs/resolvers.yaml::resolvers")


def test_missing_key_is_not_an_error_when_the_config_composes(repo: Project) -> None:
    repo.config(
        "composed.yaml",
        """\
        defaults:
          - model: small
          - _self_
        tool: trainer
        experiment: composed
        lr: ${model.lr}
        """,
    )
    assert_collects(collect(repo), "configs/composed.yaml::composed", "configs/good.yaml::good")


def test_dates_do_not_stop_the_interpolation_check(repo: Project) -> None:
    # YAML makes 2024-01-01 a date, which OmegaConf cannot hold; the tool reads it as a string.
    repo.config(
        "dated.yaml",
        "tool: trainer\nexperiment: dated\nstart: 2024-01-01\nlabel: run-${start}\n",
    )
    assert_collects(collect(repo), "configs/dated.yaml::dated", "configs/good.yaml::good")


def test_config_omegaconf_cannot_hold_is_an_error(repo: Project) -> None:
    repo.config("bad.yaml", "tool: trainer\nexperiment: bad\n~: 1\nx: ${params.lr}\n")
    assert_rejected(
        collect(repo),
        "bad.yaml",
        1,
        "config cannot be loaded by OmegaConf",
        "Incompatible key type",
        fix="keys must be strings or numbers",
    )


@pytest.mark.parametrize(
    ("text", "line", "where"),
    [
        pytest.param("x: ${foo\n", 3, "x", id="unclosed"),
        pytest.param("params:\n  path: data/${foo.bar\n", 4, "params.path", id="nested"),
        pytest.param("defaults: [_self_]\nx: ${foo\n", 4, "x", id="even-when-composing"),
        pytest.param(
            "hydra:\n  run: {dir: 'out/${now:%Y'}\n", 4, "hydra.run.dir", id="hydra-block"
        ),
    ],
)
def test_malformed_interpolation_is_an_error_at_its_line(
    repo: Project, text: str, line: int, where: str
) -> None:
    repo.config("bad.yaml", "tool: trainer\nexperiment: bad\n" + text)
    result = collect(repo)
    assert_rejected(
        result,
        "bad.yaml",
        line,
        "interpolation '",
        f"at '{where}' is malformed",
        fix="write interpolations as ${key.path} or ${resolver:args}",
    )
    assert "full_key" not in result.stdout.str()


def test_malformed_and_missing_interpolations_are_both_reported(repo: Project) -> None:
    repo.config(
        "bad.yaml",
        "tool: trainer\nexperiment: bad\na: ${foo\nb: ${nope}\n",
    )
    result = collect(repo)
    assert [
        (line, "malformed" in what) for line, what, _ in error_messages(result, "bad.yaml")
    ] == [
        (3, True),
        (4, False),
    ]
    assert_rejected(result, "bad.yaml", 4, "'${nope}' at 'b' cannot resolve", fix="point it at")


# 8. duplicate keys ------------------------------------------------------------------------


def test_duplicate_top_level_key(repo: Project) -> None:
    repo.config("bad.yaml", "tool: trainer\nexperiment: bad\nlr: 0.1\nseed: 1\nlr: 0.2\n")
    assert_rejected(
        collect(repo),
        "bad.yaml",
        5,
        "duplicate key 'lr' (first at line 3)",
        fix="YAML keeps only the last value: remove one of them",
    )


def test_duplicate_nested_key(repo: Project) -> None:
    repo.config(
        "bad.yaml",
        "tool: trainer\nexperiment: bad\nparams:\n  lr: 0.1\n  seed: 1\n  lr: 0.2\n",
    )
    assert_rejected(
        collect(repo),
        "bad.yaml",
        6,
        "duplicate key 'params.lr' (first at line 4)",
        fix="remove one of them",
    )


def test_duplicate_orchestrator_key(repo: Project) -> None:
    repo.config("bad.yaml", "tool: trainer\nexperiment: bad\nexperiment: other\n")
    assert_rejected(
        collect(repo),
        "bad.yaml",
        3,
        "duplicate key 'experiment' (first at line 2)",
        fix="remove one of them",
    )


# 9. the same experiment name in two files -------------------------------------------------


def test_same_experiment_name_in_two_files_warns(repo: Project) -> None:
    repo.config("a.yaml", "tool: trainer\nexperiment: same\n")
    repo.config("sub/b.yaml", "tool: trainer\nexperiment: same\n")
    result = collect(repo)
    assert_collects(
        result, "configs/a.yaml::same", "configs/good.yaml::good", "configs/sub/b.yaml::same"
    )
    result.stdout.fnmatch_lines(["*warnings summary*", "*XstashWarning: experiment name 'same'*"])
    (warning,) = [line for line in result.outlines if "XstashWarning" in line]
    assert "configs/a.yaml" in warning
    assert "configs/sub/b.yaml" in warning


# 10. --continue-on-collection-errors runs the good ones ------------------------------------


def test_continue_on_collection_errors_runs_the_good_ones(
    project: Project, hydra_python: str
) -> None:
    project.tool("echo", env=hydra_python, deps=None)
    project.config("good.yaml", "tool: echo\nexperiment: good\nmessage: hi\n")
    project.config("bad.yaml", "tool: echo\nexperiment: bad\nmessage: ${nope}\n")
    result = project.pytester.runpytest("--continue-on-collection-errors", "-v")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "configs/good.yaml::good PASSED*",
            "*ERROR collecting configs/bad.yaml*",
            "*/configs/bad.yaml:3: interpolation '${nope}' at 'message' cannot resolve*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert len(project.run_dirs("good")) == 1
    assert project.run_dirs("bad") == []


def test_without_continue_nothing_runs(project: Project, hydra_python: str) -> None:
    project.tool("echo", env=hydra_python, deps=None)
    project.config("good.yaml", "tool: echo\nexperiment: good\n")
    project.config("bad.yaml", "tool: echo\n")
    result = project.pytester.runpytest()
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert project.run_dirs("good") == []


# 11. discovery ----------------------------------------------------------------------------


def test_underscore_files_and_folders_are_not_experiments(repo: Project) -> None:
    repo.config("_shared.yaml", "lr: ${not.an.experiment\n")
    repo.config("_fragments/model.yaml", "- not a mapping\n")
    repo.config("model/_base.yaml", "size: 1\n")
    repo.config("model/x.yaml", "tool: trainer\nexperiment: x\n")
    assert_collects(collect(repo), "configs/good.yaml::good", "configs/model/x.yaml::x")


def test_yaml_outside_a_configs_root_is_ignored(repo: Project) -> None:
    repo.write("other/x.yaml", "tool: trainer\nexperiment: x\n")
    repo.write("other/broken.yaml", "[unclosed\n")
    repo.write("tools/trainer/conf/config.yaml", "lr: ${missing}\n")
    assert_collects(collect(repo), "configs/good.yaml::good")


def test_meta_yaml_is_not_an_experiment_and_yml_is(repo: Project) -> None:
    repo.config("short.yml", "tool: trainer\nexperiment: short\n")
    repo.config("notes.txt", "tool: trainer\n")
    assert_collects(collect(repo), "configs/good.yaml::good", "configs/short.yml::short")


def test_nested_folder_ids_and_path_selection(repo: Project) -> None:
    repo.config("sub/x.yaml", "tool: trainer\nexperiment: name\n")
    repo.config("sub/deeper/y.yaml", "tool: trainer\nexperiment: y\n")
    repo.config("bad.yaml", "tool: nope\n")  # outside the selection: never looked at
    assert_collects(
        collect(repo, "configs/sub"),
        "configs/sub/deeper/y.yaml::y",
        "configs/sub/x.yaml::name",
    )
    assert_collects(collect(repo, "configs/sub/x.yaml"), "configs/sub/x.yaml::name")
    assert_collects(collect(repo, "configs/good.yaml"), "configs/good.yaml::good")
    assert_collects(collect(repo, "configs/sub/x.yaml::name"), "configs/sub/x.yaml::name")


def test_selecting_a_bad_file_reports_it(repo: Project) -> None:
    repo.config("bad.yaml", "tool: trainer\nexperiment: bad\ntags: skip\n")
    result = collect(repo, "configs/bad.yaml", "configs/good.yaml")
    assert_rejected(result, "bad.yaml", 3, "'tags' must be a list of strings", fix="tags: [skip]")


# 12. tags and tools as markers, -k ---------------------------------------------------------


@pytest.fixture
def tagged(repo: Project) -> Project:
    repo.tool("eval-tool", PLAIN_MAIN, env="system", deps=None)
    repo.config("fig1.yaml", "tool: trainer\nexperiment: fig1\ntags: [paper, fig-1]\n")
    repo.config("fig2.yaml", "tool: trainer\nexperiment: fig2\ntags: [paper, slow]\n")
    repo.config("eval.yaml", "tool: eval-tool\nexperiment: evaluate\ntags: [slow]\n")
    return repo


@pytest.mark.parametrize(
    ("args", "selected"),
    [
        pytest.param(("-m", "paper and not slow"), ["configs/fig1.yaml::fig1"], id="tags"),
        pytest.param(
            ("-m", "slow"), ["configs/eval.yaml::evaluate", "configs/fig2.yaml::fig2"], id="slow"
        ),
        pytest.param(("-m", "eval-tool"), ["configs/eval.yaml::evaluate"], id="tool-name"),
        pytest.param(
            ("-m", "trainer and not paper"), ["configs/good.yaml::good"], id="tool-and-tag"
        ),
        pytest.param(("-m", "fig-1"), ["configs/fig1.yaml::fig1"], id="dashed-tag"),
        pytest.param(("-k", "fig2"), ["configs/fig2.yaml::fig2"], id="k-name"),
        pytest.param(
            ("-k", "fig1 or fig2 or evaluate"),
            ["configs/eval.yaml::evaluate", "configs/fig1.yaml::fig1", "configs/fig2.yaml::fig2"],
            id="k-expression",
        ),
    ],
)
def test_markers_and_keywords_select(
    tagged: Project, args: tuple[str, ...], selected: list[str]
) -> None:
    result = collect(tagged, "--strict-markers", *args)
    assert_collects(result, *selected)
    result.stdout.fnmatch_lines(
        [f"{len(selected)}/4 tests collected ({4 - len(selected)} deselected)*"]
    )


def test_strict_markers_run_selected_by_tag(tagged: Project) -> None:
    result = tagged.pytester.runpytest("--strict-markers", "-m", "paper")
    result.assert_outcomes(passed=2, deselected=2)
    assert result.ret == pytest.ExitCode.OK


# 13. under xdist --------------------------------------------------------------------------


@pytest.fixture
def xdist_repo(project: Project, hydra_python: str) -> Project:
    project.tool("echo", env=hydra_python, deps=None)
    project.config("one.yaml", "tool: echo\nexperiment: one\n")
    project.config("two.yaml", "tool: echo\nexperiment: two\n")
    project.config("bad.yaml", "tool: ecko\nexperiment: bad\n")
    return project


def test_xdist_continue_on_collection_errors(xdist_repo: Project) -> None:
    result = xdist_repo.pytester.runpytest_subprocess(
        "-n", "2", "--continue-on-collection-errors", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting configs/bad.yaml*",
            "*/configs/bad.yaml:1: Tool not found in meta config*Did you mean 'echo'?",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert len(xdist_repo.run_dirs("one")) == 1
    assert len(xdist_repo.run_dirs("two")) == 1


def test_xdist_collection_error_fails_the_session(xdist_repo: Project) -> None:
    # Without the flag the session must fail. (Whether the good ones still run is xdist's
    # choice, not xstash's: xdist replaces pytest_runtestloop, where pytest's "stop after
    # collection errors" check lives - pytest-dev/pytest#15028 - so they do run.)
    result = xdist_repo.pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    assert result.ret not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting configs/bad.yaml*",
            "*/configs/bad.yaml:1: Tool not found in meta config*Did you mean 'echo'?",
            "  fix: register it under 'tools:'*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
