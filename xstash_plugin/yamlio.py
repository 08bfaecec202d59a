"""YAML loading with line numbers, on libyaml's C loader where available.

Configs are parsed once per collection, so this is on the hot path: compose the node graph with
``CSafeLoader`` (never the Python loader or OmegaConf), build the data from it, and keep the line
of every mapping key so errors can say ``file:line``.

Every file is untrusted input, so the work is bounded before anything is built: a file larger
than :data:`MAX_FILE_BYTES` is not read, and a first streaming pass over the parser's events
rejects, before any node exists, a document nested deeper than :data:`MAX_DEPTH`, one whose
anchors and aliases expand to more than :data:`MAX_NODES` values ("billion laughs"), an alias
inside its own anchor, a second document, and any explicit tag that is not plain data
(``!!python/...`` and custom tags: nothing is ever constructed from a tag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

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

_CORE = "tag:yaml.org,2002:"
# Explicit tags that still mean plain data (what OmegaConf and Hydra can hold).
_PLAIN_KINDS = ("str", "int", "float", "bool", "null", "seq", "map", "merge", "timestamp")
PLAIN_TAGS = frozenset({"!", *(_CORE + kind for kind in _PLAIN_KINDS)})  # timestamp: a string

KeyPath = tuple[str, ...]


QUOTE_LIMIT = 1000  # characters of a value a message repeats

# Characters a message must not carry to a terminal: C0/C1 controls (ANSI escapes, bells,
# carriage returns) and bidirectional overrides. A newline is the message's own layout.
_UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for messages: control characters escaped, at most ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


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
    lines: dict[KeyPath, int] = field(default_factory=dict)
    duplicates: list[tuple[KeyPath, int, int]] = field(default_factory=list)

    def line(self, *keys: str) -> int:
        """The line of the deepest known prefix of ``keys`` (1 when nothing is known)."""
        for end in range(len(keys), 0, -1):
            found = self.lines.get(tuple(keys[:end]))
            if found is not None:
                return found
        return 1


def _walk(root: yaml.Node, doc: YamlDoc) -> None:
    """Record the line of every key path and every duplicate key (iterative: no recursion).

    Aliases share nodes: each node is visited once, under the first path that reaches it.
    """
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    while stack:
        node, prefix = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[yaml.Node, KeyPath]] = []
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in first and key != "<<":  # several merge keys all merge
                    doc.duplicates.append(((*prefix, key), first[key], line))
                else:
                    first[key] = line
                doc.lines[(*prefix, key)] = line
                children.append((value_node, (*prefix, key)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                doc.lines.setdefault((*prefix, str(index)), item.start_mark.line + 1)
                children.append((item, (*prefix, str(index))))
        stack.extend(reversed(children))  # depth first, in document order


@dataclass
class _Open:
    """A list or mapping the event scan is inside of."""

    anchor: str | None
    start_total: int  # expanded values before it
    depth: int
    deepest: int  # the deepest level reached inside it (aliases expanded)


def _check_events(loader: Any, path: Path) -> None:
    """Stream the parser's events once, before composing: bound depth and expanded size, refuse
    a second document, recursive aliases and tags that are not plain data."""
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


def parse_yaml(text: str, path: Path) -> YamlDoc:
    """Parse ``text`` (the content of ``path``) into a :class:`YamlDoc`.

    Raises :class:`ConfigError` with the line for any syntax error, and for any document beyond
    the limits (:data:`MAX_DEPTH`, :data:`MAX_NODES`).
    """
    try:
        scan = _Loader(text)
        try:
            _check_events(scan, path)
        finally:
            scan.dispose()
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            doc = YamlDoc(path=path, data=None)
            if node is not None:
                _walk(node, doc)  # before constructing: merge keys ('<<') rewrite the nodes
                doc.data = loader.construct_document(node)
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
            raw = file.read(MAX_FILE_BYTES + 1)  # never more, whatever the file claims to be
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
