"""Longest-first ordering: with estimates, pytest-xdist's load scheduling nears the optimum.

Greedy longest-processing-time-first is within 4/3 of the best makespan, and in practice
close to max(total / workers, longest). An experiment's estimate is its config's
``estimated_runtime``; when a config gives none, the duration its last run took (learned from
earlier sessions' results, kept in ``<output root>/.xstash/durations.json``). Experiments with
no estimate at all go last, in file order. The order must be identical on every xdist worker:
only earlier sessions' durations are read, and the file is written once, at the session's end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from xstash_plugin.fsutil import atomic_write, xstash_dir

ORDER_HELP = (
    "the order experiments start in: 'longest' (default) runs those with the longest "
    "estimated_runtime first (or, without one, the duration their last run took), which keeps "
    "-n N workers busy to the end; 'file' keeps pytest's collection order"
)
ORDERS = ("longest", "file")

T = TypeVar("T")


def durations_path(output_root: Path) -> Path:
    return xstash_dir(output_root) / "durations.json"


def load_durations(output_root: Path) -> dict[str, float]:
    """Each experiment's last measured duration in seconds, by pytest node id."""
    try:
        data = json.loads(durations_path(output_root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in data.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
    }


def save_durations(output_root: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Merge the durations of this session's finished runs into the file (atomically)."""
    fresh = {
        str(row["id"]): float(row["duration"])
        for row in rows
        if isinstance(row.get("duration"), (int, float)) and not row.get("reused_from")
    }
    if not fresh:
        return
    path = durations_path(output_root)
    merged = {**load_durations(output_root), **fresh}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(merged, indent=0, sort_keys=True))
    except OSError:
        pass  # an estimate for next time is not worth failing a session for


def longest_first(items: Sequence[T], estimates: Sequence[float | None]) -> list[T]:
    """``items`` with estimates first, longest first (ties in file order), then the rest in
    file order."""
    known = [i for i, e in enumerate(estimates) if e is not None]
    unknown = [i for i, e in enumerate(estimates) if e is None]
    known.sort(key=lambda i: -(estimates[i] or 0.0))  # sort is stable: ties keep file order
    return [items[i] for i in known + unknown]
