"""The SLURM side of a :class:`~xstash_plugin.run.run.Run`: submit (all jobs before any is
waited for), attach to a detached session's job, wait, cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from xstash_plugin.errors import EnvError, RunFailed
from xstash_plugin.launchers.base import RunResult
from xstash_plugin.launchers.pack import PackedRun, attach_pack
from xstash_plugin.launchers.slurm import SlurmLauncher, request_of
from xstash_plugin.launchers.slurm import attach as attach_slurm
from xstash_plugin.run import messages
from xstash_plugin.run.envs import tool_environ
from xstash_plugin.run.record import Status

if TYPE_CHECKING:
    from xstash_plugin.run.run import Run


def submit(run: Run) -> None:
    request, record, state = run.request, run.record, run.state
    assert request is not None and record is not None
    resources = run.experiment.all_resources
    folder = state.xstash_dir / "slurm" / state.session_id
    try:
        job = SlurmLauncher(folder, resources, run.experiment.name).launch(request)
    except Exception as exc:  # sbatch refused (bad partition, no cluster, ...)
        run.end(Status.ERROR, error=f"sbatch failed: {exc}")
        raise RunFailed(
            f"{run.who}: submitting the SLURM job failed: {str(exc).strip()[-2000:]}\n"
            f"run directory: {request.run_dir}"
        ) from None
    record.update(
        job_id=job.job_id,
        slurm_folder=str(folder),
        slurm_state="PENDING",
        resources=resources,
        session=state.session_id,
    )
    run.save()
    run.slurm_job = job


def attach(run: Run) -> bool:
    """Find this experiment's job submitted by an earlier (detached) session, with the same
    run key and still 'submitted': wait for it instead of submitting it again."""
    state = run.state
    try:
        state.envs.python_for(run.experiment.tool)
    except EnvError:
        return False
    found = state.submitted.find(run.item.config_relpath, run.run_key())
    if found is None:
        return False
    run_dir, record = found
    try:
        env = tool_environ(run.experiment.tool)
        if record.packed:
            request = request_of(record, run_dir, env)  # ValueError: no job named
            started = float(record.started or 0) or None
            job_id, folder = str(record.job_id), str(record.slurm_folder)
            run.slurm_job = attach_pack(job_id, folder, started, request)
        else:
            run.slurm_job = attach_slurm(record, run_dir, env)
    except (KeyError, ValueError, OSError):
        return False
    run.request = run.slurm_job.request
    record.update(attached_by=state.session_id, status=Status.RUNNING)
    run.record, run.run_dir = record, run_dir
    run.save()
    return True


def cancel_pending(run: Run, batched: bool = False) -> None:
    """The session ends (-x, Ctrl-C) before this submitted job was waited for: cancel it
    (``batched``: the caller cancels all such jobs with one scancel, see pending_job)."""
    if run.slurm_job is None or run.slurm_finished or run.record is None:
        return
    run.slurm_finished = True
    if not batched:
        run.slurm_job.cancel()
    if run.record.status is Status.RUNNING:
        run.end(
            Status.INTERRUPTED,
            slurm_state="CANCELLED",
            error="the session ended before this job finished; it was cancelled",
        )


def run_slurm(run: Run) -> None:
    if run.presubmit_error is not None:
        raise run.presubmit_error
    if run.slurm_job is None:
        submit(run)
    job, request, record = run.slurm_job, run.request, run.record
    assert job is not None and request is not None and record is not None
    if run.state.settings.detach:
        run.slurm_finished = True  # nobody waits, and nobody cancels it either
        record.update(status=Status.SUBMITTED)
        run.save()
        pytest.skip(
            f"detached: SLURM job {job.job_id} submitted; run the same pytest command again "
            "(without --xstash-detach) to collect its result"
        )
    try:
        result = job.wait()
        run.slurm_finished = True
    except BaseException:
        run.end(Status.INTERRUPTED, slurm_state="CANCELLED")
        job.cancel()
        raise
    finally:
        if run.state.slurm is not None:
            run.state.slurm.collected()
    if isinstance(job, PackedRun):
        packed_result(run, job, result)
        return
    record.update(slurm_state=result.slurm_state)
    if result.slurm_state == "COMPLETED" and result.returncode is not None:
        run.finish(result)
        return
    status = Status.TIMEOUT if result.slurm_state == "TIMEOUT" else Status.FAILED
    run.end(status, ended=result.ended, duration=round(result.duration, 3))
    raise RunFailed(
        messages.slurm_report(
            run.who,
            request,
            str(result.job_id),
            str(result.slurm_state),
            result.duration,
            result.returncode,
            result.log,
        )
    )


def pending_job(run: Run) -> str | None:
    """The job id to cancel for a run the session no longer waits for (an allocation for a
    packed run), or None."""
    if run.slurm_job is None or run.slurm_finished or run.record is None:
        return None
    return str(run.slurm_job.job_id)


def packed_result(run: Run, job: PackedRun, result: RunResult) -> None:
    """How a packed experiment ended: as a local run would, or lost with its allocation."""
    request, record = run.request, run.record
    assert request is not None and record is not None
    if result.slurm_state == "COMPLETED" and job.error is None:
        record.update(slurm_state=None)
        run.finish(result)
        return
    if job.error is not None:
        reason = f"it could not start inside the allocation (SLURM job {job.job_id}): {job.error}"
    else:
        reason = (
            f"its shared allocation (SLURM job {job.job_id}) ended {result.slurm_state} "
            "before it finished"
        )
    run.end(Status.ERROR, error=reason, slurm_state=result.slurm_state)
    log = f"; the allocation's log: {result.log}" if result.log else ""
    raise RunFailed(
        f"{run.who}: {reason}.\nwhat it wrote so far: {request.run_dir} (stdout.log, "
        f"stderr.log){log}\nfix: run it again, or resume the suite with --xstash-reuse "
        "(passed experiments are not run again); if the allocation ran out of time, give the "
        "experiments an estimated_runtime (the allocation's time limit is sized from them)"
    )
