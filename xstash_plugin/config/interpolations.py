"""``${...}`` interpolations of an experiment, checked at collection: the malformed ones, and
the ones that cannot resolve when the experiment composes nothing it could find them in.

OmegaConf is imported only when a file holds an interpolation (most do not)."""

from __future__ import annotations

import datetime
from typing import Any

from xstash_plugin.config.yamlio import YamlDoc
from xstash_plugin.config.yamllimits import KeyPath
from xstash_plugin.errors import ConfigError

# Each '${' costs about 0.2-0.4 ms to parse and resolve at collection (OmegaConf's grammar): this
# bounds a file's check to seconds (a 10 MiB file could hold 2.5 million).
MAX_INTERPOLATIONS = 10_000


def first_line(exc: Exception) -> str:
    """OmegaConf's message without the ``full_key: ... object_type=...`` lines it appends."""
    text = str(getattr(exc, "msg", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _too_many_interpolations(doc: YamlDoc, payload: dict[str, Any]) -> ConfigError | None:
    """An error at the string where the file's ``${`` count passes :data:`MAX_INTERPOLATIONS`."""
    count = 0
    stack: list[tuple[KeyPath, Any]] = [((), payload)]
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


def _error(doc: YamlDoc, path: KeyPath, raw: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(
        doc.path, doc.line(*path), f"interpolation {raw!r} at '{'.'.join(path)}' {problem}", fix
    )


def check_interpolations(
    doc: YamlDoc, payload: dict[str, Any], extends: bool = False
) -> list[ConfigError]:
    """Resolve every ``${...}`` the orchestrator can judge; report the ones that cannot resolve."""
    if doc.text is not None and "${" not in doc.text and "\\" not in doc.text:
        return []  # no value can hold '${' (an escape in double quotes could spell it)
    too_many = _too_many_interpolations(doc, payload)
    if too_many is not None:
        return [too_many]
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    found = _Strings(doc)
    checked = found.clean(payload, (), True)
    if not found.strings:
        return found.errors
    try:
        cfg = OmegaConf.create(checked)
    except OmegaConfBaseException as exc:
        return [
            *found.errors,
            ConfigError(
                doc.path,
                1,
                f"config cannot be loaded by OmegaConf: {first_line(exc)}",
                "keys must be strings or numbers (not null or lists), values plain YAML "
                "scalars, lists or mappings",
            ),
        ]
    # Keys composed in from the tool's config (its primary config, its groups) are unknown
    # here; a missing key is only an error when the experiment composes nothing.
    composes = extends or "defaults" in payload
    return [*found.errors, *_unresolved(doc, cfg, found.strings, composes)]


class _Strings:
    """The strings of a config that hold ``${``: the malformed ones reported (and blanked out
    in the copy :meth:`clean` makes), the others kept to be resolved."""

    def __init__(self, doc: YamlDoc) -> None:
        from omegaconf import grammar_parser
        from omegaconf.errors import GrammarParseError

        self.doc = doc
        self.parse = grammar_parser.parse
        self.parse_error: type[Exception] = GrammarParseError
        self.errors: list[ConfigError] = []
        self.strings: list[tuple[KeyPath, str]] = []

    def clean(self, value: Any, path: KeyPath, resolve: bool) -> Any:
        """A copy of ``value`` with malformed interpolations reported and blanked out."""
        if isinstance(value, dict):
            return {
                key: self.clean(
                    sub, (*path, str(key)), resolve and not (path == () and key == "hydra")
                )
                for key, sub in value.items()
            }
        if isinstance(value, list):
            return [self.clean(sub, (*path, str(i)), resolve) for i, sub in enumerate(value)]
        if isinstance(value, datetime.date):
            return value.isoformat()  # a YAML date; OmegaConf (and so the tool) reads a string
        if isinstance(value, str) and "${" in value:
            try:
                self.parse(value)
            except self.parse_error as exc:
                self.errors.append(
                    _error(
                        self.doc,
                        path,
                        value,
                        f"is malformed: {first_line(exc)}",
                        "write interpolations as ${key.path} or ${resolver:args}; "
                        "escape a literal '${' as '\\${'",
                    )
                )
                return ""
            # Hydra's own settings (the `hydra:` block) resolve inside the tool; xstash.needs
            # values are resolved by xstash itself before the run (config/needs.py).
            if resolve and "${xstash.needs." not in value:
                self.strings.append((path, value))
        return value


def _unresolved(
    doc: YamlDoc, cfg: Any, strings: list[tuple[KeyPath, str]], composes: bool
) -> list[ConfigError]:
    """Resolve each of ``strings`` in ``cfg``; the errors the orchestrator can judge."""
    from omegaconf import OmegaConf
    from omegaconf.errors import (
        GrammarParseError,
        InterpolationKeyError,
        OmegaConfBaseException,
        UnsupportedInterpolationType,
    )

    errors: list[ConfigError] = []
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
                _error(
                    doc,
                    path,
                    raw,
                    f"cannot resolve: {first_line(exc)}",
                    "point it at a key that exists in this config (interpolations are "
                    "absolute, e.g. ${params.lr})",
                )
            )
        except GrammarParseError as exc:
            errors.append(
                _error(
                    doc,
                    path,
                    raw,
                    f"is malformed: {first_line(exc)}",
                    "write interpolations as ${key.path} or ${resolver:args}",
                )
            )
        except OmegaConfBaseException:
            continue  # anything else (resolver failures) is for the tool to judge at run time
    return errors
