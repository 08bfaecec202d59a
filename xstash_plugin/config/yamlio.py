"""YAML loading with line numbers, on libyaml's C loader where available.

Configs are parsed once per collection, so this is on the hot path: compose the node graph with
``CSafeLoader`` (never the Python loader or OmegaConf), build the data from it, and keep the line
of every mapping key so errors can say ``file:line``.

Every file is untrusted input: the bounds it is held to (size, depth, expanded values, tags) and
their checks are in :mod:`.yamllimits`. A file of up to :data:`COMPOSE_FIRST_CHARS` characters
(every real config) is composed first: its node graph holds at most about :data:`MAX_NODES` nodes
whatever it says (aliases are shared nodes, libyaml stops at 1,000 levels), and one walk over it
checks the limits and finds the duplicate keys (:func:`walk`). Only when the walk finds a
problem, or composing fails, does the streaming scan of the parser's events
(:func:`check_events`) run, to name the first problem in document order at its line. A larger
file is scanned before it is composed, so that no node of a document beyond the limits is ever
built. A plain document's data is then built directly (:func:`_construct`), and its lines are
read from the graph only when asked for.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xstash_plugin.config.text import printable, quote
from xstash_plugin.config.yamllimits import (
    COMPOSE_FIRST_CHARS,
    CORE,
    FAST_TAGS,
    FLATTEN,
    MAX_FILE_BYTES,
    Beyond,
    KeyPath,
    beyond_error,
    check_events,
    depth_error,
    walk,
)
from xstash_plugin.errors import ConfigError

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's C loader if built

# Read YAML the way the tool will (OmegaConf's loader, inside Hydra): `1e-5` is a float (PyYAML
# alone says string) and `2024-01-01` stays a string (PyYAML alone says date). Otherwise a
# value would change type between the config and the tool.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _omegaconf_resolvers(cls: Any) -> None:
    cls.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
        for first, resolvers in cls.yaml_implicit_resolvers.items()
    }
    cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


class _Loader(_BaseLoader):  # type: ignore[misc]
    pass


class _Dumper(yaml.SafeDumper):
    """Quotes any string OmegaConf would read back as another type."""


_omegaconf_resolvers(_Loader)
_omegaconf_resolvers(_Dumper)


def dump_yaml(data: Any) -> str:
    """``data`` as YAML that OmegaConf reads back as exactly ``data``."""
    text: str = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    return text


_STR = CORE + "str"


@dataclass
class YamlDoc:
    """A parsed YAML document and the 1-based line of each key path in it."""

    path: Path
    data: Any
    duplicates: list[tuple[KeyPath, int, int]] = field(default_factory=list)
    text: str | None = field(default=None, repr=False)  # what was parsed (None: unknown)
    # The node graph, while the lines are not read from it yet (see lines).
    root: yaml.Node | None = field(default=None, repr=False)
    _lines: dict[KeyPath, int] | None = field(default=None, init=False, repr=False)
    _top: dict[str, int] | None = field(default=None, init=False, repr=False)

    @property
    def lines(self) -> dict[KeyPath, int]:
        """The line of every key path, read from the node graph when first needed (most
        configs only need the line of 'experiment', and more only for an error)."""
        if self._lines is None:
            self._lines = _record_lines(self.root) if self.root is not None else {}
            self.root = self._top = None
        return self._lines

    @lines.setter
    def lines(self, lines: dict[KeyPath, int]) -> None:
        self._lines = lines
        self.root = self._top = None

    def line(self, *keys: str) -> int:
        """The line of the deepest known prefix of ``keys`` (1 when nothing is known)."""
        if len(keys) == 1 and self._lines is None and isinstance(self.root, yaml.MappingNode):
            if self._top is None:  # a top-level key: its line is in the top mapping
                self._top = {
                    str(key.value): key.start_mark.line + 1
                    for key, _ in self.root.value
                    if isinstance(key, yaml.ScalarNode)
                }  # a repeated key: its last line, as in lines
            return self._top.get(keys[0], 1)
        lines = self.lines
        for end in range(len(keys), 0, -1):
            found = lines.get(tuple(keys[:end]))
            if found is not None:
                return found
        return 1


def _record_lines(root: yaml.Node) -> dict[KeyPath, int]:
    """The line of every key path (iterative: no recursion), read from the node graph.

    Aliases share nodes: each node is visited once, under the first path that reaches it.
    """
    lines: dict[KeyPath, int] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    while stack:
        node, prefix = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[yaml.Node, KeyPath]] = []
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                path = (*prefix, str(key_node.value))
                lines[path] = key_node.start_mark.line + 1
                children.append((value_node, path))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*prefix, str(index)), item.start_mark.line + 1)
                children.append((item, (*prefix, str(index))))
        stack.extend(reversed(children))  # depth first, in document order
    return lines


_SCALARS: dict[str, Any] = {
    tag: _Loader.yaml_constructors[tag]
    for tag in FAST_TAGS
    if tag.endswith(("int", "float", "bool", "null"))
}


def _construct(root: yaml.Node, loader: Any) -> Any:
    """The data of a checked graph whose every tag is in :data:`FAST_TAGS`: what
    ``loader.construct_document(root)`` gives (scalars are converted by the same functions, an
    alias gives the same object), at a fraction of its cost. Should anything fail, PyYAML's
    constructor builds it instead (and raises what it raises)."""
    try:
        return _build(root, loader, {})
    except Exception:
        return loader.construct_document(root)


def _build(node: yaml.Node, loader: Any, built: dict[int, Any]) -> Any:
    if isinstance(node, yaml.ScalarNode):
        tag = node.tag
        return node.value if tag == _STR else _SCALARS[tag](loader, node)
    key = id(node)
    found = built.get(key)
    if found is not None:
        return found  # an alias: the same list or dict
    if isinstance(node, yaml.MappingNode):
        mapping: dict[Any, Any] = {}
        built[key] = mapping
        for key_node, value_node in node.value:
            mapping[_build(key_node, loader, built)] = _build(value_node, loader, built)
        return mapping
    sequence: list[Any] = []
    built[key] = sequence
    for item in node.value:
        sequence.append(_build(item, loader, built))
    return sequence


def _scan(text: str, path: Path) -> None:
    """Run :func:`check_events` over ``text``."""
    scan = _Loader(text)
    try:
        check_events(scan, path)
    finally:
        scan.dispose()


def _char_at(text: str, mark: Any) -> str:
    """The character at a parser mark ('' when unknown)."""
    if mark is None:
        return ""
    lines = text.splitlines()
    if not 0 <= mark.line < len(lines) or not 0 <= mark.column < len(lines[mark.line]):
        return ""
    return str(lines[mark.line][mark.column])


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, path: Path) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = exc.problem or "invalid YAML"
    if "exceeded maximum nesting depth" in problem:  # libyaml's own limit (1000 levels)
        return depth_error(path, line)
    if "cannot start any token" in problem and _char_at(text, exc.problem_mark) == "\t":
        problem += " (a tab: YAML indents with spaces only)"
    if exc.context:
        context = exc.context
        start = exc.context_mark
        if start is not None and line is not None and start.line + 1 != line:
            context += f" started at line {start.line + 1}"  # e.g. an unclosed bracket
        problem = f"{context}, {problem}"
    return ConfigError(
        path,
        line,
        f"YAML syntax error: {problem}",
        "correct the YAML syntax at that line (indent with spaces, quote strings that "
        "contain ': ' or start with a special character)",
    )


def _reader_error(exc: yaml.reader.ReaderError, text: str, path: Path) -> ConfigError:
    char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
    at = text.find(char)
    line = text.count("\n", 0, at) + 1 if at >= 0 else None
    return ConfigError(
        path,
        line,
        f"the character {quote(char)} (U+{ord(char[:1] or ' '):04X}) is not allowed in YAML",
        'remove it; in a double-quoted string write it as an escape, e.g. "\\x07"',
    )


def _bad_value_error(root: yaml.Node, loader: Any, path: Path, exc: Exception) -> ConfigError:
    """A value its explicit tag cannot hold (``!!int abc``, ``!!bool maybe``): name it and its
    line instead of the constructor's bare ValueError."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node, deep=True)
            except (ValueError, KeyError, TypeError, yaml.YAMLError):
                tag = node.tag.rsplit(":", 1)[-1]
                return ConfigError(
                    path,
                    node.start_mark.line + 1,
                    f"{printable(repr(node.value))} is not a valid {tag} (it is tagged !!{tag})",
                    f"write a value of type {tag}, or remove the '!!{tag}' tag",
                )
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                stack.extend((value, key))
    return ConfigError(path, None, f"a value cannot be read: {exc}", "correct the value")


def parse_yaml(text: str, path: Path) -> YamlDoc:
    """Parse ``text`` (the content of ``path``) into a :class:`YamlDoc`.

    Raises :class:`ConfigError` with the line for any syntax error, and for any document beyond
    the limits (:data:`MAX_DEPTH`, :data:`MAX_NODES`, see :mod:`.yamllimits`).
    """
    try:
        compose_first = len(text) <= COMPOSE_FIRST_CHARS
        if not compose_first:
            _scan(text, path)  # before any node of it exists
        loader = _Loader(text)
        try:
            try:
                node = loader.get_single_node()
            except (yaml.YAMLError, RecursionError):
                if compose_first:
                    _scan(text, path)  # a problem before the error in the file is named first
                raise
            doc = YamlDoc(path=path, data=None, text=text)
            if node is not None:
                try:
                    plain, fast = walk(node, doc.duplicates)
                except Beyond as beyond:
                    if compose_first:
                        _scan(text, path)  # names the problem, at its line
                    raise beyond_error(beyond, path) from None  # (the scan always does)
                if not plain and compose_first:
                    _scan(text, path)
                try:
                    if fast:
                        doc.root = node  # its lines are read when first needed
                        doc.data = _construct(node, loader)
                    else:
                        doc.lines = _record_lines(node)  # before: merge keys rewrite nodes
                        doc.data = loader.construct_document(node)
                except (ValueError, KeyError, TypeError) as exc:
                    raise _bad_value_error(node, loader, path, exc) from None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text, path) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"YAML error: {exc}", "correct the YAML syntax") from None
    except RecursionError:  # the pure-Python loader composes recursively; never a traceback
        raise ConfigError(
            path,
            None,
            "lists and mappings are nested too deeply to read",
            FLATTEN,
        ) from None
    return doc


def load_yaml_file(path: Path) -> YamlDoc:
    """Read and parse a YAML file; unreadable, oversized, binary or non-UTF-8 files are a
    :class:`ConfigError`."""
    try:
        with path.open("rb") as file:
            # Never more than the limit, whatever the file claims to be; but ask for what it
            # claims (+1), as read(n) first allocates n bytes (10 MiB for every small config).
            claimed = os.fstat(file.fileno()).st_size
            raw = file.read(min(claimed, MAX_FILE_BYTES) + 1)
            if len(raw) > claimed:  # more than it claimed (growing, or a pipe): read on
                raw += file.read(MAX_FILE_BYTES + 1 - len(raw))
    except OSError as exc:
        raise ConfigError(
            path, None, f"cannot read file: {exc.strerror}", "check the path"
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        try:
            size = f"{path.stat().st_size / 2**20:.1f} MiB"
        except OSError:
            size = "larger"
        raise ConfigError(
            path,
            None,
            f"file is {size}, over xstash's limit of {MAX_FILE_BYTES // 2**20} MiB for a YAML "
            "file (it was not read)",
            "a config holds settings, not data: put large data in a file the tool reads and "
            "give its path in the config",
        )
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ConfigError(
            path,
            line,
            "file is binary (it contains NUL bytes), not YAML text",
            "keep only YAML text files here: move this file out or give it another suffix",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            path, line, "file is not valid UTF-8 text", "save the file as UTF-8"
        ) from None
    return parse_yaml(text, path)
