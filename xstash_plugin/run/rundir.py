"""Run directories and run records: every run gets its own folder and leaves ``xstash.json``."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from xstash_plugin.config.yamlio import dump_yaml
from xstash_plugin.fsutil import write_own_file
from xstash_plugin.masking import mask_data

RECORD_NAME = "xstash.json"


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
    """Write the tool's view of the config where Hydra will find it; returns its folder."""
    folder = run_dir / CONFIG_DIR
    folder.mkdir(exist_ok=True)
    text = dump_yaml(payload)
    write_own_file(folder / f"{CONFIG_NAME}.yaml", text)
    return folder


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``xstash.json`` atomically (temp file + rename): readers never see half a record."""
    target = run_dir / RECORD_NAME
    tmp = run_dir / f".{RECORD_NAME}.{os.getpid()}.tmp"
    text = json.dumps(mask_data(record), indent=2, default=str, ensure_ascii=False)
    write_own_file(tmp, text)
    os.replace(tmp, target)


def read_record(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / RECORD_NAME).read_text(encoding="utf-8"))
    return data


def recover_crashed_run(output_root: Path, nodeid: str, session: str, reason: str) -> list[Path]:
    """Mark the still-'running' records of ``nodeid`` in ``session`` as errors, and kill their
    tools' process groups, which outlived the process that started them. Returns the run dirs."""
    import signal

    folder = output_root / Path(nodeid.split("::", 1)[0]).with_suffix("")
    found = []
    try:
        candidates = sorted(p for p in folder.iterdir() if (p / RECORD_NAME).is_file())
    except OSError:
        return []
    for run_dir in candidates:
        try:
            record = read_record(run_dir)
        except (OSError, ValueError):
            continue
        if (
            record.get("status") != "running"
            or record.get("nodeid") != nodeid
            or record.get("session") != session
        ):
            continue
        pid = record.get("tool_pid")
        if isinstance(pid, int) and pid > 1 and _is_group_leader(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        record.update(status="error", error=reason, ended=time.time())
        write_record(run_dir, record)
        found.append(run_dir)
    return found


def _is_group_leader(pid: int) -> bool:
    # Guards against a recycled pid: only a process group led by that pid is ours to kill.
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False
