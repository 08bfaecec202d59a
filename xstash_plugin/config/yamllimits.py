"""The bounds every YAML file is held to before anything is built from it.

Every file is untrusted input, so the work is bounded: a file larger than
:data:`MAX_FILE_BYTES` is not read, and nothing is constructed from a document nested deeper than
:data:`MAX_DEPTH`, one whose anchors and aliases expand to more than :data:`MAX_NODES` values
("billion laughs"), one with an alias inside its own anchor, a second document, or any explicit
tag that is not plain data (``!!python/...`` and custom tags: nothing is ever constructed from a
tag).

Two checks hold them (:mod:`.yamlio` says when each runs): :func:`walk`, one pass over a
composed node graph, and :func:`check_events`, a streaming scan of the parser's events that
names the first problem in document order at its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xstash_plugin.config.text import quote
from xstash_plugin.errors import ConfigError

# The limits below keep every downstream step (OmegaConf, Hydra, JSON, hashing) bounded.
MAX_FILE_BYTES = 10 * 1024 * 1024  # 10 MiB: a config holds settings, not data
MAX_NODES = 100_000  # values (scalars, lists, mappings, keys) after expanding aliases
MAX_DEPTH = 32  # nested lists/mappings, top level included: OmegaConf recurses ~13 frames each
# Up to this many characters a file is composed before it is checked: a node takes about a
# character at the least ('?,' in a flow mapping: two), so its graph stays within MAX_NODES.
COMPOSE_FIRST_CHARS = MAX_NODES // 2

CORE = "tag:yaml.org,2002:"
# Explicit tags that still mean plain data (what OmegaConf and Hydra can hold).
_PLAIN_KINDS = ("str", "int", "float", "bool", "null", "seq", "map", "merge", "timestamp")
PLAIN_TAGS = frozenset({"!", *(CORE + kind for kind in _PLAIN_KINDS)})  # timestamp: a string
# The tags yamlio's fast constructor builds itself (a merge key or a timestamp is left to PyYAML).
_FAST_KINDS = ("str", "int", "float", "bool", "null", "seq", "map")
FAST_TAGS = frozenset(CORE + kind for kind in _FAST_KINDS)

KeyPath = tuple[str, ...]

FLATTEN = f"flatten the structure: xstash, OmegaConf and Hydra take at most {MAX_DEPTH} levels"


def depth_error(path: Path, line: int | None, alias: str | None = None) -> ConfigError:
    """Nested deeper than :data:`MAX_DEPTH` at ``line`` (counting what ``*alias`` repeats)."""
    counting = f" (counting what '*{alias}' repeats)" if alias is not None else ""
    return ConfigError(
        path,
        line,
        f"lists and mappings are nested more than {MAX_DEPTH} levels deep here{counting}",
        FLATTEN,
    )


def size_error(path: Path, line: int | None, here: bool) -> ConfigError:
    """More than :data:`MAX_NODES` values with aliases expanded (``here``: at ``line``)."""
    return ConfigError(
        path,
        line,
        f"the document expands to more than {MAX_NODES:,} values{' here' if here else ''}: "
        "anchors and aliases ('&name' ... '*name') repeat whole blocks, and repeats of repeats "
        "multiply",
        f"a config holds settings, not data: keep it under {MAX_NODES:,} values with aliases "
        "expanded, and put large data in a file the tool reads",
    )


class Beyond(Exception):
    """The walk left the limits (:func:`walk`); the event scan says where."""

    def __init__(self, what: str, line: int) -> None:
        super().__init__(what)
        self.what = what
        self.line = line


def beyond_error(beyond: Beyond, path: Path) -> ConfigError:
    """What :func:`walk` found, should the event scan not have named it first."""
    if beyond.what == "recursion":
        return ConfigError(
            path,
            beyond.line,
            "an alias is inside its own anchor: the value would contain itself forever",
            "an alias repeats a block that ends before it: move it out of that block",
        )
    if beyond.what == "depth":
        return depth_error(path, beyond.line)
    return size_error(path, beyond.line, here=False)


def walk(root: yaml.Node, duplicates: list[tuple[KeyPath, int, int]]) -> tuple[bool, bool]:
    """Record every duplicate key in ``duplicates`` and check the limits, in one pass over the
    composed graph (recursive, but never deeper than :data:`MAX_DEPTH`). Lines are not recorded
    here: a document reads them from the graph when it is first asked for one.

    Aliases share nodes: each node is visited once, under the first path that reaches it, and
    its expanded size and depth are kept for every later alias to it; reaching a node that is
    still being visited is an alias inside its own anchor. Raises :class:`Beyond` at the first
    limit passed. Returns whether the document is plain (False: the event scan must judge it:
    a tag that is not plain data, or a key that is itself a list or mapping, whose values are
    not counted here) and whether the fast constructor can build it (only :data:`FAST_TAGS`).
    """
    state = _Walk(duplicates)
    if isinstance(root, yaml.ScalarNode):
        if root.tag not in FAST_TAGS:
            state.tag(root.tag)
    else:
        state.visit(root, (), 1)
    return state.plain, state.fast


class _Walk:
    """The state of one :func:`walk` (a class, not closures: closures that call each other
    are a reference cycle, left for the garbage collector with all they hold)."""

    __slots__ = ("done", "duplicates", "fast", "plain", "walking")

    def __init__(self, duplicates: list[tuple[KeyPath, int, int]]) -> None:
        self.duplicates = duplicates
        self.done: dict[int, tuple[int, int]] = {}  # node id -> (expanded values, levels)
        self.walking: set[int] = set()  # ids of the lists and mappings being visited
        self.plain = True
        self.fast = True

    def tag(self, tag: str) -> None:
        """Note a tag other than :data:`FAST_TAGS`."""
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
                raise Beyond("recursion", node.start_mark.line + 1)
            if level > MAX_DEPTH:
                raise Beyond("depth", node.start_mark.line + 1)
            return self.visit(node, path, level)
        if level + known[1] - 1 > MAX_DEPTH:
            raise Beyond("depth", node.start_mark.line + 1)
        return known

    def visit(self, node: yaml.Node, prefix: KeyPath, level: int) -> tuple[int, int]:
        """Values and levels of the list or mapping ``node``, at nesting ``level``."""
        key = id(node)
        self.walking.add(key)
        if node.tag not in FAST_TAGS:
            self.tag(node.tag)
        inside: list[tuple[yaml.Node, str]] = []  # lists and mappings in it, after its keys
        if isinstance(node, yaml.MappingNode):
            size = self.mapping(node, prefix, inside)
        else:
            size = self.sequence(node, inside)
        levels = 0
        for child, name in inside:  # in document order: so are the duplicates they hold
            values, deep = self.nested(child, (*prefix, name), level + 1)
            size += values
            if deep > levels:
                levels = deep
        if size > MAX_NODES:
            raise Beyond("values", node.start_mark.line + 1)
        self.walking.discard(key)
        self.done[key] = (size, levels + 1)
        return size, levels + 1

    def mapping(
        self, node: yaml.MappingNode, prefix: KeyPath, inside: list[tuple[yaml.Node, str]]
    ) -> int:
        """The values of ``node`` itself and its scalars; its lists and mappings go to
        ``inside``; repeated keys to the duplicates."""
        size = 1
        first: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.plain = self.fast = False  # the scan counts what such a key holds
                continue
            if key_node.tag not in FAST_TAGS:
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
                if value_node.tag not in FAST_TAGS:
                    self.tag(value_node.tag)
            else:
                size += 1
                inside.append((value_node, name))
        return size

    def sequence(self, node: yaml.Node, inside: list[tuple[yaml.Node, str]]) -> int:
        """The values of the list ``node`` itself and its scalars; its lists and mappings go
        to ``inside``."""
        size = 1
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                if isinstance(item, yaml.ScalarNode):
                    size += 1
                    if item.tag not in FAST_TAGS:
                        self.tag(item.tag)
                else:
                    inside.append((item, str(index)))
        return size


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(CORE) :] if tag.startswith(CORE) else tag


@dataclass
class _Open:
    """A list or mapping the event scan is inside of."""

    anchor: str | None
    start_total: int  # expanded values before it
    depth: int
    deepest: int  # the deepest level reached inside it (aliases expanded)


def check_events(loader: Any, path: Path) -> None:
    """Stream the parser's events once: bound depth and expanded size, refuse a second document,
    recursive aliases and tags that are not plain data, each at its line. Runs before composing
    a large file, and after composing a small one only when there is a problem to name."""
    scan = _EventScan(path)
    while True:
        event = loader.get_event()
        if isinstance(event, yaml.StreamEndEvent):
            return
        scan.take(event)


class _EventScan:
    """The state of one :func:`check_events`."""

    __slots__ = ("documents", "opened", "path", "sizes", "total")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sizes: dict[str, tuple[int, int]] = {}  # anchor -> (expanded values, levels)
        self.opened: list[_Open] = []
        self.total = 0
        self.documents = 0

    def take(self, event: Any) -> None:
        line = event.start_mark.line + 1
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise ConfigError(
                    self.path,
                    line,
                    "a second YAML document starts here: this file holds more than one "
                    "('---' separates documents)",
                    "keep one document per file: remove this '---' and merge the parts, or "
                    "move the second document to a file of its own",
                )
            return
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in PLAIN_TAGS:
            raise self.tag_error(tag, line)
        alias: str | None = None
        if isinstance(event, yaml.AliasEvent):
            alias = str(event.anchor)
            self.inside_own_anchor(alias, line)
            if alias not in self.sizes:
                return  # undefined: composing reports it with its line
            reached, via_alias = self.repeat(alias)
        elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            reached, via_alias = self.value(event), False
        elif isinstance(event, yaml.CollectionEndEvent):
            self.close()
            return
        else:
            return
        if self.opened:
            self.opened[-1].deepest = max(self.opened[-1].deepest, reached)
        if reached > MAX_DEPTH:
            raise depth_error(self.path, line, alias if via_alias else None)
        if self.total > MAX_NODES:
            raise size_error(self.path, line, here=True)

    def tag_error(self, tag: str, line: int) -> ConfigError:
        short = _short_tag(tag)
        why = (
            "xstash reads YAML as plain data and never creates Python objects"
            if short.startswith("!!python/")
            else "a config holds plain values: strings, numbers, booleans, null, lists and mappings"
        )
        return ConfigError(
            self.path,
            line,
            f"the tag {quote(short)} is not allowed: {why}",
            f"remove {quote(short)} and write the value as plain YAML",
        )

    def inside_own_anchor(self, anchor: str, line: int) -> None:
        """Raise when the alias ``*anchor`` is inside the block its anchor names."""
        if any(o.anchor == anchor for o in self.opened):
            raise ConfigError(
                self.path,
                line,
                f"alias '*{anchor}' is inside its own anchor '&{anchor}': the value "
                "would contain itself forever",
                f"an alias repeats a block that ends before it: move '*{anchor}' out of that block",
            )

    def repeat(self, anchor: str) -> tuple[int, bool]:
        """The level an alias reaches, and whether it repeats a list or mapping."""
        size, levels = self.sizes[anchor]
        self.total += size
        return len(self.opened) + levels, levels > 0

    def value(self, event: Any) -> int:
        """Count a scalar, or open a list or mapping; the level it reaches."""
        self.total += 1
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.ScalarEvent):
            if anchor is not None:
                self.sizes[str(anchor)] = (1, 0)
        else:
            level = len(self.opened) + 1
            self.opened.append(_Open(anchor, self.total - 1, level, level))
        return len(self.opened)

    def close(self) -> None:
        closed = self.opened.pop()
        if closed.anchor is not None:
            self.sizes[str(closed.anchor)] = (
                self.total - closed.start_total,
                closed.deepest - closed.depth + 1,
            )
        if self.opened:
            self.opened[-1].deepest = max(self.opened[-1].deepest, closed.deepest)
