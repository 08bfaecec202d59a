"""Run a tool as a SLURM job through submitit (the library Hydra's own SLURM launcher uses).

The job runs exactly the command the local launcher would (same tool environment, Hydra flags
and run directory), writing the run directory's ``stdout.log``/``stderr.log``; this assumes the
run directory and the tool's environment are on a filesystem the compute nodes share.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstash_plugin.launchers.base import RunRequest, RunResult
from xstash_plugin.run.record import RunRecord

FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}
POLL_SECONDS = 0.5
VANISHED_SECONDS = 120.0  # a job neither queued nor in accounting for this long is lost


def job_environment(
    env: Mapping[str, str], base: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """What the job must change in its environment to be the run's: the variables xstash sets
    or changes (the tool's virtual environment, PATH, PYTHONUNBUFFERED, XSTASH_RUN) and those
    it removes, relative to ``base`` (the environment pytest runs in). Only this is written
    into the submitit folder on the shared disk; SLURM passes the rest of the environment to the
    job itself (sbatch exports it by default), so no secret of it lands there in a pickle."""
    changed = {key: value for key, value in env.items() if base.get(key) != value}
    removed = sorted(key for key in base if key not in env)
    return changed, removed


def run_command(
    argv: list[str],
    cwd: str,
    changed: dict[str, str],
    removed: list[str],
    stdout: str,
    stderr: str,
) -> int:
    """What the job runs on the node: the tool, in the job's environment with xstash's changes,
    its output into the run directory."""
    env = dict(os.environ)
    for key in removed:
        env.pop(key, None)
    env.update(changed)
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        return subprocess.call(
            argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )


def sbatch_parameters(
    resources: dict[str, Any], timeout: float | None, name: str
) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for xstash resources."""
    params: dict[str, Any] = {"job_name": f"xstash-{name}"[:100]}
    seconds = resources.get("time", timeout)
    # None: no --time, so the partition's default applies (submitit would ask for 5 minutes).
    params["time"] = None if seconds is None else max(1, math.ceil(float(seconds) / 60))
    mapping = {
        "partition": "partition",
        "cpus": "cpus_per_task",
        "gpus": "gpus_per_node",
        "nodes": "nodes",
        "account": "account",
        "qos": "qos",
        "constraint": "constraint",
    }
    for key, target in mapping.items():
        if key in resources:
            params[target] = resources[key]
    if "mem" in resources:
        params["mem"] = f"{resources['mem']}M"
    # submitit asks SLURM for USR2 90 s before the time limit and, for a function that cannot
    # checkpoint, answers it by failing the job (and SLURM hands USR2 to the tool, too): the
    # tool would die early as FAILED. SIGURG is ignored by default; the limit itself then ends
    # the job (SIGTERM, SIGKILL after KillWait) as TIMEOUT.
    params["additional_parameters"] = {"signal": "URG@90", **dict(resources.get("extra") or {})}
    return params


def _killed_for_memory(log: Path) -> bool:
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, log.stat().st_size - 65536))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return False
    return "Exceeded job memory limit" in tail or "oom-kill" in tail.lower()


class SlurmJob:
    """One submitted run; ``wait`` polls until SLURM says it ended (bounded)."""

    def __init__(self, job: Any, request: RunRequest) -> None:
        self.job = job
        self.request = request
        self.submitted = time.time()

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def wait(self) -> RunResult:
        unknown_since: float | None = None
        while True:
            state = job_state(self.job)
            if state in FINAL_STATES:
                break
            if state == "UNKNOWN":
                unknown_since = unknown_since or time.monotonic()
                if time.monotonic() - unknown_since > VANISHED_SECONDS:
                    state = "VANISHED"
                    break
            else:
                unknown_since = None
            # Quick for short jobs, gentle on the scheduler for long ones (each poll is sacct).
            time.sleep(min(POLL_SECONDS * (1 + (time.time() - self.submitted) / 10), 10.0))
        returncode: int | None = None
        if state == "COMPLETED":
            try:
                returncode = int(self.job.result())
            except Exception:  # the job's Python failed after the tool: SLURM says COMPLETED
                returncode = None
        log = Path(self.job.paths.stderr)
        if state == "FAILED" and _killed_for_memory(log):
            # Memory enforced by jobacct's OverMemoryKill (no cgroups) ends the job FAILED; its
            # log says why, and OUT_OF_MEMORY is what it was.
            state = "OUT_OF_MEMORY"
        return RunResult(
            returncode=returncode,
            started=self.submitted,
            ended=time.time(),
            timed_out=state == "TIMEOUT",
            job_id=self.job_id,
            slurm_state=state,
            log=log if log.exists() else None,
        )

    def cancel(self) -> None:
        subprocess.run(["scancel", self.job_id], capture_output=True, check=False, timeout=30)


@dataclass
class SlurmLauncher:
    """One sbatch job per run (through submitit), its files in ``folder``."""

    folder: Path
    resources: dict[str, Any]
    name: str

    def launch(self, request: RunRequest) -> SlurmJob:
        """Submit ``request``; raises what sbatch raised (bad partition, no cluster...)."""
        return submit(request, self.folder, self.resources, self.name)


def submit(request: RunRequest, folder: Path, resources: dict[str, Any], name: str) -> SlurmJob:
    """Submit ``request`` as one sbatch job; raises OSError-like errors from sbatch as is."""
    import submitit

    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
    executor.update_parameters(**sbatch_parameters(resources, request.timeout, name))
    return SlurmJob(submit_to(executor, request), request)


def submit_to(executor: Any, request: RunRequest) -> Any:
    """``executor.submit`` of the run's command (inside ``executor.batch()``: one array task)."""
    changed, removed = job_environment(request.env, os.environ)
    return executor.submit(
        run_command,
        list(request.argv),
        str(request.cwd),
        changed,
        removed,
        str(request.stdout_path),
        str(request.stderr_path),
    )


def job_state(job: Any) -> str:
    """SLURM's state of a submitit job, asked again (``job.state`` alone is cached)."""
    state = str(job.get_info().get("State") or job.state or "UNKNOWN")
    return state.split()[0].upper()


def request_of(record: RunRecord, run_dir: Path, env: dict[str, str]) -> RunRequest:
    """The request a detached session submitted, from its run record."""
    if not record.argv or not record.cwd or not record.slurm_folder or not record.job_id:
        raise ValueError(f"the record in {run_dir} does not name a submitted job")
    return RunRequest(
        argv=tuple(record.argv),
        cwd=Path(record.cwd),
        env=env,
        run_dir=run_dir,
        timeout=record.timeout,
    )


def attach(record: RunRecord, run_dir: Path, env: dict[str, str]) -> SlurmJob:
    """The job a detached session submitted, from its run record (in ``run_dir``)."""
    import submitit

    request = request_of(record, run_dir, env)
    job: Any = submitit.SlurmJob(folder=str(record.slurm_folder), job_id=str(record.job_id))
    attached = SlurmJob(job, request)
    attached.submitted = float(record.started or time.time())
    return attached
