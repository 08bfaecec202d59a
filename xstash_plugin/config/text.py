"""Text a person reads: values quoted and shortened, and nothing that could act on a terminal.

Every message of xstash may repeat what a file says, and every file is untrusted input: these
helpers bound what is repeated and escape every character that is not plain text.
"""

from __future__ import annotations

import re
from typing import Any

from xstash_plugin.errors import ConfigError

QUOTE_LIMIT = 1000  # characters of a value a message repeats

# Characters a message must not carry to a terminal: C0/C1 controls (ANSI escapes, bells,
# carriage returns) and bidirectional overrides. A newline is the message's own layout.
_UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_ELIDED = re.compile(r" \(([0-9,]+) chars\)$")


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


def printable(text: str) -> str:
    """``text`` with every character that could act on a terminal written as an escape."""
    return _UNPRINTABLE.sub(lambda m: repr(m[0])[1:-1], text)


def printable_error(error: ConfigError) -> ConfigError:
    """``error`` with its message and fix made :func:`printable` (the same object when clean)."""
    what, fix = printable(error.what), printable(error.fix)
    if (what, fix) == (error.what, error.fix):
        return error
    return ConfigError(error.path, error.line, what, fix)
