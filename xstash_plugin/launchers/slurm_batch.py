"""Many runs, few sbatch calls: job arrays (submitit's batch submission) and the cluster's limits.

Runs that ask SLURM for the same thing (the same sbatch parameters: partition, time, CPUs, GPUs,
memory, ...) go in as one job array, split so that no array is larger than the cluster's
``MaxArraySize`` (read once from ``scontrol show config``). Each task of an array is still one
run with its own job id (``<array>_<task>``), log, state in ``sacct`` and record.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from xstash_plugin.launchers.base import RunRequest
from xstash_plugin.launchers.slurm import SlurmJob, submit_to

DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's own default
DEFAULT_PACK_JOBS = 4
DEFAULT_PACK_CPUS = 2
INI = {
    "xstash_slurm_max_jobs": "at most this many of the session's SLURM jobs queued at once "
    "(array tasks count one each; default: no cap)",
    "xstash_slurm_array_parallelism": "at most this many tasks of one job array running at "
    "once (sbatch --array=...%N; default: no throttle)",
    "xstash_slurm_arrays": "false: one sbatch per experiment, no job arrays (default true)",
    "xstash_slurm_pack_below": "run experiments estimated shorter than this (e.g. 2m) inside "
    "shared allocations, as resources: {pack: true} does (default: only those that say so)",
    "xstash_slurm_pack_jobs": f"at most this many shared allocations (default {DEFAULT_PACK_JOBS})",
    "xstash_slurm_pack_cpus": f"CPUs of each shared allocation (default {DEFAULT_PACK_CPUS})",
}


def addoption(parser: Any) -> None:
    for name, help in INI.items():
        parser.addini(name, help=help, default="")


_MAX_ARRAY = re.compile(r"^\s*MaxArraySize\s*=\s*(\d+)", re.M)


@functools.lru_cache(maxsize=1)
def max_array_size() -> int:
    """The cluster's MaxArraySize (task ids run from 0 to MaxArraySize - 1)."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_MAX_ARRAY_SIZE
    match = _MAX_ARRAY.search(out)
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


def group_key(params: dict[str, Any]) -> str:
    """Runs with equal sbatch parameters (their names aside) may share an array."""
    return json.dumps({k: v for k, v in params.items() if k != "job_name"}, sort_keys=True)


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def submit_array(
    requests: Sequence[RunRequest],
    folder: Path,
    params: dict[str, Any],
    parallelism: int | None = None,
) -> list[SlurmJob]:
    """Submit ``requests`` (one sbatch parameter set) with ONE sbatch call: a job array of
    ``len(requests)`` tasks (a plain job for one), at most ``parallelism`` running at once
    (``%N``). The caller keeps arrays within :func:`max_array_size`."""
    import submitit

    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
    executor.update_parameters(
        **params, array_parallelism=min(parallelism or len(requests), len(requests))
    )
    jobs: list[Any] = []
    with executor.batch():
        for request in requests:
            jobs.append(submit_to(executor, request))
    return [SlurmJob(job, request) for job, request in zip(jobs, requests, strict=True)]


def cancel(job_ids: Iterable[str]) -> None:
    """One scancel for many jobs (array tasks, allocations)."""
    ids = sorted(set(job_ids))
    for start in range(0, len(ids), 500):
        subprocess.run(
            ["scancel", *ids[start : start + 500]], capture_output=True, check=False, timeout=60
        )
