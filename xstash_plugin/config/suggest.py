"""'Did you mean ...?' hints for names a person typed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The registered name closest to ``name``, if any is close enough to be a typo."""
    matches = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` or an empty string."""
    match = closest(name, choices)
    return f" Did you mean '{match}'?" if match else ""
