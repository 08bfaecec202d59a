"""Launchers and their resources, as configs and meta.yaml declare them.

``launcher: slurm`` (a tool's default in meta.yaml, ``xstash.launcher`` in a config, or
``--xstash-launcher`` for the session) runs an experiment as a SLURM job; ``resources`` say what
the job asks for. Everything is checked at collection.
"""

from __future__ import annotations

import re
from typing import Any

from xstash_plugin.config.durations import DURATION_HELP, parse_duration

LAUNCHERS = ("local", "slurm")
RESOURCE_KEYS = {
    "partition": "SLURM partition",
    "time": "time limit, a duration ('2h', '30m')",
    "cpus": "CPUs per task",
    "gpus": "GPUs per node; locally also a share of one GPU (0.5: two such runs share it)",
    "mem": "memory per node, e.g. 4G, 500M, 16GB",
    "nodes": "number of nodes",
    "account": "account to charge",
    "qos": "quality of service",
    "constraint": "node features, e.g. 'a100|v100'",
    "pack": "true: run inside a shared SLURM allocation with other short experiments",
    "extra": "any other sbatch options, as a mapping: {exclusive: true, 'mail-type': END}",
}
_MEM = re.compile(r"([0-9]+)\s*([KMGT])?B?", re.I)
_NAME = re.compile(r"[A-Za-z0-9_.,|&:!()\[\]*-]+")


class ResourceError(ValueError):
    """A bad resource; ``key`` names it (None: the mapping as a whole)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def check_launcher(value: Any) -> str:
    if value not in LAUNCHERS:
        raise ValueError(f"launcher {value!r} is not one of {', '.join(LAUNCHERS)}")
    return str(value)


def mem_megabytes(value: Any) -> int:
    """'4G' -> 4096; an int is megabytes (as sbatch --mem)."""
    if isinstance(value, bool):
        raise ValueError(f"mem {value!r} is not a memory size")
    if isinstance(value, int) and value > 0:
        return value
    match = _MEM.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"mem {value!r} is not a memory size (write 4G, 500M, 16GB)")
    number, unit = int(match.group(1)), (match.group(2) or "M").upper()
    scaled = number * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]
    if scaled < 1:
        raise ValueError(f"mem {value!r} is less than one megabyte")
    return int(scaled)


def check_resources(value: Any) -> dict[str, Any]:
    """The resources mapping, normalised; raises ValueError naming the key."""
    if not isinstance(value, dict):
        raise ResourceError(f"resources must be a mapping, not {value!r}")
    out: dict[str, Any] = {}
    for key, raw in value.items():
        key = str(key)
        if key not in RESOURCE_KEYS:
            from xstash_plugin.config.suggest import did_you_mean

            raise ResourceError(
                f"unknown resource '{key}'.{did_you_mean(key, RESOURCE_KEYS)} "
                f"Known: {', '.join(RESOURCE_KEYS)}",
                key,
            )
        if key == "time":
            try:
                seconds = parse_duration(raw)
            except ValueError as exc:
                raise ResourceError(f"time: {exc}; write {DURATION_HELP}", key) from None
            if seconds <= 0:
                raise ResourceError(f"time {raw!r} must be more than zero", key)
            out[key] = seconds
        elif key == "mem":
            try:
                out[key] = mem_megabytes(raw)
            except ValueError as exc:
                raise ResourceError(str(exc), key) from None
        elif key == "gpus":
            whole = isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0
            share = isinstance(raw, float) and 0 < raw < 1
            if not (whole or share):
                raise ResourceError(
                    f"gpus must be a whole number (0, 1, 2, ...) or a share of one GPU between "
                    f"0 and 1 (0.5, 0.25), not {raw!r}: runs share a GPU only when each asks "
                    "for less than one",
                    key,
                )
            out[key] = raw
        elif key in ("cpus", "nodes"):
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
                raise ResourceError(f"{key} must be a whole number, not {raw!r}", key)
            out[key] = raw
        elif key == "pack":
            if not isinstance(raw, bool):
                raise ResourceError(f"pack must be true or false, not {raw!r}", key)
            out[key] = raw
        elif key == "extra":
            if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
                raise ResourceError("extra must be a mapping of sbatch option to value", key)
            out[key] = dict(raw)
        else:
            if not isinstance(raw, str) or not _NAME.fullmatch(raw):
                raise ResourceError(f"{key} must be a name, not {raw!r}", key)
            out[key] = raw
    return out
