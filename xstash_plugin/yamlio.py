"""YAML loading with line numbers, on libyaml's C loader where available.

Configs are parsed once per collection, so this is on the hot path: compose the node graph with
``CSafeLoader`` (never the Python loader or OmegaConf), build the data from it, and keep the line
of every mapping key so errors can say ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's C loader when built

KeyPath = tuple[str, ...]


@dataclass
class YamlDoc:
    """A parsed YAML document and the 1-based line of each key path in it."""

    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    duplicates: list[tuple[KeyPath, int, int]] = field(default_factory=list)

    def line(self, *keys: str) -> int:
        """The line of the deepest known prefix of ``keys`` (1 when nothing is known)."""
        for end in range(len(keys), 0, -1):
            found = self.lines.get(tuple(keys[:end]))
            if found is not None:
                return found
        return 1


def _walk(
    node: yaml.Node, prefix: KeyPath, doc: YamlDoc, seen: set[int], budget: list[int]
) -> None:
    # Aliases share nodes: visit each node once so anchors can never make this walk explode.
    if id(node) in seen:
        return
    seen.add(id(node))
    budget[0] -= 1
    if budget[0] < 0:
        return
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first:
                doc.duplicates.append(((*prefix, key), first[key], line))
            else:
                first[key] = line
            doc.lines[(*prefix, key)] = line
            _walk(value_node, (*prefix, key), doc, seen, budget)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            doc.lines.setdefault((*prefix, str(index)), item.start_mark.line + 1)
            _walk(item, (*prefix, str(index)), doc, seen, budget)


def parse_yaml(text: str, path: Path) -> YamlDoc:
    """Parse ``text`` (the content of ``path``) into a :class:`YamlDoc`.

    Raises :class:`ConfigError` with the line for any syntax error.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or "invalid YAML"
        if exc.context:
            context = exc.context
            start = exc.context_mark
            if start is not None and line is not None and start.line + 1 != line:
                context += f" started at line {start.line + 1}"  # e.g. an unclosed bracket
            problem = f"{context}, {problem}"
        raise ConfigError(
            path,
            line,
            f"YAML syntax error: {problem}",
            "correct the YAML syntax at that line (indent with spaces, quote strings that "
            "contain ': ' or start with a special character)",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"YAML error: {exc}", "correct the YAML syntax") from None
    finally:
        loader.dispose()
    doc = YamlDoc(path=path, data=data)
    if node is not None:
        _walk(node, (), doc, set(), [1_000_000])
    return doc


def load_yaml_file(path: Path) -> YamlDoc:
    """Read and parse a YAML file; unreadable or non-UTF-8 files are a :class:`ConfigError`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            path, None, f"cannot read file: {exc.strerror}", "check the path"
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            path, line, "file is not valid UTF-8 text", "save the file as UTF-8"
        ) from None
    return parse_yaml(text, path)
