"""A compose server's verdicts as collection errors: each at the line it is about (the key, the
``defaults:`` entry, the sweep key), in the words of Hydra or OmegaConf, with a fix for the
problem at hand."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.layout import is_fragment
from xstash_plugin.config.suggest import did_you_mean
from xstash_plugin.config.yamlio import YamlDoc, load_yaml_file
from xstash_plugin.errors import ConfigError

if TYPE_CHECKING:
    from xstash_plugin.config.compose_client import Pending, Run


def judge(experiment: Experiment, pending: list[Pending]) -> list[ConfigError]:
    """Collection errors from the runs' verdicts: each distinct problem once, with the sweep
    points it concerns when it is not all of them."""
    doc: YamlDoc | None = None
    found: dict[tuple[int | None, str, str], list[str]] = {}
    for item in pending:
        problems: list[dict[str, Any]]
        if item.answer is None:
            problems = [{"kind": "server", "message": item.problem or "no verdict"}]
        else:
            problems = item.answer.errors
        for problem in problems:
            if doc is None:
                doc = load_yaml_file(experiment.config_path)
            line, what, fix = describe(experiment, doc, item.run, problem)
            # A missing config is looked up once per compose and masks what follows it, so
            # the points it is reported for say nothing: it is the file's problem.
            label = "" if problem.get("kind") == "missing_config" else item.run.label
            found.setdefault((line, what, fix), []).append(label)
    errors = []
    for (line, what, fix), labels in found.items():
        if len(pending) > 1 and len(labels) < len(pending) and all(labels):
            shown = ", ".join(labels[:3]) + (
                f" and {len(labels) - 3} more" if len(labels) > 3 else ""
            )
            what += f" (sweep point{'s' if len(labels) > 1 else ''} {shown})"
        errors.append(ConfigError(experiment.config_path, line, what, fix))
    return sorted(errors, key=lambda e: e.line or 0)


def _in_file(doc: YamlDoc, path: list[str]) -> bool:
    """Whether the experiment file itself has the key ``path``."""
    node: Any = doc.data
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _defaults_entry(doc: YamlDoc, missing: str) -> int | None:
    """The index of the ``defaults:`` entry that names config ``missing`` ('name' or
    'group/option')."""
    data = doc.data if isinstance(doc.data, dict) else {}
    entries = data.get("defaults")
    if not isinstance(entries, list):
        return None
    for index, entry in enumerate(entries):
        if isinstance(entry, str) and entry.removeprefix("optional ").strip() == missing:
            return index
        if isinstance(entry, dict) and len(entry) == 1:
            ((key, value),) = entry.items()
            group = str(key).split()[-1].split("@")[0]
            if f"{group}/{value}" == missing or group == missing:
                return index
    return None


def _sweep_line(doc: YamlDoc, run: Run, key: str) -> int | None:
    """The line of sweep key ``key`` (grid or list of points), if the point has it."""
    if key not in run.point:
        return None
    block = doc.data.get("xstash", {}).get("sweep") if isinstance(doc.data, dict) else None
    if isinstance(block, list):
        for index, point in enumerate(block):
            if isinstance(point, dict) and key in point:
                return doc.line("xstash", "sweep", str(index), key)
    return doc.line("xstash", "sweep", key)


def _override_source(doc: YamlDoc, run: Run, key: str) -> tuple[int | None, str]:
    """Where an override of ``key`` comes from: a sweep key (its line), or the command line."""
    bare = key.lstrip("+~")
    for candidate in (key, bare, f"+{bare}", f"++{bare}"):
        line = _sweep_line(doc, run, candidate)
        if line is not None:
            return line, f"sweep key '{candidate}'"
    return None, f"--xstash-override {bare}=..."


def describe(
    experiment: Experiment, doc: YamlDoc, run: Run, problem: dict[str, Any]
) -> tuple[int | None, str, str]:
    """(line, what is wrong, fix) of one problem a compose server reported."""
    tool = experiment.tool
    kind = problem.get("kind")
    message = str(problem.get("message") or "").strip()
    path = [str(p) for p in problem.get("path") or []]
    dotted = ".".join(path)
    suggest = problem.get("suggest")
    hint = f" Did you mean '{suggest}'?" if suggest else ""
    fallback = experiment.line
    extends = f"'{tool.primary}' and its defaults" if tool.primary else "its defaults"
    if kind == "missing_config":
        return _missing_config(experiment, doc, run, problem)
    if kind == "unknown_key":
        return (
            doc.line(*path),
            f"unknown key '{dotted}': the config this experiment extends ({extends} of tool "
            f"'{tool.name}') has no such key.{hint}",
            f"correct the key; to add a new key on purpose, declare it: "
            f"xstash: {{new_keys: [{dotted}]}}",
        )
    if kind == "override":
        key = str(problem.get("key") or dotted)
        line, source = _override_source(doc, run, key)
        return (
            line or fallback,
            f"{source}: tool '{tool.name}' has no key '{key}' in its config.{hint}",
            f"correct the key, or write '+{key}' to add it as a new key",
        )
    if kind == "group_value":
        group = str(problem.get("group") or dotted)
        options = ", ".join(problem.get("options") or []) or "(none)"
        value = _value_at(doc, path)
        primary = tool.primary or "..."
        return (
            doc.line(*path),
            f"'{group}' is a config group of tool '{tool.name}' (options: {options}): a value "
            f"here replaces the group's whole config with {value!r} instead of choosing an "
            "option",
            f"choose the option in the defaults list: defaults: [{primary}, "
            f"{{override {group}: {value}}}, _self_], or sweep it: "
            f"xstash: {{sweep: {{{group}: [...]}}}}",
        )
    if kind in ("key", "interpolation"):
        where = doc.line(*path) if path and _in_file(doc, path) else fallback
        place = "" if path and _in_file(doc, path) else f" (at '{dotted}' in the tool's config)"
        if kind == "key":
            return (
                where,
                f"tool '{tool.name}' cannot compose this experiment{place}: {message}{hint}",
                "make the key match the tool's schema (or declare a new key in "
                "xstash.new_keys if the tool's schema allows it)",
            )
        return (
            where,
            f"interpolation at '{dotted}' cannot resolve{place}: {message}",
            _interpolation_fix(message),
        )
    if kind == "server":
        return (
            doc.line("tool"),
            f"tool '{tool.name}' could not compose this experiment: {message}",
            "fix the tool so that its entry imports (the log named above has the details), or "
            "run with --xstash-compose=off",
        )
    return (
        fallback,
        f"tool '{tool.name}' cannot compose this experiment: {message}",
        "make the config match the tool's config (its primary config, groups and schema)",
    )


def _interpolation_fix(message: str) -> str:
    """What to do about an interpolation that cannot resolve, by what OmegaConf said."""
    env = re.search(r"Environment variable '([^']+)' not found", message)
    if env:
        return (
            f"set the environment variable {env.group(1)} where pytest runs, or give a default: "
            f"${{oc.env:{env.group(1)},<default>}}"
        )
    if "Recursive interpolation" in message:
        return "break the cycle: an interpolation must not lead back to its own key"
    resolver = re.search(r"Unsupported interpolation type (\S+)", message)
    if resolver:
        return (
            f"'{resolver.group(1)}' is no resolver the tool registers when its entry module is "
            "imported: correct the name, or register it there (OmegaConf.register_new_resolver)"
        )
    return (
        "point it at a key that exists in the composed config (interpolations are absolute, "
        "e.g. ${model.lr})"
    )


def _value_at(doc: YamlDoc, path: list[str]) -> Any:
    node: Any = doc.data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _missing_config(
    experiment: Experiment, doc: YamlDoc, run: Run, problem: dict[str, Any]
) -> tuple[int | None, str, str]:
    tool = experiment.tool
    missing = str(problem.get("missing") or "")
    configs = [str(c) for c in problem.get("configs") or [] if not is_fragment(str(c))]
    groups = [str(g) for g in problem.get("groups") or []]
    index = _defaults_entry(doc, missing)
    line = doc.line("defaults", str(index)) if index is not None else None
    source = f"defaults entry '{missing}'" if index is not None else f"'{missing}'"
    if "/" in missing:
        group, _, option = missing.rpartition("/")
        options = [str(o) for o in problem.get("options") or []]
        if line is None:
            swept, _ = _override_source(doc, run, group)
            line = swept
            source = f"sweep value '{option}' of '{group}'" if swept else source
        return (
            line or experiment.line,
            f"{source}: config group '{group}' of tool '{tool.name}' has no option "
            f"'{option}'; its options: {', '.join(options) or '(none)'}."
            f"{did_you_mean(option, options)}",
            f"choose one of the options of '{group}'",
        )
    if tool.primary is not None:
        listing = f"its primary config is '{tool.primary}'"
    else:
        listing = "it has no primary config"
    if groups:
        listing += f" (config groups: {', '.join(groups)})"
    names = [*configs, *groups]
    if experiment.implied_defaults:
        return (
            experiment.line,
            f"tool '{tool.name}' has no config named '{missing}' ({listing}), yet meta.yaml or "
            f"its @hydra.main names it as the primary config.{did_you_mean(missing, names)}",
            f"set config_name: <its primary config> for tool '{tool.name}' in {tool.meta_path}",
        )
    fix = (
        f"write '- {tool.primary}' to extend the tool's primary config, or leave out "
        f"'defaults:' altogether: an experiment without one extends '{tool.primary}'"
        if tool.primary
        else f"name one of the tool's configs: {', '.join(configs) or '(none)'}"
    )
    return (
        line or doc.line("defaults"),
        f"{source}: tool '{tool.name}' has no config named '{missing}'; {listing}."
        f"{did_you_mean(missing, names)}",
        fix,
    )
