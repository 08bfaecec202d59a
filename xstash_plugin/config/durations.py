"""Durations as people write them in configs: ``90s``, ``5m``, ``1h30m``, ``2d``, or seconds."""

from __future__ import annotations

import re
from functools import lru_cache

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")

DURATION_HELP = "a duration like '90s', '5m', '1h30m', '2d', or a number of seconds"


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raises ``ValueError`` with a readable reason."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not {DURATION_HELP}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not {DURATION_HELP}")
    if len(value) > 64:  # a long string is not worth keeping in the cache
        return _parse_text.__wrapped__(value)
    return _parse_text(value)


@lru_cache(maxsize=1024)
def _parse_text(value: str) -> float:
    """Seconds in a duration string (configs repeat the same few: cached; errors are not)."""
    text = value.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not text or not _WHOLE.fullmatch(text):
        raise ValueError(f"{value!r} is not {DURATION_HELP}")
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """``1h02m``, ``3m05s``, ``4.2s``: short and exact enough for a report."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_short(seconds: float) -> str:
    """``12s``, ``3m05s``, ``30m``, ``1h02m``: whole seconds, for live progress."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
