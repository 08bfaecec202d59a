"""How a session's SLURM experiments go in: attached to a detached session's job, packed into a
few shared allocations, or as job arrays; and how many are queued at once.

Without ``-n`` the session sees all its experiments before the first one is waited for
(``pytest_runtestloop``), so it submits them together:

- a job a detached session left for the same run key is attached, not submitted again;
- experiments marked ``resources: {pack: true}``, or estimated under ``xstash_slurm_pack_below``,
  run inside at most ``xstash_slurm_pack_jobs`` allocations (launchers/pack.py);
- the others go in as job arrays, one per set of equal sbatch parameters, each no larger than
  the cluster's MaxArraySize, throttled to ``xstash_slurm_array_parallelism`` running tasks;
- with ``xstash_slurm_max_jobs``, no more jobs than that are in the queue for this session: the
  rest go in as earlier ones are collected.

Under ``-n`` every worker sees only the item it runs next, so each experiment is its own job.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xstash_plugin.errors import RunFailed
from xstash_plugin.launchers.pack import PackedRun, PackTask, submit_pack
from xstash_plugin.launchers.slurm import job_environment, sbatch_parameters
from xstash_plugin.launchers.slurm_batch import (
    cancel,
    chunks,
    group_key,
    max_array_size,
    submit_array,
)
from xstash_plugin.run.record import Status

if TYPE_CHECKING:
    from xstash_plugin.run.run import Run
    from xstash_plugin.session import State

PACK_UNKNOWN_SECONDS = 60.0  # a packed experiment that gives no estimate and no timeout
PACK_TARGET_SECONDS = 1800.0  # estimated work per allocation CPU before another one is asked
PACK_MARGIN = 1.5  # an allocation's time limit over its estimated work, plus PACK_SLACK
PACK_SLACK = 30.0  # seconds for the allocation's own start and the tools' start-up
SHARED_KEYS = ("partition", "account", "qos", "constraint", "extra")  # what a pack shares


def estimate_of(run: Run, learned: dict[str, float]) -> float | None:
    estimate = run.experiment.estimated_seconds
    return estimate if estimate is not None else learned.get(run.item.nodeid)


def is_packed(run: Run, settings: Any, learned: dict[str, float]) -> bool:
    pack = run.experiment.all_resources.get("pack")
    if pack is not None:
        return bool(pack)
    below, estimate = settings.slurm_pack_below, estimate_of(run, learned)
    return below is not None and estimate is not None and estimate < below


def spread(weights: Sequence[float], bins: int) -> list[list[int]]:
    """Longest first into the least loaded bin: indices of ``weights`` per bin."""
    loads = [0.0] * bins
    out: list[list[int]] = [[] for _ in range(bins)]
    for index in sorted(range(len(weights)), key=lambda i: -weights[i]):
        target = loads.index(min(loads))
        out[target].append(index)
        loads[target] += weights[index]
    return [b for b in out if b]


@dataclass
class Submitter:
    """The session's SLURM submissions (one per pytest process without -n)."""

    state: State
    pending: list[Run] = field(default_factory=list)  # not submitted yet (xstash_slurm_max_jobs)
    in_flight: int = 0  # jobs submitted and not collected yet (an array's tasks count each)
    sbatch_calls: int = 0

    @property
    def folder(self) -> Any:
        return self.state.xstash_dir / "slurm" / self.state.session_id

    def plan(self, runs: list[Run], learned: dict[str, float]) -> None:
        from xstash_plugin.run.slurm_run import attach

        settings = self.state.settings
        arrays: list[Run] = []
        packed: list[Run] = []
        for run in runs:
            try:
                if attach(run):
                    self.in_flight += 1
                    continue
                run.prepare()
            except RunFailed as exc:
                run.presubmit_error = exc
                continue
            (packed if is_packed(run, settings, learned) else arrays).append(run)
        if packed:
            self._submit_packs(packed, learned)
        self.pending.extend(arrays)
        self.top_up()

    def top_up(self) -> None:
        """Submit pending runs, as arrays, while the queue has room."""
        cap = self.state.settings.slurm_max_jobs
        room = len(self.pending) if cap is None else max(0, cap - self.in_flight)
        batch, self.pending = self.pending[:room], self.pending[room:]
        groups: dict[str, list[tuple[Run, dict[str, Any]]]] = {}
        for run in batch:
            assert run.request is not None
            params = sbatch_parameters(
                run.experiment.all_resources, run.request.timeout, run.experiment.name
            )
            groups.setdefault(group_key(params), []).append((run, params))
        size = max_array_size() if self.state.settings.slurm_arrays else 1
        for members in groups.values():
            for chunk in chunks(members, size):
                self._submit_array(list(chunk))

    def _submit_array(self, members: list[tuple[Run, dict[str, Any]]]) -> None:
        params = dict(members[0][1])
        if len(members) > 1:
            params["job_name"] = f"xstash-array-{members[0][0].experiment.name}"[:100]
        requests = [run.request for run, _ in members]
        self.sbatch_calls += 1
        try:
            jobs = submit_array(
                requests,  # type: ignore[arg-type]
                self.folder,
                params,
                self.state.settings.slurm_array_parallelism,
            )
        except Exception as exc:  # sbatch refused (bad partition, no cluster, ...)
            for run, _ in members:
                refused(run, exc)
            return
        for (run, _), job in zip(members, jobs, strict=True):
            self.in_flight += 1
            submitted(run, job, str(self.folder), packed=False)

    def _submit_packs(self, runs: list[Run], learned: dict[str, float]) -> None:
        groups: dict[str, list[Run]] = {}
        for run in runs:
            shared = {k: v for k, v in run.experiment.all_resources.items() if k in SHARED_KEYS}
            groups.setdefault(repr(sorted(shared.items())), []).append(run)
        for members in groups.values():
            self._submit_group(members, learned)

    def _submit_group(self, runs: list[Run], learned: dict[str, float]) -> None:
        settings = self.state.settings
        cpus = settings.slurm_pack_cpus
        estimates = [pack_estimate(run, learned) for run in runs]
        width = max(
            1, cpus // max(max(int(r.experiment.all_resources.get("cpus", 1)) for r in runs), 1)
        )
        wanted = math.ceil(sum(estimates) / (width * PACK_TARGET_SECONDS))
        for indices in spread(estimates, max(1, min(settings.slurm_pack_jobs, wanted, len(runs)))):
            members = [runs[i] for i in indices]  # longest first, as spread placed them
            work = [estimates[i] for i in indices]
            seconds = max(max(work), sum(work) / width) * PACK_MARGIN + PACK_SLACK
            self._submit_pack(members, allocation(members, cpus, seconds))

    def _submit_pack(self, runs: list[Run], params: dict[str, Any]) -> None:
        tasks = [pack_task(run) for run in runs]
        self.sbatch_calls += 1
        try:
            pack = submit_pack(tasks, self.folder, params)
        except Exception as exc:
            for run in runs:
                refused(run, exc)
            return
        self.in_flight += 1
        for run in runs:
            assert run.request is not None
            submitted(run, PackedRun(pack, run.request), str(self.folder), packed=True)

    def collected(self) -> None:
        """A run's job was waited for: room for another."""
        self.in_flight = max(0, self.in_flight - 1)
        if self.pending:
            self.top_up()


def pack_estimate(run: Run, learned: dict[str, float]) -> float:
    estimate = estimate_of(run, learned)
    if estimate is None:
        estimate = run.request.timeout if run.request is not None else None
    return float(estimate) if estimate is not None else PACK_UNKNOWN_SECONDS


def allocation(runs: list[Run], cpus: int, seconds: float) -> dict[str, Any]:
    """The sbatch parameters of an allocation for ``runs``: what they share (partition,
    account, ...), ``cpus`` CPUs, the most GPUs any of them asks, the time they need."""
    shared = {k: v for k, v in runs[0].experiment.all_resources.items() if k in SHARED_KEYS}
    gpus = max((int(r.experiment.all_resources.get("gpus") or 0) for r in runs), default=0)
    resources = {**shared, "cpus": cpus, **({"gpus": gpus} if gpus else {})}
    return sbatch_parameters(resources, seconds, f"pack-{runs[0].experiment.name}")


def pack_task(run: Run) -> PackTask:
    request, resources = run.request, run.experiment.all_resources
    assert request is not None
    changed, removed = job_environment(request.env, os.environ)
    gpus = resources.get("gpus")
    return PackTask(
        argv=tuple(request.argv),
        cwd=str(request.cwd),
        changed=changed,
        removed=tuple(removed),
        run_dir=str(request.run_dir),
        timeout=request.timeout,
        grace=request.grace,
        cookie=request.cookie,
        gpus=int(gpus) if gpus else None,
        cpus=int(resources.get("cpus", 1)),
        mem=int(resources.get("mem", 0)) * 1024 * 1024,
    )


def submitted(run: Run, job: Any, folder: str, packed: bool) -> None:
    assert run.record is not None
    run.record.update(
        job_id=job.job_id,
        slurm_folder=folder,
        slurm_state="PENDING",
        resources=run.experiment.all_resources,
        session=run.state.session_id,
        packed=packed or None,
    )
    run.save()
    run.slurm_job = job


def refused(run: Run, exc: Exception) -> None:
    assert run.request is not None
    run.end(Status.ERROR, error=f"sbatch failed: {exc}")
    run.presubmit_error = RunFailed(
        f"{run.who}: submitting the SLURM job failed: {str(exc).strip()[-2000:]}\n"
        f"run directory: {run.request.run_dir}"
    )


def submit_session(state: State, runs: list[Run], learned: dict[str, float]) -> None:
    """Submit the session's SLURM runs (those --xstash-reuse will not stand in for)."""
    if state.reuse is not None:
        reuse = state.reuse
        runs = [r for r in runs if reuse.find(r.item.config_relpath, r.run_key()) is None]
    state.slurm = Submitter(state)
    state.slurm.plan(runs, learned)


def cancel_pending(runs: list[Run]) -> None:
    """The session ended before these runs' jobs were waited for: cancel them, one scancel."""
    from xstash_plugin.run import slurm_run

    ids = [job for job in map(slurm_run.pending_job, runs) if job is not None]
    for run in runs:
        slurm_run.cancel_pending(run, batched=True)
    if ids:
        cancel(ids)
