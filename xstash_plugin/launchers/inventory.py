"""What local runs share: this machine's GPUs, CPUs and memory (launchers/slots.py hands them
out).

GPUs from ``nvidia-smi`` (none without it), asked once per process, bounded by
``CUDA_VISIBLE_DEVICES`` when set; CPUs from ``os.sched_getaffinity``; memory from
``/proc/meminfo`` (MemTotal: the same in every xdist worker). The ini values ``xstash_gpus``
(``0,1,2,3`` or ``none``), ``xstash_cpus`` and ``xstash_mem`` (``16G``) replace what is
detected. ``-n auto`` with GPUs starts one xdist worker per GPU (:func:`auto_workers`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xstash_plugin.config.resources import mem_megabytes

if TYPE_CHECKING:
    import pytest

MiB = 1024 * 1024

NVIDIA_SMI = ("nvidia-smi", "--query-gpu=index,uuid,memory.total", "--format=csv,noheader")
INI = {
    "xstash_gpus": "GPUs local runs share, as CUDA_VISIBLE_DEVICES names them ('0,1,2,3'), "
    "or 'none' (default: detected with nvidia-smi)",
    "xstash_cpus": "CPUs local runs share (default: this process's CPU affinity)",
    "xstash_mem": "memory local runs share, e.g. 64G (default: MemTotal in /proc/meminfo)",
}


def addoption(parser: pytest.Parser) -> None:
    """The ini values that replace the detected inventory."""
    for name, help in INI.items():
        parser.addini(name, help=help, default="")


@dataclass(frozen=True)
class Inventory:
    """What local runs share: GPU names (as CUDA_VISIBLE_DEVICES takes them), CPUs, bytes."""

    gpus: tuple[str, ...]
    cpus: int
    mem: int

    def describe(self) -> str:
        gpus = ",".join(self.gpus) if self.gpus else "none"
        return f"GPUs {gpus} ({len(self.gpus)}), {self.cpus} CPUs, {self.mem // MiB} MiB memory"


def parse_nvidia_smi(text: str) -> list[tuple[str, str]]:
    """``(index, uuid)`` per line of nvidia-smi's CSV (see NVIDIA_SMI)."""
    found = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 2 and fields[0].isdigit():
            found.append((fields[0], fields[1]))
    return found


def bound_by_visible(gpus: list[tuple[str, str]], visible: str | None) -> tuple[str, ...]:
    """The indices ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs, in its order) leaves; all
    of them when it is unset."""
    if visible is None:
        return tuple(index for index, _ in gpus)
    kept: list[str] = []
    for name in (v.strip() for v in visible.split(",")):
        match = [i for i, u in gpus if name in (i, u) or (name and u.startswith(name))]
        if not match:
            break  # CUDA stops at the first invalid entry ("-1" hides every GPU)
        if match[0] not in kept:
            kept.append(match[0])
    return tuple(kept)


def detect_gpus(
    environ: Mapping[str, str], run: Callable[..., Any] = subprocess.run
) -> tuple[str, ...]:
    try:
        done = run(list(NVIDIA_SMI), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    if done.returncode != 0:
        return ()
    return bound_by_visible(parse_nvidia_smi(done.stdout), environ.get("CUDA_VISIBLE_DEVICES"))


_DETECTED: dict[str | None, tuple[str, ...]] = {}


def detected_gpus() -> tuple[str, ...]:
    """:func:`detect_gpus` for this process's environment: nvidia-smi runs once per process."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible not in _DETECTED:
        _DETECTED[visible] = detect_gpus(os.environ)
    return _DETECTED[visible]


def detect_mem(meminfo: Path = Path("/proc/meminfo")) -> int:
    fields: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[name] = int(parts[0]) * 1024  # kB
    except OSError:
        pass
    return fields.get("MemTotal") or 0  # not MemAvailable: every xdist worker must agree


def detect(gpus: tuple[str, ...] | None, cpus: int | None, mem: int | None) -> Inventory:
    """The inventory: the given values (ini), the rest detected."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Inventory(
        gpus=detected_gpus() if gpus is None else gpus,
        cpus=cpus or 1,
        mem=detect_mem() if mem is None else mem,
    )


def parse_gpus(raw: str) -> tuple[str, ...]:
    """``0,1,2,3`` -> ('0', '1', '2', '3'); ``none`` -> ()."""
    text = raw.strip()
    if text.lower() in ("none", ""):
        return ()
    names = tuple(name.strip() for name in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"{raw!r} is not a list of GPUs: write 0,1,2,3 or none")
    return names


def parse_cpus(raw: str) -> int:
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(f"{raw!r} is not a number of CPUs (a whole number, at least 1)")
    return int(raw)


def parse_mem(raw: str) -> int:
    """Bytes; written as resources write memory (``16G``, ``500M``; a bare number is MiB)."""
    text = raw.strip()
    return mem_megabytes(int(text) if text.isdigit() else text) * MiB


def auto_workers(config: pytest.Config) -> int | None:
    """``-n auto``: as many xdist workers as runs can hold GPUs at once, one per GPU of the
    inventory (the ini's ``xstash_gpus``, else nvidia-smi); None, and xdist counts CPUs as
    usual, when there is no GPU, when ``PYTEST_XDIST_AUTO_NUM_WORKERS`` says how many, or
    for ``-n logical``. Runs before collection, so experiments' resources are not known yet."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    if getattr(config.option, "numprocesses", "auto") != "auto":
        return None
    raw = str(config.getini("xstash_gpus") or "").strip()
    try:
        gpus = parse_gpus(raw) if raw else detected_gpus()
    except ValueError:
        return None  # the settings say what is wrong with the ini value
    return len(gpus) or None
