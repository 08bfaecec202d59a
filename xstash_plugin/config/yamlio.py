"""YAML loading with line numbers, on libyaml's C loader where available.

Configs are parsed once per collection, so this is on the hot path: compose the node graph with
``CSafeLoader`` (never the Python loader or OmegaConf), build the data from it, and keep the line
of every mapping key so errors can say ``file:line``.

Every file is untrusted input, so the work is bounded before anything is built: a file larger
than :data:`MAX_FILE_BYTES` is not read, and nothing is constructed from a document nested
deeper than :data:`MAX_DEPTH`, one whose anchors and aliases expand to more than
:data:`MAX_NODES` values ("billion laughs"), one with an alias inside its own anchor, a second
document, or any explicit tag that is not plain data (``!!python/...`` and custom tags: nothing
is ever constructed from a tag).

A file of up to :data:`COMPOSE_FIRST_CHARS` characters (every real config) is composed first:
its node graph holds at most about :data:`MAX_NODES` nodes whatever it says (aliases are shared
nodes, libyaml stops at 1,000 levels), and one walk over it checks the limits and finds the
duplicate keys (:func:`_walk`). Only when the walk finds a problem, or composing fails, does the
streaming scan of the parser's events (:func:`_check_events`) run, to name the first problem in
document order at its line. A larger file is scanned before it is composed, so that no node of a
document beyond the limits is ever built. A plain document's data is then built directly
(:func:`_construct`), and its lines are read from the graph only when asked for.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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


# The limits below keep every downstream step (OmegaConf, Hydra, JSON, hashing) bounded.
MAX_FILE_BYTES = 10 * 1024 * 1024  # 10 MiB: a config holds settings, not data
MAX_NODES = 100_000  # values (scalars, lists, mappings, keys) after expanding aliases
MAX_DEPTH = 32  # nested lists/mappings, top level included: OmegaConf recurses ~13 frames each
# Up to this many characters a file is composed before it is checked: a node takes about a
# character at the least ('?,' in a flow mapping: two), so its graph stays within MAX_NODES.
COMPOSE_FIRST_CHARS = MAX_NODES // 2

_CORE = "tag:yaml.org,2002:"
# Explicit tags that still mean plain data (what OmegaConf and Hydra can hold).
_PLAIN_KINDS = ("str", "int", "float", "bool", "null", "seq", "map", "merge", "timestamp")
PLAIN_TAGS = frozenset({"!", *(_CORE + kind for kind in _PLAIN_KINDS)})  # timestamp: a string
# The tags :func:`_construct` builds itself (a merge key or a timestamp is left to PyYAML).
_FAST_KINDS = ("str", "int", "float", "bool", "null", "seq", "map")
_FAST_TAGS = frozenset(_CORE + kind for kind in _FAST_KINDS)
_STR = _CORE + "str"

KeyPath = tuple[str, ...]


QUOTE_LIMIT = 1000  # characters of a value a message repeats

# Characters a message must not carry to a terminal: C0/C1 controls (ANSI escapes, bells,
# carriage returns) and bidirectional overrides. A newline is the message's own layout.
_UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for messages: control characters escaped, at most ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def elide(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its head and tail with its length:
    for every text a person reads (commands, table cells), never for records."""
    if len(text) <= limit:
        return text
    keep = max(limit // 2 - 12, 4)
    total = f"{len(text):,}"
    already = _ELIDED.search(text)
    if (
        already and "..." in text[: already.start()]
    ):  # elided before (a record's value, shown in a table): keep the true length
        text, total = text[: already.start()], already[1]
    return f"{text[:keep]}...{text[-keep:]} ({total} chars)"


_ELIDED = re.compile(r" \(([0-9,]+) chars\)$")


def printable(text: str) -> str:
    """``text`` with every character that could act on a terminal written as an escape."""
    return _UNPRINTABLE.sub(lambda m: repr(m[0])[1:-1], text)


def printable_error(error: ConfigError) -> ConfigError:
    """``error`` with its message and fix made :func:`printable` (the same object when clean)."""
    what, fix = printable(error.what), printable(error.fix)
    if (what, fix) == (error.what, error.fix):
        return error
    return ConfigError(error.path, error.line, what, fix)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


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


class _Beyond(Exception):
    """The walk left the limits (:func:`_walk`); the event scan says where."""

    def __init__(self, what: str, line: int) -> None:
        super().__init__(what)
        self.what = what
        self.line = line


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


def _walk(root: yaml.Node, doc: YamlDoc) -> tuple[bool, bool]:
    """Record every duplicate key and check the limits, in one pass over the composed graph
    (recursive, but never deeper than :data:`MAX_DEPTH`). Lines are not recorded here: the
    document reads them from the graph when it is first asked for one (:meth:`YamlDoc.line`).

    Aliases share nodes: each node is visited once, under the first path that reaches it, and
    its expanded size and depth are kept for every later alias to it; reaching a node that is
    still being visited is an alias inside its own anchor. Raises :class:`_Beyond` at the first
    limit passed. Returns whether the document is plain (False: the event scan must judge it:
    a tag that is not plain data, or a key that is itself a list or mapping, whose values are
    not counted here) and whether :func:`_construct` can build it (only :data:`_FAST_TAGS`).
    """
    walk = _Walk(doc.duplicates)
    if isinstance(root, yaml.ScalarNode):
        if root.tag not in _FAST_TAGS:
            walk.tag(root.tag)
    else:
        walk.visit(root, (), 1)
    return walk.plain, walk.fast


class _Walk:
    """The state of one :func:`_walk` (a class, not closures: closures that call each other
    are a reference cycle, left for the garbage collector with all they hold)."""

    __slots__ = ("done", "duplicates", "fast", "plain", "walking")

    def __init__(self, duplicates: list[tuple[KeyPath, int, int]]) -> None:
        self.duplicates = duplicates
        self.done: dict[int, tuple[int, int]] = {}  # node id -> (expanded values, levels)
        self.walking: set[int] = set()  # ids of the lists and mappings being visited
        self.plain = True
        self.fast = True

    def tag(self, tag: str) -> None:
        """Note a tag other than :data:`_FAST_TAGS`."""
        self.fast = False
        if tag not in PLAIN_TAGS:
            self.plain = False

    def nested(self, node: yaml.Node, path: KeyPath, level: int) -> tuple[int, int]:
        """Values and levels of the list or mapping ``node`` inside another, at nesting
        ``level`` (1: the top)."""
        key = id(node)
        known = self.done.get(key)
        if known is None:
            if key in self.walking:
                raise _Beyond("recursion", node.start_mark.line + 1)
            if level > MAX_DEPTH:
                raise _Beyond("depth", node.start_mark.line + 1)
            return self.visit(node, path, level)
        if level + known[1] - 1 > MAX_DEPTH:
            raise _Beyond("depth", node.start_mark.line + 1)
        return known

    def visit(self, node: yaml.Node, prefix: KeyPath, level: int) -> tuple[int, int]:
        """Values and levels of the list or mapping ``node``, at nesting ``level``."""
        key = id(node)
        self.walking.add(key)
        if node.tag not in _FAST_TAGS:
            self.tag(node.tag)
        size = 1
        levels = 0
        inside: list[tuple[yaml.Node, str]] = []  # lists and mappings in it, after its keys
        if isinstance(node, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.plain = self.fast = False  # the scan counts what such a key holds
                    continue
                if key_node.tag not in _FAST_TAGS:
                    self.tag(key_node.tag)  # '<<' too: merging is left to PyYAML
                name = str(key_node.value)
                if name in first and name != "<<":  # several merge keys all merge
                    self.duplicates.append(
                        (
                            (*prefix, name),
                            first[name].start_mark.line + 1,
                            key_node.start_mark.line + 1,
                        )
                    )
                else:
                    first[name] = key_node
                if isinstance(value_node, yaml.ScalarNode):
                    size += 2
                    if value_node.tag not in _FAST_TAGS:
                        self.tag(value_node.tag)
                else:
                    size += 1
                    inside.append((value_node, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                if isinstance(item, yaml.ScalarNode):
                    size += 1
                    if item.tag not in _FAST_TAGS:
                        self.tag(item.tag)
                else:
                    inside.append((item, str(index)))
        for child, name in inside:  # in document order: so are the duplicates they hold
            values, deep = self.nested(child, (*prefix, name), level + 1)
            size += values
            if deep > levels:
                levels = deep
        if size > MAX_NODES:
            raise _Beyond("values", node.start_mark.line + 1)
        self.walking.discard(key)
        self.done[key] = (size, levels + 1)
        return size, levels + 1


@dataclass
class _Open:
    """A list or mapping the event scan is inside of."""

    anchor: str | None
    start_total: int  # expanded values before it
    depth: int
    deepest: int  # the deepest level reached inside it (aliases expanded)


def _check_events(loader: Any, path: Path) -> None:
    """Stream the parser's events once: bound depth and expanded size, refuse a second document,
    recursive aliases and tags that are not plain data, each at its line. Runs before composing
    a large file, and after composing a small one only when there is a problem to name."""
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (expanded values, levels of nesting)
    opened: list[_Open] = []
    total = 0
    documents = 0
    while True:
        event = loader.get_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.StreamEndEvent):
            return
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise ConfigError(
                    path,
                    line,
                    "a second YAML document starts here: this file holds more than one "
                    "('---' separates documents)",
                    "keep one document per file: remove this '---' and merge the parts, or "
                    "move the second document to a file of its own",
                )
            continue
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in PLAIN_TAGS:
            short = _short_tag(tag)
            why = (
                "xstash reads YAML as plain data and never creates Python objects"
                if short.startswith("!!python/")
                else "a config holds plain values: strings, numbers, booleans, null, lists "
                "and mappings"
            )
            raise ConfigError(
                path,
                line,
                f"the tag {quote(short)} is not allowed: {why}",
                f"remove {quote(short)} and write the value as plain YAML",
            )
        if isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            inside = next((o for o in opened if o.anchor == anchor), None)
            if inside is not None:
                raise ConfigError(
                    path,
                    line,
                    f"alias '*{anchor}' is inside its own anchor '&{anchor}': the value "
                    "would contain itself forever",
                    f"an alias repeats a block that ends before it: move '*{anchor}' out of "
                    "that block",
                )
            if anchor not in sizes:
                continue  # undefined: composing reports it with its line
            size, levels = sizes[anchor]
            total += size
            reached = len(opened) + levels
            via_alias = levels > 0
        elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            total += 1
            via_alias = False
            if isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    sizes[str(event.anchor)] = (1, 0)
                reached = len(opened)
            else:
                opened.append(_Open(event.anchor, total - 1, len(opened) + 1, len(opened) + 1))
                reached = len(opened)
        elif isinstance(event, yaml.CollectionEndEvent):
            closed = opened.pop()
            if closed.anchor is not None:
                sizes[str(closed.anchor)] = (
                    total - closed.start_total,
                    closed.deepest - closed.depth + 1,
                )
            if opened:
                opened[-1].deepest = max(opened[-1].deepest, closed.deepest)
            continue
        else:
            continue
        if opened:
            opened[-1].deepest = max(opened[-1].deepest, reached)
        if reached > MAX_DEPTH:
            raise ConfigError(
                path,
                line,
                f"lists and mappings are nested more than {MAX_DEPTH} levels deep here"
                + (f" (counting what '*{event.anchor}' repeats)" if via_alias else ""),
                f"flatten the structure: xstash, OmegaConf and Hydra take at most {MAX_DEPTH} "
                "levels",
            )
        if total > MAX_NODES:
            raise ConfigError(
                path,
                line,
                f"the document expands to more than {MAX_NODES:,} values here: anchors and "
                "aliases ('&name' ... '*name') repeat whole blocks, and repeats of repeats "
                "multiply",
                f"a config holds settings, not data: keep it under {MAX_NODES:,} values with "
                "aliases expanded, and put large data in a file the tool reads",
            )


_SCALARS: dict[str, Any] = {
    tag: _Loader.yaml_constructors[tag]
    for tag in _FAST_TAGS
    if tag.endswith(("int", "float", "bool", "null"))
}


def _construct(root: yaml.Node, loader: Any) -> Any:
    """The data of a checked graph whose every tag is in :data:`_FAST_TAGS`: what
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
    """Run :func:`_check_events` over ``text``."""
    scan = _Loader(text)
    try:
        _check_events(scan, path)
    finally:
        scan.dispose()


def _beyond_error(beyond: _Beyond, path: Path) -> ConfigError:
    """What :func:`_walk` found, should the event scan not have named it first."""
    if beyond.what == "recursion":
        return ConfigError(
            path,
            beyond.line,
            "an alias is inside its own anchor: the value would contain itself forever",
            "an alias repeats a block that ends before it: move it out of that block",
        )
    if beyond.what == "depth":
        return ConfigError(
            path,
            beyond.line,
            f"lists and mappings are nested more than {MAX_DEPTH} levels deep here",
            f"flatten the structure: xstash, OmegaConf and Hydra take at most {MAX_DEPTH} levels",
        )
    return ConfigError(
        path,
        beyond.line,
        f"the document expands to more than {MAX_NODES:,} values: anchors and aliases "
        "('&name' ... '*name') repeat whole blocks, and repeats of repeats multiply",
        f"a config holds settings, not data: keep it under {MAX_NODES:,} values with aliases "
        "expanded, and put large data in a file the tool reads",
    )


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
        return ConfigError(
            path,
            line,
            f"lists and mappings are nested more than {MAX_DEPTH} levels deep here",
            f"flatten the structure: xstash, OmegaConf and Hydra take at most {MAX_DEPTH} levels",
        )
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
    the limits (:data:`MAX_DEPTH`, :data:`MAX_NODES`).
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
                    plain, fast = _walk(node, doc)
                except _Beyond as beyond:
                    if compose_first:
                        _scan(text, path)  # names the problem, at its line
                    raise _beyond_error(beyond, path) from None  # (the scan always does)
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
            f"flatten the structure: xstash, OmegaConf and Hydra take at most {MAX_DEPTH} levels",
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
