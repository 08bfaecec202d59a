"""The command line a run sends to a Hydra tool: argv only, never a shell."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from typing import Any

from xstash_plugin.config.text import elide

_PLAIN = re.compile(r"[A-Za-z0-9_/.\-+:@%~]+")


_DICT_KEY = re.compile(r"[A-Za-z_][\w-]*")


def _quoted(value: str) -> str:
    # Inside a quoted string Hydra unescapes only backslashes that precede a quote (or the
    # closing quote); everything else (`,`, `=`, `$`, brackets, spaces, newlines) is literal.
    out: list[str] = []
    backslashes = 0
    for char in value:
        if char == "\\":
            backslashes += 1
            continue
        if char == "'":
            out.append("\\" * (2 * backslashes) + "\\'")
        else:
            out.append("\\" * backslashes + char)
        backslashes = 0
    out.append("\\" * (2 * backslashes))  # backslashes before the closing quote
    return "'" + "".join(out) + "'"


def hydra_quote(value: str) -> str:
    """A path or name for Hydra's override grammar: bare when plain, else quoted."""
    return value if _PLAIN.fullmatch(value) else _quoted(value)


def override_value(value: Any) -> str:
    """``value`` (as YAML loaded it) in Hydra's override grammar, so the tool gets exactly it.

    Strings are always quoted, so ``'true'``, ``'1.5'``, ``'a,b'`` or ``'$(cmd)'`` stay strings;
    numbers, booleans and null stay typed; lists and mappings are written element by element.
    Raises ``ValueError`` for what Hydra's grammar or a command line cannot express (a mapping
    key that is not a plain name, a NUL character).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{value!r} contains a NUL character, which no command line carries")
        return _quoted(value)
    if isinstance(value, list):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if not isinstance(key, str) or not _DICT_KEY.fullmatch(key):
                raise ValueError(f"mapping key {key!r} cannot be written as a Hydra override")
            parts.append(f"{key}:{override_value(item)}")
        return "{" + ",".join(parts) + "}"
    raise ValueError(f"{value!r} ({type(value).__name__}) cannot be written as a Hydra override")


def display_command(argv: Sequence[str], limit: int = 300) -> str:
    """``argv`` as a shell line for a person to read: each argument over ``limit`` characters
    elided (a 1 MB sweep value would otherwise be 1 MB of report). The record keeps argv whole."""
    return shlex.join(elide(arg, limit) for arg in argv)


def overrides_for(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    """``key=value`` override strings; a later pair for the same key replaces an earlier one."""
    merged: dict[str, Any] = {}
    for key, value in pairs:
        merged.pop(key, None)
        merged[key] = value
    return [f"{key}={override_value(value)}" for key, value in merged.items()]
