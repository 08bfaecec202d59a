"""meta.yaml, the tool registry: every problem names meta.yaml and its line, never a traceback.

A problem with the file as a whole fails every experiment of the configs root; a problem with one
tool fails only the experiments using that tool. The registry and duration parsing are plain
functions, so most cases are also checked directly, without a pytest run.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from helpers import Project

from xstash_plugin.config.durations import format_duration, parse_duration
from xstash_plugin.config.registry import Registry, load_registry

PLAIN_MAIN = "print('ran')\n"


# --- through pytest: what a person sees --------------------------------------------------


def make_repo(project: Project, meta: str) -> Project:
    """A repository whose meta.yaml is ``meta``, with tool folders 'good' and 'mod' and an
    experiment for each of the tools 'good' and 't'."""
    for folder in ("good", "t"):
        project.write(f"tools/{folder}/src/main.py", PLAIN_MAIN)
    project.write("tools/mod/pkg/__init__.py", "")
    project.write("tools/mod/pkg/main.py", PLAIN_MAIN)
    project.write("configs/meta.yaml", meta)
    project.config("good.yaml", "tool: good\nexperiment: good\n")
    project.config("uses_t.yaml", "tool: t\nexperiment: uses_t\n")
    return project


GOOD_TOOL = "  good:\n    path: tools/good\n    entrypoint: src/main.py\n    env: system\n"


def fix_of(result: pytest.RunResult, config: str) -> str:
    """The message (``what`` and ``fix``) of the collection error of ``configs/<config>``."""
    out = result.stdout.str()
    header = re.search(rf"^_+ ERROR collecting configs/{re.escape(config)} _+$", out, re.M)
    assert header, f"no collection error for configs/{config} in:\n{out}"
    rest = out[header.end() :]
    end = re.search(r"^(_{3,} |={3,} )", rest, re.M)
    return rest[: end.start()] if end else rest


def assert_meta_error(
    result: pytest.RunResult, configs: tuple[str, ...], line: int, *what: str
) -> None:
    """Each of ``configs`` failed collection, pointing at ``configs/meta.yaml:<line>`` with
    ``what``; no traceback; the session exits non-zero."""
    out = result.stdout.str()
    assert "Traceback" not in out
    for config in configs:
        section = fix_of(result, config)
        found = re.search(rf"^ +\S*/configs/meta\.yaml:{line}: (.*)\n +fix: ", section, re.M)
        assert found, f"no meta.yaml:{line} message for {config} in:\n{section}"
        for word in what:
            assert word in found[1], f"{word!r} not in {found[1]!r}"
    assert result.ret == pytest.ExitCode.INTERRUPTED


@pytest.mark.parametrize(
    ("meta", "line", "what"),
    [
        pytest.param("", 1, ("meta.yaml is empty",), id="empty"),
        pytest.param("# nothing yet\n", 1, ("meta.yaml is empty",), id="comment-only"),
        pytest.param("- good\n- t\n", 1, ("must be a mapping with a 'tools' key",), id="list"),
        pytest.param("tools\n", 1, ("must be a mapping with a 'tools' key",), id="scalar"),
        pytest.param("{}\n", 1, ("meta.yaml has no 'tools' key",), id="no-tools-key"),
        pytest.param(
            "# registry\ntoolz:\n" + GOOD_TOOL,
            2,
            ("unknown top-level key 'toolz'", "Did you mean 'tools'?"),
            id="typo-top-level",
        ),
        pytest.param(
            "tools:\n" + GOOD_TOOL + "defaults:\n  env: uv\n",
            6,
            ("unknown top-level key 'defaults'",),
            id="unknown-top-level",
        ),
        pytest.param("tools:\n", 1, ("'tools' must be a mapping",), id="tools-null"),
        pytest.param("tools: [good, t]\n", 1, ("'tools' must be a mapping",), id="tools-list"),
        pytest.param(
            "tools:\n" + GOOD_TOOL + "   t: {}\n",
            6,
            ("YAML syntax error", "block mapping started at line 2"),
            id="yaml-syntax",
        ),
        pytest.param(
            "tools:\n" + GOOD_TOOL + GOOD_TOOL,
            6,
            ("tool 'good' is registered twice (first at line 2)",),
            id="duplicate-tool",
        ),
    ],
)
def test_broken_meta_fails_every_experiment(
    project: Project, meta: str, line: int, what: tuple[str, ...]
) -> None:
    make_repo(project, meta)
    result = project.pytester.runpytest("--collect-only", "-q")
    assert_meta_error(result, ("good.yaml", "uses_t.yaml"), line, *what)
    assert "the tool registry is broken" in fix_of(result, "good.yaml")
    assert "correct meta.yaml first" in fix_of(result, "good.yaml")


def test_broken_meta_fails_only_its_own_configs_root(project: Project) -> None:
    make_repo(project, "")
    project.write("lab2/tools/x/main.py", PLAIN_MAIN)
    project.write(
        "lab2/configs/meta.yaml", "tools:\n  x: {path: tools/x, entrypoint: main.py, env: system}\n"
    )
    project.write("lab2/configs/exp.yaml", "tool: x\nexperiment: exp\n")
    result = project.pytester.runpytest("--collect-only", "-q")
    assert "lab2/configs/exp.yaml::exp" in result.outlines
    assert_meta_error(result, ("good.yaml", "uses_t.yaml"), 1, "meta.yaml is empty")


def tool_t(body: str) -> str:
    """meta.yaml with the good tool and a tool 't' whose entry is ``body`` (indented 4)."""
    lines = "".join(f"    {line}\n" for line in body.strip().splitlines())
    return "tools:\n" + GOOD_TOOL + "  t:\n" + lines


# meta.yaml lines of tool_t(...): tools:(1) good:(2-5) t:(6) then the body from line 7.
@pytest.mark.parametrize(
    ("meta", "line", "what"),
    [
        pytest.param(
            "tools:\n" + GOOD_TOOL + "  t: tools/t\n",
            6,
            ("tool 't' must be a mapping with 'path' and 'entrypoint'",),
            id="not-a-mapping",
        ),
        pytest.param(
            tool_t("path: tools/t\nentrypiont: src/main.py\nenv: system"),
            8,
            ("unknown key 'entrypiont' in tool 't'", "Did you mean 'entrypoint'?"),
            id="unknown-key",
        ),
        pytest.param(
            tool_t("entrypoint: src/main.py\nenv: system"),
            6,
            ("tool 't' has no 'path'",),
            id="missing-path",
        ),
        pytest.param(
            tool_t("path: tools/t\nenv: system"),
            6,
            ("tool 't' has no 'entrypoint'",),
            id="missing-entrypoint",
        ),
        pytest.param(
            tool_t("path: 42\nentrypoint: src/main.py"),
            7,
            ("'path' of tool 't' must be a non-empty string",),
            id="path-not-string",
        ),
        pytest.param(
            tool_t("path: tools/nope\nentrypoint: src/main.py"),
            7,
            ("path 'tools/nope' of tool 't' does not exist",),
            id="path-missing",
        ),
        pytest.param(
            tool_t("path: ../outside\nentrypoint: src/main.py"),
            7,
            ("path '../outside' of tool 't' is outside the repository",),
            id="path-dotdot",
        ),
        pytest.param(
            tool_t("path: tools/../../outside\nentrypoint: src/main.py"),
            7,
            ("is outside the repository",),
            id="path-dotdot-inside",
        ),
        pytest.param(
            tool_t("path: tools/t\nentrypoint: src/nope.py"),
            8,
            ("entrypoint file 'src/nope.py' does not exist",),
            id="entrypoint-missing",
        ),
        pytest.param(
            tool_t("path: tools/t\nentrypoint: src.main"),
            8,
            ("entrypoint file 'src.main' does not exist", "for a module write '-m src.main'"),
            id="entrypoint-module-without-m",
        ),
        pytest.param(
            tool_t("path: tools/mod\nentrypoint: -m pkg.nope"),
            8,
            ("entrypoint module 'pkg.nope' not found",),
            id="module-missing",
        ),
        pytest.param(
            tool_t("path: tools/mod\nentrypoint: -m"),
            8,
            ("names no valid module",),
            id="module-empty",
        ),
        pytest.param(
            tool_t("path: tools/t\nentrypoint: src/main.py\nenv: nonsense"),
            9,
            ("env 'nonsense' is neither 'uv', 'system' nor an existing python",),
            id="env-nonsense",
        ),
        pytest.param(
            tool_t("path: tools/t\nentrypoint: src/main.py\npass_experiment: maybe"),
            9,
            ("pass_experiment must be true/false",),
            id="pass-experiment",
        ),
    ],
)
def test_broken_tool_fails_only_its_experiments(
    project: Project, meta: str, line: int, what: tuple[str, ...]
) -> None:
    outside = project.root.parent / "outside"
    (outside / "src").mkdir(parents=True, exist_ok=True)
    (outside / "src" / "main.py").write_text(PLAIN_MAIN)
    make_repo(project, meta)
    result = project.pytester.runpytest("--collect-only", "-q")
    assert_meta_error(result, ("uses_t.yaml",), line, *what)
    assert "tool 't' is misconfigured in meta.yaml" in fix_of(result, "uses_t.yaml")
    assert "configs/good.yaml::good" in result.outlines


@pytest.mark.parametrize("how", ["absolute", "symlink"])
def test_tool_path_outside_the_repository(
    project: Project, tmp_path_factory: pytest.TempPathFactory, how: str
) -> None:
    outside = tmp_path_factory.mktemp("outside-tool")
    (outside / "src").mkdir()
    (outside / "src" / "main.py").write_text(PLAIN_MAIN)
    if how == "absolute":
        path = str(outside)
    else:
        (project.root / "tools").mkdir(exist_ok=True)
        os.symlink(outside, project.root / "tools" / "link")
        path = "tools/link"
    make_repo(project, tool_t(f"path: {path}\nentrypoint: src/main.py\nenv: system"))
    result = project.pytester.runpytest("--collect-only", "-q")
    assert_meta_error(result, ("uses_t.yaml",), 7, f"path '{path}' of tool 't' is outside")
    assert "configs/good.yaml::good" in result.outlines


def test_entrypoint_symlink_outside_the_repository(
    project: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside-main") / "main.py"
    outside.write_text(PLAIN_MAIN)
    make_repo(project, tool_t("path: tools/t\nentrypoint: src/linked.py\nenv: system"))
    os.symlink(outside, project.root / "tools" / "t" / "src" / "linked.py")
    result = project.pytester.runpytest("--collect-only", "-q")
    assert_meta_error(result, ("uses_t.yaml",), 8, "resolves outside the repository")


@pytest.mark.parametrize(
    "name",
    [pytest.param("skip", id="reserved"), pytest.param("a b", id="space")],
)
def test_tool_name_must_be_a_usable_marker(project: Project, name: str) -> None:
    # A tool called 'skip' would mark (and so silently skip) every experiment using it.
    meta = "tools:\n" + GOOD_TOOL + f"  '{name}':\n    path: tools/t\n    entrypoint: src/main.py\n"
    make_repo(project, meta)
    project.config("uses_t.yaml", f"tool: '{name}'\nexperiment: uses_t\n")
    result = project.pytester.runpytest("--collect-only", "-q")
    assert_meta_error(result, ("uses_t.yaml",), 6, f"tool name '{name}'")
    assert "configs/good.yaml::good" in result.outlines


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("env: system", id="env-system"),
        pytest.param("env: uv", id="env-uv"),
        pytest.param(f"env: {sys.executable}", id="env-python-path"),
        pytest.param("", id="env-default"),
        pytest.param("description: the trainer\npython: '3.11'", id="description-python"),
        pytest.param("pass_experiment: true", id="pass-experiment"),
    ],
)
def test_good_tool_entries_are_accepted(project: Project, extra: str) -> None:
    make_repo(project, tool_t("path: tools/t\nentrypoint: src/main.py\n" + extra))
    result = project.pytester.runpytest("--collect-only", "-q")
    listed = [line for line in result.outlines if not line.startswith("xstash:")]
    assert listed[:2] == ["configs/good.yaml::good", "configs/uses_t.yaml::uses_t"]
    assert result.ret == pytest.ExitCode.OK


def test_module_style_entrypoint_is_accepted(project: Project) -> None:
    make_repo(project, tool_t("path: tools/mod\nentrypoint: '-m pkg.main'\nenv: system"))
    result = project.pytester.runpytest("--collect-only", "-q")
    assert "configs/uses_t.yaml::uses_t" in result.outlines
    assert result.ret == pytest.ExitCode.OK


def test_env_python_path_relative_to_the_repository(project: Project) -> None:
    project.write("pythons/py", "#!/bin/sh\n")
    make_repo(project, tool_t("path: tools/t\nentrypoint: src/main.py\nenv: pythons/py"))
    result = project.pytester.runpytest("--collect-only", "-q")
    assert "configs/uses_t.yaml::uses_t" in result.outlines
    assert result.ret == pytest.ExitCode.OK


# --- load_registry directly ----------------------------------------------------------------


def registry_of(root: Path, meta: str) -> Registry:
    (root / "configs").mkdir(exist_ok=True)
    (root / "tools" / "t" / "src").mkdir(parents=True, exist_ok=True)
    (root / "tools" / "t" / "src" / "main.py").write_text(PLAIN_MAIN)
    (root / "tools" / "mod" / "pkg").mkdir(parents=True, exist_ok=True)
    (root / "tools" / "mod" / "pkg" / "__main__.py").write_text(PLAIN_MAIN)
    meta_path = root / "configs" / "meta.yaml"
    meta_path.write_text(meta)
    return load_registry(meta_path)


def test_load_registry_reads_tools(tmp_path: Path) -> None:
    registry = registry_of(
        tmp_path,
        "tools:\n"
        "  t:\n"
        "    path: tools/t\n"
        "    entrypoint: src/main.py --fast\n"
        "    description: a tool\n"
        "  mod:\n"
        "    path: tools/mod\n"
        "    entrypoint: -m pkg\n"
        "    env: system\n"
        "    python: 3.11\n"
        "    pass_experiment: true\n",
    )
    assert registry.error is None
    assert registry.tool_errors == {}
    assert registry.names == ["mod", "t"]
    t, mod = registry.tools["t"], registry.tools["mod"]
    assert t.path == tmp_path / "tools" / "t"
    assert t.entrypoint == ("src/main.py", "--fast")
    assert not t.module_style
    assert (t.env, t.python, t.pass_experiment, t.description) == ("uv", None, False, "a tool")
    assert (t.meta_path, t.line) == (tmp_path / "configs" / "meta.yaml", 2)
    assert mod.entrypoint == ("-m", "pkg")
    assert mod.module_style
    assert (mod.env, mod.python, mod.pass_experiment, mod.line) == ("system", "3.11", True, 6)


def test_load_registry_env_path_becomes_absolute(tmp_path: Path) -> None:
    (tmp_path / "py").write_text("")
    registry = registry_of(
        tmp_path, "tools:\n  t: {path: tools/t, entrypoint: src/main.py, env: py}\n"
    )
    assert registry.tools["t"].env == str(tmp_path / "py")


@pytest.mark.parametrize(
    ("meta", "line", "what"),
    [
        ("", 1, "meta.yaml is empty"),
        ("[1, 2]\n", 1, "must be a mapping"),
        ("tools: {}\nextra: 1\n", 2, "unknown top-level key 'extra'"),
        ("tools: {t: 1}\ntools: {}\n", 2, "duplicate key 'tools' (first at line 1)"),
        ("tools:\n  t:\n    path: a\n    path: b\n", 4, "duplicate key 'tools.t.path'"),
        ("tools:\n  t: {path: tools/t}\n  t: {path: tools/t}\n", 3, "registered twice"),
        ("tools: [\n", 2, "YAML syntax error"),
    ],
)
def test_load_registry_file_errors(tmp_path: Path, meta: str, line: int, what: str) -> None:
    registry = registry_of(tmp_path, meta)
    assert registry.error is not None
    assert registry.error.path == str(tmp_path / "configs" / "meta.yaml")
    assert registry.error.line == line
    assert what in registry.error.what
    assert registry.error.fix
    assert registry.tools == {}


@pytest.mark.parametrize(
    ("entry", "line", "what"),
    [
        ("t: 5", 2, "must be a mapping"),
        ("t: {path: tools/t, entrypoint: src/main.py, bogus: 1}", 2, "unknown key 'bogus'"),
        (
            "t:\n    path: tools/t\n    entrypoint: ''",
            4,
            "'entrypoint' of tool 't' must be a non-empty",
        ),
        ("t: {path: /, entrypoint: src/main.py}", 2, "outside the repository"),
        ("t: {path: tools/t, entrypoint: 'src/main.py \"unclosed'}", 2, "cannot be parsed"),
        ("t: {path: tools/mod, entrypoint: '-m pkg-x'}", 2, "names no valid module"),
        ("t: {path: tools/t, entrypoint: src/main.py, description: [1]}", 2, "description"),
        ("t: {path: tools/t, entrypoint: src/main.py, env: ''}", 2, "env must be a string"),
        ("t: {path: tools/t, entrypoint: src/main.py, python: [3]}", 2, "python must be"),
        ("not: {path: tools/t, entrypoint: src/main.py}", 2, "reserved by pytest"),
        ("1x: {path: tools/t, entrypoint: src/main.py}", 2, "cannot be a pytest marker"),
    ],
)
def test_load_registry_tool_errors(tmp_path: Path, entry: str, line: int, what: str) -> None:
    registry = registry_of(
        tmp_path, f"tools:\n  {entry}\n  ok: {{path: tools/t, entrypoint: src/main.py}}\n"
    )
    assert registry.error is None
    assert list(registry.tools) == ["ok"]
    ((name, error),) = registry.tool_errors.items()
    assert registry.names == sorted(["ok", name])
    assert error.path == str(tmp_path / "configs" / "meta.yaml")
    assert error.line == line
    assert what in error.what
    assert error.fix, "every problem comes with a fix"
    assert str(error).startswith(f"{error.path}:{line}: ")


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("1h 30m", 5400.0),
        ("1H", 3600.0),
        ("45", 45.0),
        (45, 45.0),
        (0.5, 0.5),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["5 minutes", "", "soon", "1h30", "h", "1x", "-5m", -1, True, None, [90], {"s": 1}],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"is not a duration|is negative"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"), [(4.24, "4.2s"), (185, "3m05s"), (3720, "1h02m"), (59.96, "60.0s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
