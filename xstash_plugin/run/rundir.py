"""Run directories: every run gets its own folder (its record is record.py's)."""

from __future__ import annotations

import errno
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from xstash_plugin.config.yamlio import dump_yaml
from xstash_plugin.fsutil import atomic_write

CONFIG_DIR = "xstash_config"


CONFIG_NAME = "xstash_experiment"


def content_key(payload: dict[str, Any]) -> str:
    """A short, stable hash of the tool's config as sent."""
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def new_run_dir(output_root: Path, rel_config: Path, key: str) -> Path:
    """Create ``<root>/<config path>/<timestamp>-<key>[-N]``, unique even for concurrent runs."""
    rel = rel_config.with_suffix("")
    if not rel.parts or any(part in ("", ".", "..") for part in rel.parts) or rel.is_absolute():
        # Collection refuses such names; this keeps every run directory inside the root.
        raise OSError(errno.EINVAL, f"the config path {rel_config} cannot name a run directory")
    parent = output_root / rel
    parent.mkdir(parents=True, exist_ok=True)
    if not parent.resolve().is_relative_to(output_root.resolve()):
        # A link planted in the output root must not send runs (and their logs) elsewhere.
        raise OSError(
            errno.EPERM,
            f"{parent} leads outside the output root (to {parent.resolve()}) through a symbolic "
            "link xstash did not make; remove the link",
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        name = f"{stamp}-{key}" + (f"-{attempt}" if attempt else "")
        try:
            (parent / name).mkdir()
        except FileExistsError:
            continue
        return parent / name
    raise OSError(f"could not create a unique run directory under {parent}")


def write_tool_config(run_dir: Path, payload: dict[str, Any]) -> Path:
    """Write the tool's view of the config where Hydra will find it; returns its folder.
    Atomically: compose at collection shares one folder between the configs (and xdist
    workers) whose tool view is the same, and a compose process must never read half a file."""
    folder = run_dir / CONFIG_DIR
    folder.mkdir(exist_ok=True)
    atomic_write(folder / f"{CONFIG_NAME}.yaml", dump_yaml(payload))
    return folder
