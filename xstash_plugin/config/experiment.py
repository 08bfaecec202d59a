"""An experiment YAML file turned into a checked :class:`Experiment`.

Collection is validation: everything that can be known without starting the tool is checked
here (the ``xstash:`` block in :mod:`.xstash_block`, interpolations in :mod:`.interpolations`),
and every problem of a file is reported at once with its line and a fix.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstash_plugin.config.durations import DURATION_HELP, parse_duration
from xstash_plugin.config.interpolations import check_interpolations
from xstash_plugin.config.markers import marker_problem
from xstash_plugin.config.needs import check_references
from xstash_plugin.config.registry import Registry, Tool
from xstash_plugin.config.suggest import did_you_mean
from xstash_plugin.config.text import printable_error, quote
from xstash_plugin.config.xstash_block import XstashSettings, check_xstash
from xstash_plugin.config.yamlio import YamlDoc, load_yaml_file
from xstash_plugin.errors import ConfigError, ConfigErrors

# Orchestrator fields: never part of the tool's config.
ORCHESTRATOR_KEYS = ("tool", "experiment", "description", "tags", "estimated_runtime", "xstash")

EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
# What a YAML top level that is not a mapping is, in the words of a YAML file's author.
_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


@dataclass(frozen=True)
class Experiment(XstashSettings):
    """One validated experiment: what to run, with which tool, and the tool's config; and what
    xstash does with it, from its ``xstash:`` block (the fields of :class:`XstashSettings`)."""

    name: str
    config_path: Path
    line: int
    tool: Tool
    description: str
    tags: tuple[str, ...]
    estimated_runtime: str | None
    estimated_seconds: float | None
    payload: dict[str, Any]  # the tool's view: orchestrator fields removed
    implied_defaults: bool = False  # no `defaults:` in the file: [<primary>, _self_] was added

    @property
    def folder(self) -> Path:
        return self.config_path.parent

    @property
    def all_resources(self) -> dict[str, Any]:
        """The tool's resources (meta.yaml), with this config's ``xstash.resources`` on top."""
        return {**self.tool.resources, **self.resources}

    def launcher_or(self, default: str) -> str:
        """Most specific first: the config's xstash.launcher, the tool's, else ``default``
        (the session's)."""
        return self.launcher or self.tool.launcher or default


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
    tags = _check_tags(doc, data.get("tags", []), errors)
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
    return description, tags, estimate, seconds


def _check_tags(doc: YamlDoc, tags: Any, errors: list[ConfigError]) -> tuple[str, ...]:
    """The tags, each once: each becomes a pytest marker (see :mod:`.markers`)."""
    if not isinstance(tags, list):
        fix = f"write: tags: [{tags}]" if isinstance(tags, str) else "write: tags: [paper, fig1]"
        errors.append(
            ConfigError(doc.path, doc.line("tags"), "'tags' must be a list of strings", fix)
        )
        tags = []
    clean: list[str] = []
    for index, tag in enumerate(tags):
        if not isinstance(tag, str):
            errors.append(
                ConfigError(
                    doc.path,
                    doc.line("tags", str(index)),
                    f"tag {tag!r} is not a string",
                    f"quote it: '{tag}'",
                )
            )
            continue
        problem = marker_problem(tag, "tag")
        if problem is not None:  # (its line is read only then: lines are read on demand)
            errors.append(ConfigError(doc.path, doc.line("tags", str(index)), *problem))
        elif tag not in clean:
            clean.append(tag)
    return tuple(clean)


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
    :func:`~xstash_plugin.config.text.printable`).
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


def _read(path: Path, registry: Registry) -> tuple[YamlDoc, dict[str, Any]]:
    """The experiment file's document, when its place, name and top level allow any other
    check (raises the one problem otherwise)."""
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
    return doc, data


def _load_experiment(path: Path, registry: Registry) -> Experiment:
    doc, data = _read(path, registry)
    errors = [
        ConfigError(
            path,
            again,
            f"duplicate key '{'.'.join(key_path)}' (first at line {first})",
            "YAML keeps only the last value: remove one of them",
        )
        for key_path, first, again in doc.duplicates
    ]
    tool = _check_tool(doc, data, registry, errors)
    name = _check_name(doc, data, errors)
    description, tags, estimate, seconds = _check_meta_fields(doc, data, errors)
    xstash = check_xstash(doc, data, registry.repo_root, errors)
    payload = {k: v for k, v in data.items() if k not in ORCHESTRATOR_KEYS}
    if tool is not None and tool.pass_experiment:
        payload["experiment"] = name
    extends = tool is not None and tool.primary is not None
    errors.extend(check_interpolations(doc, payload, extends))
    check_references(doc, payload, xstash.needs, errors)
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
        implied_defaults=implied,
        **xstash.fields(),
    )
