"""Names that become pytest markers: tags, and tool names (an experiment is marked with its
tool's name, so ``-m <tool>`` selects it). Such a name must be one pytest can take as a marker,
and not one that would change what pytest does with the item."""

from __future__ import annotations

import re

MARKER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
# Names pytest keeps for itself: a tag or tool named 'skip' would silently skip experiments.
RESERVED_TAGS = frozenset(
    {
        "skip",
        "skipif",
        "xfail",
        "parametrize",
        "usefixtures",
        "filterwarnings",
        "tryfirst",
        "trylast",
        "and",
        "or",
        "not",
        "True",
        "False",
        "None",
    }
)


def marker_problem(name: str, label: str, note: str = "") -> tuple[str, str] | None:
    """Why ``name`` (a ``label``: 'tag', 'tool name') cannot mark experiments, as a message
    (ending in ``note``) and a fix; None when it can."""
    if not MARKER_NAME.fullmatch(name):
        return (
            f"{label} {name!r} cannot be a pytest marker{note}",
            "use letters, digits, '_', '.' and '-', starting with a letter or '_'",
        )
    if name in RESERVED_TAGS:
        return (
            f"{label} '{name}' is reserved by pytest{note}",
            f"choose another name, e.g. '{name}_'",
        )
    return None
