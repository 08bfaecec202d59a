"""An experiment YAML file turned into a checked :class:`Experiment`.

Collection is validation: everything that can be known without starting the tool is checked
here, and every problem of a file is reported at once with its line and a fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .durations import DURATION_HELP, parse_duration
from .errors import ConfigError, ConfigErrors
from .registry import Registry, Tool
from .suggest import did_you_mean
from .yamlio import YamlDoc, load_yaml_file

# Orchestrator fields: never part of the tool's config.
ORCHESTRATOR_KEYS = ("tool", "experiment", "description", "tags", "estimated_runtime", "xstash")
# Keys of the `xstash:` block this version implements, with their meaning (for hints).
XSTASH_KEYS: dict[str, str] = {}
# Keys of the product contract that a later version adds; named so the error can say so.
XSTASH_PLANNED = ("timeout", "sweep", "metrics", "expect", "launcher", "resources", "inputs")

EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
TAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
# Tags become markers: these names would change what pytest does with the item.
RESERVED_TAGS = frozenset(
    {
        "skip",
        "skipif",
        "xfail",
        "parametrize",
        "usefixtures",
        "filterwarnings",
        "tryfirst",
        "trylast",
        "and",
        "or",
        "not",
        "True",
        "False",
        "None",
    }
)


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

    @property
    def folder(self) -> Path:
        return self.config_path.parent


def _check_interpolations(doc: YamlDoc, payload: dict[str, Any]) -> list[ConfigError]:
    """Resolve every ``${...}`` the orchestrator can judge; report the ones that cannot resolve."""
    from omegaconf import OmegaConf
    from omegaconf.errors import (
        GrammarParseError,
        InterpolationKeyError,
        OmegaConfBaseException,
        UnsupportedInterpolationType,
    )

    strings: list[tuple[tuple[str, ...], str]] = []

    def collect(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                if path == () and key == "hydra":
                    continue  # Hydra's own settings resolve inside the tool
                collect(sub, (*path, str(key)))
        elif isinstance(value, list):
            for index, sub in enumerate(value):
                collect(sub, (*path, str(index)))
        elif isinstance(value, str) and "${" in value:
            strings.append((path, value))

    collect(payload, ())
    if not strings:
        return []
    # Keys composed in from the tool's config groups are unknown here; a missing key is only
    # an error when the experiment composes nothing.
    composes = "defaults" in payload
    errors: list[ConfigError] = []
    try:
        cfg = OmegaConf.create(payload)
    except OmegaConfBaseException as exc:
        return [ConfigError(doc.path, 1, f"config cannot be loaded by OmegaConf: {exc}")]
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
                    f"{exc.msg if hasattr(exc, 'msg') else exc}",
                    "point it at a key that exists in this config (interpolations are "
                    "absolute, e.g. ${params.lr})",
                )
            )
        except GrammarParseError as exc:
            errors.append(
                ConfigError(
                    doc.path,
                    doc.line(*path),
                    f"interpolation {raw!r} at '{'.'.join(path)}' is malformed: {exc.msg}",
                    "write interpolations as ${key.path} or ${resolver:args}",
                )
            )
        except OmegaConfBaseException:
            continue  # anything else (resolver failures) is for the tool to judge at run time
    return errors


def _check_name(doc: YamlDoc, data: dict[str, Any], errors: list[ConfigError]) -> str:
    name = data.get("experiment")
    line = doc.line("experiment")
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
                line,
                f"experiment name {name!r} is not a plain name",
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
                f"fix meta.yaml first:\n    {registry.error.render()}",
            )
        )
        return None
    tool = data.get("tool")
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
                f"'tool' must be a tool name, not {tool!r}",
                f"registered: {registered}",
            )
        )
        return None
    if tool in registry.tool_errors:
        errors.append(
            ConfigError(
                doc.path,
                line,
                f"tool '{tool}' is misconfigured in meta.yaml",
                registry.tool_errors[tool].render(),
            )
        )
        return None
    if tool not in registry.tools:
        errors.append(
            ConfigError(
                doc.path,
                line,
                f"Tool not found in meta config: unknown tool '{tool}'; registered: "
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
        elif tag in RESERVED_TAGS:
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"tag '{tag}' is reserved by pytest",
                    f"choose another name, e.g. '{tag}_'",
                )
            )
        elif tag not in clean:
            clean.append(tag)
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


def _check_xstash_block(doc: YamlDoc, data: dict[str, Any], errors: list[ConfigError]) -> None:
    block = data.get("xstash")
    if block is None:
        return
    if not isinstance(block, dict):
        errors.append(
            ConfigError(
                doc.path,
                doc.line("xstash"),
                "'xstash' must be a mapping",
                "write: xstash: {key: value}",
            )
        )
        return
    for key in map(str, block):
        line = doc.line("xstash", key)
        if key in XSTASH_KEYS:
            continue
        if key in XSTASH_PLANNED:
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"'xstash.{key}' is not supported by this version of xstash yet",
                    "remove it for now; supported keys: " + (", ".join(XSTASH_KEYS) or "(none)"),
                )
            )
        else:
            errors.append(
                ConfigError(
                    doc.path,
                    line,
                    f"unknown key 'xstash.{key}'."
                    f"{did_you_mean(key, [*XSTASH_KEYS, *XSTASH_PLANNED])}",
                    "supported keys: " + (", ".join(XSTASH_KEYS) or "(none)"),
                )
            )


def load_experiment(path: Path, registry: Registry) -> Experiment:
    """Parse and check one experiment file; raises :class:`ConfigErrors` listing every problem."""
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
                    f"the top level must be a mapping, not a {type(data).__name__}",
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
    _check_xstash_block(doc, data, errors)
    payload = {k: v for k, v in data.items() if k not in ORCHESTRATOR_KEYS}
    if tool is not None and tool.pass_experiment:
        payload["experiment"] = name
    errors.extend(_check_interpolations(doc, payload))
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
    )
