"""An experiment YAML file turned into a checked :class:`Experiment`.

Collection is validation: everything that can be known without starting the tool is checked
here, and every problem of a file is reported at once with its line and a fix.
"""

from __future__ import annotations

import datetime
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from xstash_plugin.config.durations import DURATION_HELP, parse_duration
from xstash_plugin.config.expectations import Expectation, parse_expectations
from xstash_plugin.config.registry import RESERVED_TAGS, Registry, Tool
from xstash_plugin.config.resources import ResourceError, check_launcher, check_resources
from xstash_plugin.config.suggest import did_you_mean
from xstash_plugin.config.sweeps import Point, parse_sweep
from xstash_plugin.config.yamlio import YamlDoc, load_yaml_file, printable_error, quote
from xstash_plugin.errors import ConfigError, ConfigErrors

# Orchestrator fields: never part of the tool's config.
ORCHESTRATOR_KEYS = ("tool", "experiment", "description", "tags", "estimated_runtime", "xstash")
# Keys of the `xstash:` block this version implements, with their meaning (for hints).
XSTASH_KEYS: dict[str, str] = {
    "metrics": "file in the run directory the tool writes its metrics to (default metrics.json)",
    "expect": "metric name -> expectation ('>= 0.9', {ref: 0.31, tol: 0.05}, ...)",
    "sweep": "a grid {key: [values]} or a list of points [{key: value}]: one test per point",
    "timeout": "a duration ('90s', '2h'): then the tool's process tree is killed",
    "inputs": "files or folders (relative to the repository) whose contents decide the result",
    "launcher": "'local' or 'slurm' (default: the tool's launcher in meta.yaml, else local)",
    "resources": "SLURM resources: {partition, time, cpus, gpus, mem, nodes, account, ...}",
    "new_keys": "keys this experiment adds to the tool's config on purpose, e.g. [model.dropout]",
}

EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
TAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
NEW_KEY = re.compile(r"[A-Za-z0-9_][\w-]*(\.[A-Za-z0-9_][\w-]*)*")
# Each '${' costs about 0.2-0.4 ms to parse and resolve at collection (OmegaConf's grammar): this
# bounds a file's check to seconds (a 10 MiB file could hold 2.5 million).
MAX_INTERPOLATIONS = 10_000


@dataclass(frozen=True)
class Experiment:
    """One validated experiment: what to run, with which tool, and the tool's config."""

    name: str
    config_path: Path
    line: int
    tool: Tool
    description: str
    tags: tuple[str, ...]
    estimated_runtime: str | None
    estimated_seconds: float | None
    payload: dict[str, Any]  # the tool's view: orchestrator fields removed
    metrics_file: str | None = None  # declared in xstash.metrics (then it must exist)
    expectations: tuple[Expectation, ...] = ()
    points: tuple[Point, ...] = ()  # sweep points; empty: a single run
    timeout: float | None = None  # xstash.timeout, seconds
    inputs: tuple[str, ...] = ()  # xstash.inputs, relative to the repository
    launcher: str | None = None  # xstash.launcher
    resources: dict[str, Any] = field(default_factory=dict)  # xstash.resources
    new_keys: tuple[str, ...] = ()  # xstash.new_keys: keys added to the tool's config on purpose
    implied_defaults: bool = False  # no `defaults:` in the file: [<primary>, _self_] was added

    @property
    def folder(self) -> Path:
        return self.config_path.parent


def _first_line(exc: Exception) -> str:
    """OmegaConf's message without the ``full_key: ... object_type=...`` lines it appends."""
    text = str(getattr(exc, "msg", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _too_many_interpolations(doc: YamlDoc, payload: dict[str, Any]) -> ConfigError | None:
    """An error at the string where the file's ``${`` count passes :data:`MAX_INTERPOLATIONS`."""
    count = 0
    stack: list[tuple[tuple[str, ...], Any]] = [((), payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*path, str(k)), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, str(i)), v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            count += value.count("${")
            if count > MAX_INTERPOLATIONS:
                return ConfigError(
                    doc.path,
                    doc.line(*path),
                    f"more than {MAX_INTERPOLATIONS:,} '${{...}}' interpolations in this file "
                    "(counted up to here): each is parsed and resolved at collection",
                    "compute repeated values in the tool, or interpolate a shared part once; "
                    f"xstash checks at most {MAX_INTERPOLATIONS:,} per file",
                )
    return None


def _check_interpolations(
    doc: YamlDoc, payload: dict[str, Any], extends: bool = False
) -> list[ConfigError]:
    """Resolve every ``${...}`` the orchestrator can judge; report the ones that cannot resolve."""
    if doc.text is not None and "${" not in doc.text and "\\" not in doc.text:
        return []  # no value can hold '${' (an escape in double quotes could spell it)
    too_many = _too_many_interpolations(doc, payload)
    if too_many is not None:
        return [too_many]
    from omegaconf import OmegaConf, grammar_parser
    from omegaconf.errors import (
        GrammarParseError,
        InterpolationKeyError,
        OmegaConfBaseException,
        UnsupportedInterpolationType,
    )

    strings: list[tuple[tuple[str, ...], str]] = []
    errors: list[ConfigError] = []

    def clean(value: Any, path: tuple[str, ...], resolve: bool) -> Any:
        """A copy of ``value`` with malformed interpolations reported and blanked out."""
        if isinstance(value, dict):
            return {
                key: clean(sub, (*path, str(key)), resolve and not (path == () and key == "hydra"))
                for key, sub in value.items()
            }
        if isinstance(value, list):
            return [clean(sub, (*path, str(i)), resolve) for i, sub in enumerate(value)]
        if isinstance(value, datetime.date):
            return value.isoformat()  # a YAML date; OmegaConf (and so the tool) reads a string
        if isinstance(value, str) and "${" in value:
            try:
                grammar_parser.parse(value)
            except GrammarParseError as exc:
                errors.append(
                    ConfigError(
                        doc.path,
                        doc.line(*path),
                        f"interpolation {value!r} at '{'.'.join(path)}' is malformed: "
                        f"{_first_line(exc)}",
                        "write interpolations as ${key.path} or ${resolver:args}; "
                        "escape a literal '${' as '\\${'",
                    )
                )
                return ""
            if resolve:  # Hydra's own settings (the `hydra:` block) resolve inside the tool
                strings.append((path, value))
        return value

    checked = clean(payload, (), True)
    if not strings:
        return errors
    # Keys composed in from the tool's config (its primary config, its groups) are unknown
    # here; a missing key is only an error when the experiment composes nothing.
    composes = extends or "defaults" in payload
    try:
        cfg = OmegaConf.create(checked)
    except OmegaConfBaseException as exc:
        return [
            *errors,
            ConfigError(
                doc.path,
                1,
                f"config cannot be loaded by OmegaConf: {_first_line(exc)}",
                "keys must be strings or numbers (not null or lists), values plain YAML "
                "scalars, lists or mappings",
            ),
        ]
    for path, raw in strings:
        node: Any = cfg
        try:
            for part in path:
                node = node[int(part)] if OmegaConf.is_list(node) else node[part]
        except UnsupportedInterpolationType:
            continue  # ${now:..}, ${hydra:..} or a resolver the tool registers itself
        except InterpolationKeyError as exc:
            if composes:
                continue
            errors.append(
                ConfigError(
                    doc.path,
                    doc.line(*path),
                    f"interpolation {raw!r} at '{'.'.join(path)}' cannot resolve: "
                    f"{_first_line(exc)}",
                    "point it at a key that exists in this config (interpolations are "
                    "absolute, e.g. ${params.lr})",
                )
            )
        except GrammarParseError as exc:
            errors.append(
                ConfigError(
                    doc.path,
                    doc.line(*path),
                    f"interpolation {raw!r} at '{'.'.join(path)}' is malformed: {_first_line(exc)}",
                    "write interpolations as ${key.path} or ${resolver:args}",
                )
            )
        except OmegaConfBaseException:
            continue  # anything else (resolver failures) is for the tool to judge at run time
    return errors


def _check_name(doc: YamlDoc, data: dict[str, Any], errors: list[ConfigError]) -> str:
    name = data.get("experiment")
    stem = doc.path.stem if EXPERIMENT_NAME.fullmatch(doc.path.stem) else "my_experiment"
    if name is None:
        errors.append(
            ConfigError(
                doc.path,
                1,
                "missing required key 'experiment'",
                f"add 'experiment: {stem}' (the experiment's name)",
            )
        )
        return stem
    if not isinstance(name, str) or not EXPERIMENT_NAME.fullmatch(name):
        errors.append(
            ConfigError(
                doc.path,
                doc.line("experiment"),
                f"experiment name {quote(name)} is not a plain name",
                "use 1-100 characters from letters, digits, '_', '.', '+' and '-', starting "
                f"with a letter or digit, e.g. 'experiment: {stem}'",
            )
        )
        return stem
    return name


def _check_tool(
    doc: YamlDoc, data: dict[str, Any], registry: Registry, errors: list[ConfigError]
) -> Tool | None:
    if registry.error is not None:
        errors.append(
            ConfigError(
                doc.path,
                doc.line("tool"),
                "the tool registry is broken, so no experiment can be checked",
                "correct meta.yaml first:\n" + textwrap.indent(registry.error.render(), "    "),
            )
        )
        return None
    tool = data.get("tool")
    if isinstance(tool, str) and tool in registry.tools and tool not in registry.tool_errors:
        return registry.tools[tool]
    line = doc.line("tool")
    registered = ", ".join(registry.names) or "(none)"
    if tool is None:
        errors.append(
            ConfigError(
                doc.path,
                1,
                "missing required key 'tool'",
                f"add 'tool: <name>' naming a tool in {registry.meta_path}; "
                f"registered: {registered}",
            )
        )
        return None
    if not isinstance(tool, str):
        errors.append(
            ConfigError(
                doc.path,
                line,
                f"'tool' must be a tool name, not {quote(tool)}",
                f"registered: {registered}",
            )
        )
        return None
    if tool in registry.tool_errors:
        errors.append(
            ConfigError(
                doc.path,
                line,
                f"tool {quote(tool)} is misconfigured in meta.yaml",
                "correct its entry in meta.yaml:\n"
                + textwrap.indent(registry.tool_errors[tool].render(), "    "),
            )
        )
        return None
    if tool not in registry.tools:
        errors.append(
            ConfigError(
                doc.path,
                line,
                f"Tool not found in meta config: unknown tool {quote(tool)}; registered: "
                f"{registered}.{did_you_mean(tool, registry.names)}",
                f"register it under 'tools:' in {registry.meta_path} or correct the name",
            )
        )
        return None
    return registry.tools[tool]


def _check_meta_fields(
    doc: YamlDoc, data: dict[str, Any], errors: list[ConfigError]
) -> tuple[str, tuple[str, ...], str | None, float | None]:
    description = data.get("description", "")
    if not isinstance(description, str):
        errors.append(
            ConfigError(
                doc.path,
                doc.line("description"),
                "'description' must be a string",
                'quote it: description: "..."',
            )
        )
        description = str(description)
    tags = data.get("tags", [])
    if isinstance(tags, str):
        errors.append(
            ConfigError(
                doc.path,
                doc.line("tags"),
                "'tags' must be a list of strings",
                f"write: tags: [{tags}]",
            )
        )
        tags = []
    elif not isinstance(tags, list):
        errors.append(
            ConfigError(
                doc.path,
                doc.line("tags"),
                "'tags' must be a list of strings",
                "write: tags: [paper, fig1]",
            )
        )
        tags = []
    clean: list[str] = []
    for index, tag in enumerate(tags):
        if isinstance(tag, str) and tag not in RESERVED_TAGS and TAG_NAME.fullmatch(tag):
            if tag not in clean:
                clean.append(tag)
            continue
        line = doc.line("tags", str(index))
        if not isinstance(tag, str):
            errors.append(
                ConfigError(doc.path, line, f"tag {tag!r} is not a string", f"quote it: '{tag}'")
            )
        elif not TAG_NAME.fullmatch(tag):
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"tag {tag!r} cannot be a pytest marker",
                    "use letters, digits, '_', '.' and '-', starting with a letter or '_'",
                )
            )
        else:  # a name pytest keeps for itself
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"tag '{tag}' is reserved by pytest",
                    f"choose another name, e.g. '{tag}_'",
                )
            )
    estimate = data.get("estimated_runtime")
    seconds: float | None = None
    if estimate is not None:
        try:
            seconds = parse_duration(estimate)
        except ValueError as exc:
            errors.append(
                ConfigError(
                    doc.path,
                    doc.line("estimated_runtime"),
                    f"estimated_runtime: {exc}",
                    f"write {DURATION_HELP}",
                )
            )
        estimate = str(estimate)
    return description, tuple(clean), estimate, seconds


def _check_metrics_file(doc: YamlDoc, value: Any, errors: list[ConfigError]) -> str | None:
    line = doc.line("xstash", "metrics")
    fix = "give a path relative to the run directory ending in .json, .yaml or .yml"
    if not isinstance(value, str) or not value.strip():
        errors.append(ConfigError(doc.path, line, "'xstash.metrics' must be a file name", fix))
        return None
    rel = PurePosixPath(value)
    if rel.is_absolute() or ".." in rel.parts:
        errors.append(
            ConfigError(doc.path, line, f"metrics file {value!r} is outside the run directory", fix)
        )
        return None
    if rel.suffix not in (".json", ".yaml", ".yml"):
        errors.append(
            ConfigError(doc.path, line, f"metrics file {value!r} is not JSON or YAML", fix)
        )
        return None
    return value


def _check_points(doc: YamlDoc, block: Any, errors: list[ConfigError]) -> tuple[Point, ...]:
    from xstash_plugin.config.overrides import override_value

    points, problems = parse_sweep(block, doc)
    errors.extend(problems)
    for point in points:
        for key, value in point:
            try:
                override_value(value)
            except ValueError as exc:
                errors.append(
                    ConfigError(
                        doc.path,
                        doc.line("xstash", "sweep", key),
                        f"sweep value of '{key}': {exc}",
                        "use plain names as mapping keys in swept values",
                    )
                )
                return ()
    return tuple(points)


def _check_xstash_block(
    doc: YamlDoc, data: dict[str, Any], errors: list[ConfigError]
) -> tuple[str | None, tuple[Expectation, ...], tuple[Point, ...], float | None]:
    block = data.get("xstash")
    timeout: float | None = None
    metrics_file: str | None = None
    expectations: tuple[Expectation, ...] = ()
    points: tuple[Point, ...] = ()
    if block is None:
        return metrics_file, expectations, points, timeout
    if not isinstance(block, dict):
        errors.append(
            ConfigError(
                doc.path,
                doc.line("xstash"),
                "'xstash' must be a mapping",
                "write: xstash: {key: value}",
            )
        )
        return metrics_file, expectations, points, timeout
    for key in map(str, block):
        if key == "metrics":
            metrics_file = _check_metrics_file(doc, block[key], errors)
            continue
        if key == "sweep":
            points = _check_points(doc, block[key], errors)
            continue
        if key in ("inputs", "launcher", "resources", "new_keys"):
            continue  # checked by _check_inputs and _check_launch
        if key == "timeout":
            try:
                timeout = parse_duration(block[key])
                if timeout <= 0:
                    raise ValueError(f"{block[key]!r} is not positive")
            except ValueError as exc:
                errors.append(
                    ConfigError(
                        doc.path,
                        doc.line("xstash", key),
                        f"xstash.timeout: {exc}",
                        f"write {DURATION_HELP}, e.g. timeout: 2h",
                    )
                )
            continue
        if key == "expect":
            found, problems = parse_expectations(block[key], doc)
            expectations = tuple(found)
            errors.extend(problems)
            continue
        errors.append(
            ConfigError(
                doc.path,
                doc.line("xstash", key),
                f"unknown key 'xstash.{key}'.{did_you_mean(key, XSTASH_KEYS)}",
                "supported keys: " + (", ".join(XSTASH_KEYS) or "(none)"),
            )
        )
    return metrics_file, expectations, points, timeout


# What a YAML top level that is not a mapping is, in the words of a YAML file's author.
_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _check_launch(
    doc: YamlDoc, block: Any, errors: list[ConfigError]
) -> tuple[str | None, dict[str, Any]]:
    if not isinstance(block, dict):
        return None, {}
    launcher: str | None = None
    resources: dict[str, Any] = {}
    if "launcher" in block:
        try:
            launcher = check_launcher(block["launcher"])
        except ValueError as exc:
            errors.append(
                ConfigError(
                    doc.path,
                    doc.line("xstash", "launcher"),
                    str(exc),
                    "write launcher: local or launcher: slurm",
                )
            )
    if "resources" in block:
        try:
            resources = check_resources(block["resources"])
        except ResourceError as exc:
            where = ("xstash", "resources", exc.key) if exc.key else ("xstash", "resources")
            line = doc.line(*where)
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"xstash.resources: {exc}",
                    "e.g. resources: {partition: gpu, time: 2h, cpus: 4, gpus: 1, mem: 16G}",
                )
            )
    return launcher, resources


def _xstash_list(
    doc: YamlDoc, block: Any, key: str, what: str, fix: str, errors: list[ConfigError]
) -> list[Any]:
    """``xstash.<key>`` as a list (one string is a list of one); empty when absent or wrong."""
    if not isinstance(block, dict) or key not in block:
        return []
    raw = block[key]
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        return raw
    errors.append(
        ConfigError(
            doc.path, doc.line("xstash", key), f"'xstash.{key}' must be a list of {what}", fix
        )
    )
    return []


def _check_inputs(
    doc: YamlDoc, block: Any, repo_root: Path, errors: list[ConfigError]
) -> tuple[str, ...]:
    fix = "list paths relative to the repository, e.g. inputs: [data/train.csv, data/images]"
    raw = _xstash_list(doc, block, "inputs", "paths", fix, errors)
    found: list[str] = []
    root = repo_root.resolve()
    for index, item in enumerate(raw):
        line = doc.line("xstash", "inputs", str(index))
        if not isinstance(item, str) or not item.strip():
            errors.append(ConfigError(doc.path, line, f"input {item!r} is not a path", fix))
            continue
        path = (repo_root / item).resolve()
        if PurePosixPath(item).is_absolute() or (path != root and root not in path.parents):
            errors.append(
                ConfigError(
                    doc.path, line, f"input '{item}' is outside the repository {repo_root}", fix
                )
            )
            continue
        if not path.exists():
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"input '{item}' does not exist ({path})",
                    "create it, or correct the path (relative to the folder holding configs/)",
                )
            )
            continue
        found.append(item)
    return tuple(found)


def _check_new_keys(doc: YamlDoc, block: Any, errors: list[ConfigError]) -> tuple[str, ...]:
    fix = "list dotted keys of the tool's config, e.g. new_keys: [model.dropout, notes]"
    raw = _xstash_list(doc, block, "new_keys", "keys", fix, errors)
    found: list[str] = []
    for index, key in enumerate(raw):
        key = key.lstrip("+") if isinstance(key, str) else key
        if not isinstance(key, str) or not NEW_KEY.fullmatch(key):
            errors.append(
                ConfigError(
                    doc.path,
                    doc.line("xstash", "new_keys", str(index)),
                    f"new key {quote(key)} is not a dotted key",
                    fix,
                )
            )
            continue
        found.append(key)
    return tuple(found)


def with_primary(payload: dict[str, Any], tool: Tool) -> tuple[dict[str, Any], bool]:
    """The tool's view of an experiment: one without a ``defaults:`` list extends the tool's
    primary config, as ``defaults: [<primary>, _self_]`` (so it overrides the tool's config
    the way a Hydra command line does). True when that list was added."""
    if tool.primary is None or "defaults" in payload:
        return payload, False
    return {"defaults": [tool.primary, "_self_"], **payload}, True


def load_experiment(path: Path, registry: Registry) -> Experiment:
    """Parse and check one experiment file; raises :class:`ConfigErrors` listing every problem.

    Messages never carry a control character from the file to the terminal (see
    :func:`~xstash_plugin.yamlio.printable`).
    """
    try:
        return _load_experiment(path, registry)
    except ConfigError as exc:
        raise ConfigErrors([printable_error(exc)]) from None
    except ConfigErrors as exc:
        raise ConfigErrors([printable_error(e) for e in exc.errors]) from None


def _real_outside(path: Path, registry: Registry) -> Path | None:
    """Where ``path`` really is (symlinks resolved) when that is outside both the repository and
    the configs root (``configs/`` itself may be a link); None when inside.

    A config that is not itself a link is where its folder resolves to: each folder is resolved
    once per registry."""
    if not path.is_symlink():
        folder = path.parent
        inside = registry.folders_inside.get(folder)
        if inside is None:
            real_folder = folder.resolve()
            inside = any(real_folder.is_relative_to(home) for home in registry.homes)
            registry.folders_inside[folder] = inside
        if inside:
            return None
    real = path.resolve()
    return None if any(real.is_relative_to(home) for home in registry.homes) else real


def _load_experiment(path: Path, registry: Registry) -> Experiment:
    real = _real_outside(path, registry)
    if real is not None:
        raise ConfigError(
            path,
            None,
            f"the file is a link to {real}, outside the repository {registry.repo_root}",
            "keep experiment configs inside the repository: copy the file in, or link to a "
            "file inside it",
        )
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    if not stem.strip("."):  # '...yaml' would be the run directory outputs/configs/..
        raise ConfigError(
            path,
            None,
            f"the file name '{path.name}' cannot name a run directory (without its suffix it "
            f"is '{stem}')",
            "rename the file, e.g. 'my_experiment.yaml'",
        )
    doc = load_yaml_file(path)  # a syntax error stops here: nothing else can be checked
    data = doc.data
    if data is None:
        raise ConfigErrors(
            [
                ConfigError(
                    path,
                    1,
                    "the file is empty",
                    "write at least 'tool: <name>' and 'experiment: <name>'",
                )
            ]
        )
    if not isinstance(data, dict):
        raise ConfigErrors(
            [
                ConfigError(
                    path,
                    1,
                    f"the top level must be a mapping, not {_KINDS.get(type(data), 'a value')}",
                    "write 'key: value' lines, starting with 'tool:' and 'experiment:'",
                )
            ]
        )
    errors: list[ConfigError] = []
    for key_path, first, again in doc.duplicates:
        errors.append(
            ConfigError(
                path,
                again,
                f"duplicate key '{'.'.join(key_path)}' (first at line {first})",
                "YAML keeps only the last value: remove one of them",
            )
        )
    tool = _check_tool(doc, data, registry, errors)
    name = _check_name(doc, data, errors)
    description, tags, estimate, seconds = _check_meta_fields(doc, data, errors)
    metrics_file, expectations, points, timeout = _check_xstash_block(doc, data, errors)
    inputs = _check_inputs(doc, data.get("xstash"), registry.repo_root, errors)
    launcher, resources = _check_launch(doc, data.get("xstash"), errors)
    new_keys = _check_new_keys(doc, data.get("xstash"), errors)
    payload = {k: v for k, v in data.items() if k not in ORCHESTRATOR_KEYS}
    if tool is not None and tool.pass_experiment:
        payload["experiment"] = name
    extends = tool is not None and tool.primary is not None
    errors.extend(_check_interpolations(doc, payload, extends))
    implied = False
    if tool is not None:
        payload, implied = with_primary(payload, tool)
    if errors or tool is None:
        raise ConfigErrors(sorted(errors, key=lambda e: e.line or 0))
    return Experiment(
        name=name,
        config_path=path,
        line=doc.line("experiment"),
        tool=tool,
        description=description,
        tags=tags,
        estimated_runtime=estimate,
        estimated_seconds=seconds,
        payload=payload,
        metrics_file=metrics_file,
        expectations=expectations,
        points=points,
        timeout=timeout,
        inputs=inputs,
        launcher=launcher,
        resources=resources,
        new_keys=new_keys,
        implied_defaults=implied,
    )
