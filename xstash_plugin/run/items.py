"""The pytest nodes: a YAML file collects into experiment items; an item runs its tool."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin.config.compose import Run
from xstash_plugin.config.durations import format_duration
from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.overrides import display_command
from xstash_plugin.config.sweeps import Point, point_labels
from xstash_plugin.config.yamlio import elide, printable_error
from xstash_plugin.errors import ConfigErrors, EnvError, RunFailed, XstashError, XstashWarning
from xstash_plugin.fsutil import tail_lines
from xstash_plugin.launchers.local import COOKIE_VAR, RunRequest, RunResult, run_local
from xstash_plugin.launchers.preload import PreloadLost, PreloadUnavailable, server_key
from xstash_plugin.launchers.slurm import SlurmJob
from xstash_plugin.launchers.slurm import attach as attach_slurm
from xstash_plugin.launchers.slurm import submit as submit_slurm
from xstash_plugin.report import progress
from xstash_plugin.report.rows import flatten, fmt
from xstash_plugin.run.command import build_argv
from xstash_plugin.run.envs import tool_environ, uv_version
from xstash_plugin.run.judge import (
    DEFAULT_METRICS,
    MetricsError,
    Verdict,
    bounded,
    judge,
    read_metrics,
    verdict_table,
)
from xstash_plugin.run.provenance import dependency_hash, git_state, python_version_of
from xstash_plugin.run.rundir import (
    content_key,
    new_run_dir,
    read_record,
    write_record,
    write_tool_config,
)
from xstash_plugin.run.stale import process_identity
from xstash_plugin.session import get_state

STDERR_TAIL = 40
SECTION_TAIL = 200


class ExperimentFile(pytest.File):
    """One experiment YAML file below a configs root."""

    def __init__(self, *, configs_root: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.configs_root = configs_root

    def _check_composed(self, experiment: Experiment, labels: list[str]) -> None:
        """Let the tool compose every run of the experiment (unless --xstash-compose=off)."""
        state = get_state(self.config)
        assert state.compose is not None
        runs = [
            Run(label, dict(point), state.point_overrides(point))
            for point, label in zip(experiment.points or ((),), labels, strict=True)
        ]
        errors = state.compose.check(experiment, runs)
        if errors:
            raise self.CollectError(str(ConfigErrors([printable_error(e) for e in errors])))

    def collect(self) -> Iterator[ExperimentItem]:
        state = get_state(self.config)
        try:
            experiment = state.experiment(self.path, self.configs_root)
        except XstashError as exc:
            raise self.CollectError(str(exc)) from None
        labels = point_labels(list(experiment.points)) if experiment.points else [""]
        if state.compose is not None:
            self._check_composed(experiment, labels)
        first = state.names.setdefault(experiment.name, self.path)
        if first != self.path:
            self.warn(
                XstashWarning(
                    f"experiment name '{experiment.name}' is used by {self.path} and by {first}; "
                    "both run (ids and run directories carry the config path), but a unique "
                    "name is easier to tell apart"
                )
            )
        if not experiment.points:
            yield ExperimentItem.from_parent(self, name=experiment.name, experiment=experiment)
            return
        for point, label in zip(experiment.points, labels, strict=True):
            extra: dict[str, Any] = {}
            parent_id = getattr(self, "id", None)
            if hasattr(parent_id, "with_params"):
                # pytest >= 9.2 keeps ids structured: `name[params]` must be built as such, or
                # --lf / --nf cannot match the ids they read back from the cache.
                extra["nodeid"] = parent_id.child(experiment.name).with_params(label)  # type: ignore[union-attr]
            yield ExperimentItem.from_parent(
                self,
                name=f"{experiment.name}[{label}]",
                experiment=experiment,
                point=point,
                **extra,
            )


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {_signal_name(returncode)} (signal {-returncode})"
    return f"exited with code {returncode}"


class ExperimentItem(pytest.Item):
    """One experiment: running it runs the tool; a non-zero exit fails it."""

    def __init__(self, *, experiment: Experiment, point: Point = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.point = point
        state = get_state(self.config)
        # Sweep point first, then --xstash-override: the command line has the last word.
        self.overrides = tuple(state.point_overrides(point))
        # What actually ran: a command-line override of a swept key replaces the point's value.
        cli = dict(state.overrides)
        self.effective_point = {key: cli.get(key, value) for key, value in point}
        tool = experiment.tool.name
        self.add_marker(state.register_marker(tool, f"experiments of tool {tool}"))
        for tag in experiment.tags:
            self.add_marker(state.register_marker(tag, "experiment tag"))
        self.run_dir: Path | None = None
        self.record_error: str | None = None
        self.prepared: tuple[RunRequest, dict[str, Any]] | None = None
        self.slurm_job: SlurmJob | None = None
        self.presubmit_error: RunFailed | None = None
        self.slurm_finished = False
        self.order = 0  # place among the experiments, see set_order
        self.metrics_note: str | None = None  # what the record keeps of huge metrics
        self._result_row: dict[str, Any] | None = None  # see result_row
        self.config_posix = self.config_relpath.as_posix()
        self.user_properties.extend(
            [
                ("tool", experiment.tool.name),
                ("experiment", experiment.name),
                ("config", self.config_posix),
                ("tags", ",".join(experiment.tags)),
                ("description", experiment.description),
                ("estimated_runtime", experiment.estimated_runtime or ""),
                *(
                    (f"sweep.{key}", elide(fmt(value), 500))
                    for key, value in self.effective_point.items()
                ),
                *((("overrides", elide(" ".join(self.overrides), 500)),) if self.overrides else ()),
            ]
        )

    @property
    def result_row(self) -> dict[str, Any]:
        """What the controller's results table needs; travels to it on the test report.

        Made when first needed (when the item runs): at collection it would be five more
        objects per item for the garbage collector to go over, again and again."""
        if self._result_row is None:
            experiment = self.experiment
            self._result_row = {
                "id": self.nodeid,
                "experiment": experiment.name,
                "config": self.config_posix,
                "tool": experiment.tool.name,
                "tags": list(experiment.tags),
                "point": self.effective_point,
                "overrides": list(self.overrides),
                "status": "not run",
                "estimated_runtime": experiment.estimated_runtime,
                "estimated_seconds": experiment.estimated_seconds,
                "duration": None,
                "exit_code": None,
                "metrics": {},
                "verdicts": [],
                "run_dir": None,
                "order": self.order,
            }
        return self._result_row

    def set_order(self, index: int) -> None:
        """The experiment's place in collection order (its row's ``order``)."""
        self.order = index
        if self._result_row is not None:
            self._result_row["order"] = index

    @property
    def config_relpath(self) -> Path:
        path = self.experiment.config_path
        try:
            return path.relative_to(self.config.rootpath)
        except ValueError:
            return path.relative_to(path.parent.parent)

    def _provenance(self, python: str | None) -> dict[str, Any]:
        state = get_state(self.config)
        tool = self.experiment.tool
        key = str(tool.path)
        if key not in state.provenance:
            state.provenance[key] = {
                "git": git_state(tool.path),
                "dependency_hash": dependency_hash(tool.path),
            }
        info = dict(state.provenance[key])
        info["tool_python"] = python
        info["tool_python_version"] = python_version_of(python) if python else None
        info["uv"] = uv_version() if tool.env == "uv" else None
        return info

    def run_key(self) -> str:
        """The content hash that decides whether a passed run can stand in for this one."""
        experiment = self.experiment
        repo = experiment.tool.meta_path.parent.parent
        return get_state(self.config).keys.run_key(
            experiment.tool.name,
            experiment.tool.path,
            experiment.payload,
            list(self.overrides),
            {name: repo / name for name in experiment.inputs},
        )

    def _reuse(self) -> bool:
        """With --xstash-reuse: stand in a passed run with the same run key, re-judged against
        the current expectations. False when there is none (then the tool runs)."""
        state = get_state(self.config)
        assert state.reuse is not None
        try:
            state.envs.python_for(self.experiment.tool)  # a lock file made by uv is in the key
        except EnvError:
            return False  # the normal path reports it, with a record
        previous = state.reuse.find(self.config_relpath, self.run_key())
        for problem in state.reuse.problems:
            if problem not in state.reported:
                state.reported.add(problem)
                self.warn(XstashWarning(problem))
        if previous is None:
            return False
        old = read_record(previous)
        metrics, verdicts, metrics_problem = self._judge(previous)
        ok = metrics_problem is None and all(v.ok for v in verdicts)
        self.run_dir = previous
        duration = old.get("duration")
        self.result_row.update(
            status="reused" if ok else "failed",
            reused_from=str(previous),
            run_dir=str(previous),
            exit_code=old.get("exit_code"),
            duration=duration,
            metrics=metrics or {},
            verdicts=[v.as_dict() for v in verdicts],
        )
        self.user_properties.extend(
            [
                ("reused_from", str(previous)),
                ("run_dir", str(previous)),
                ("exit_code", str(old.get("exit_code"))),
                ("duration", f"{float(duration or 0):.3f}"),
            ]
        )
        self._metric_properties(metrics, verdicts)
        if metrics_problem is not None:
            raise RunFailed(
                f"experiment '{self.name}' ({self.config_relpath}): reused run {previous}: "
                f"{metrics_problem}"
            )
        if not ok:
            raise RunFailed(
                self._expectations_failed(
                    verdicts,
                    f" on the reused run {previous} (its config and tool are unchanged, so it "
                    "was not run again)",
                )
            )
        return True

    def _prepare(self) -> tuple[RunRequest, dict[str, Any]]:
        """Run directory, record, environment and command: all but starting the tool."""
        state = get_state(self.config)
        experiment = self.experiment
        tool = experiment.tool
        key = content_key({"config": experiment.payload, "overrides": self.overrides})
        self.result_row.update(status="error")
        try:
            run_dir = new_run_dir(state.output_root, self.config_relpath, key)
            config_dir = write_tool_config(run_dir, experiment.payload)
        except OSError as exc:
            raise RunFailed(
                f"cannot create the run directory under {state.output_root}: {exc}\n"
                "fix: make the output root writable, free disk space, or choose another one "
                "with --xstash-output-root"
            ) from None
        self.run_dir = run_dir
        self.result_row["run_dir"] = str(run_dir)
        self.user_properties.append(("run_dir", str(run_dir)))
        record: dict[str, Any] = {
            "status": "running",
            "experiment": experiment.name,
            "config": self.config_relpath.as_posix(),
            "nodeid": self.nodeid,
            "config_key": key,
            "point": self.effective_point or None,
            "overrides": list(self.overrides),
            "tool": tool.name,
            "tool_path": str(tool.path),
            "cwd": str(tool.path),
            "host": socket.gethostname(),
            "python": sys.version.split()[0],
            "launcher": "local",
            "started": time.time(),
            "worker_pid": os.getpid(),  # who runs it (see stale.py), until the tool starts
            "worker_identity": process_identity(os.getpid()),
        }
        self._save(run_dir, record)
        try:
            python = state.envs.python_for(tool)
        except EnvError as exc:
            record.update(status="error", error=str(exc), ended=time.time())
            self._save(run_dir, record)
            raise RunFailed(f"tool '{tool.name}': {exc}\nrun directory: {run_dir}") from None
        except BaseException:  # Ctrl-C while uv works: the record must not stay 'running'
            record.update(status="interrupted", ended=time.time())
            self._save(run_dir, record)
            raise
        argv = build_argv(python, experiment, config_dir, run_dir, self.overrides)
        record.update(argv=list(argv), run_key=self.run_key(), **self._provenance(python))
        self._save(run_dir, record)
        timeout, timeout_source = self.timeout()
        record.update(timeout=timeout, timeout_source=timeout_source or None)
        cookie = uuid.uuid4().hex  # marks every process of this run, see kill_escapees
        request = RunRequest(
            timeout=timeout,
            grace=state.grace,
            argv=argv,
            cwd=tool.path,
            env={**tool_environ(self.experiment.tool), COOKIE_VAR: cookie},
            run_dir=run_dir,
            live=state.live,
            cookie=cookie,
        )

        record["launcher"] = self.launcher()
        return request, record

    def cancel_pending(self) -> None:
        """The session ends (-x, Ctrl-C) before this submitted job was waited for: cancel it."""
        if self.slurm_job is None or self.slurm_finished or self.prepared is None:
            return
        self.slurm_finished = True
        self.slurm_job.cancel()
        request, record = self.prepared
        if record.get("status") == "running":
            record.update(
                status="interrupted",
                ended=time.time(),
                slurm_state="CANCELLED",
                error="the session ended before this job finished; it was cancelled",
            )
            self._save(request.run_dir, record)

    def _attach(self) -> bool:
        """Find this experiment's job submitted by an earlier (detached) session, with the same
        run key and still 'submitted': wait for it instead of submitting it again."""
        state = get_state(self.config)
        try:
            state.envs.python_for(self.experiment.tool)
        except EnvError:
            return False
        found = state.submitted.find(self.config_relpath, self.run_key())
        if found is None:
            return False
        run_dir, record = found
        try:
            self.slurm_job = attach_slurm(record, tool_environ(self.experiment.tool))
        except (KeyError, ValueError, OSError):
            return False
        request = self.slurm_job.request
        record.update(attached_by=state.session_id, status="running")
        self.run_dir = run_dir
        self.result_row.update(run_dir=str(run_dir))
        self.user_properties.extend([("run_dir", str(run_dir)), ("job_id", self.slurm_job.job_id)])
        self.prepared = (request, record)
        self._save(run_dir, record)
        return True

    def presubmit(self) -> None:
        """Submit this experiment's SLURM job now (the session submits all before running any);
        a problem is kept and reported by runtest."""
        try:
            if not self._attach():
                self.prepared = self._prepare()
                self._submit(*self.prepared)
        except RunFailed as exc:
            self.presubmit_error = exc

    def _settle_stale(self) -> None:
        """Runs of this experiment an earlier, dead session left 'running' on this host: close
        the finished ones; refuse to start a second copy next to one whose tool still runs."""
        state = get_state(self.config)
        for stale in state.stale.find(self.config_relpath, self.nodeid):
            worker = stale.record.get("worker_pid")
            if not stale.alive:
                reason = state.stale.close(stale, state.session_id)
                self.warn(XstashWarning(f"{stale.run_dir}: marked 'error': {reason}"))
                continue
            pids = " ".join(map(str, stale.alive))
            group = stale.record.get("tool_pid")
            stop = f"kill -- -{group}; kill {pids}" if group in stale.alive else f"kill {pids}"
            raise RunFailed(
                f"experiment '{self.name}' ({self.config_relpath}) was not started: its run "
                f"{stale.run_dir} from an earlier pytest session is still running (that pytest, "
                f"pid {worker}, died and left it behind; its processes: {pids}); xstash does "
                "not start a second copy next to it\n"
                f"fix: wait for those processes to end, or stop them ({stop}); the next "
                "session then marks that run 'error' and runs the experiment again"
            )

    def runtest(self) -> None:
        state = get_state(self.config)
        if self.launcher() != "slurm":
            self._settle_stale()
        if self.slurm_job is None and state.reuse is not None and self._reuse():
            return
        if self.prepared is None and self.launcher() == "slurm":
            self._attach()
        if self.prepared is None:
            self.prepared = self._prepare()
        request, record = self.prepared
        if self.launcher() == "slurm":
            self._run_slurm(request, record)
            return
        tool = self.experiment.tool
        argv = request.argv
        run_dir = request.run_dir

        def started(pid: int) -> None:
            # Who runs it: a controller that sees this worker die can find the run and its
            # orphaned process group by these.
            record.update(
                tool_pid=pid,
                tool_identity=process_identity(pid),
                run_token=request.cookie,
                worker_pid=os.getpid(),
                worker_identity=process_identity(os.getpid()),
                session=state.session_id,
            )
            self._save(run_dir, record)
            state.watchdog.add(pid, request.cookie, run_dir)  # should pytest die, so does it
            progress.announce(self, request, pid)  # removed when runtest ends

        def interrupted() -> None:
            record.update(status="interrupted", ended=time.time())
            self.result_row.update(status="interrupted")
            self._save(run_dir, record)

        try:
            result = self._run_local(request, record, interrupted, started)
        except PreloadLost as exc:
            record.update(status="error", error=str(exc), ended=time.time())
            self._save(run_dir, record)
            raise RunFailed(
                f"experiment '{self.name}' ({self.config_relpath}): {exc}\n"
                f"run directory: {run_dir}\nfix: run it again; if it happens again, remove "
                f"'preload: true' from tool '{tool.name}' in {tool.meta_path}"
            ) from None
        except OSError as exc:  # the tool could not be started (or its logs not opened)
            record.update(status="error", error=f"cannot start the tool: {exc}", ended=time.time())
            self._save(run_dir, record)
            raise RunFailed(
                f"experiment '{self.name}' ({self.config_relpath}): cannot start tool "
                f"'{tool.name}': {exc}\ncommand: {display_command(argv)}\nrun directory: {run_dir}"
            ) from None
        finally:
            if "tool_pid" in record:
                state.watchdog.remove(int(record["tool_pid"]))  # its process group is gone
        self._finish(request, result, record)

    def _run_local(
        self,
        request: RunRequest,
        record: dict[str, Any],
        interrupted: Callable[[], None],
        started: Callable[[int], None],
    ) -> RunResult:
        """Fork the run from the tool's preload server when it has one (``preload: true``),
        else start it; a tool that cannot be preloaded runs plainly, with a warning."""
        tool = self.experiment.tool
        record["preloaded"] = False
        if tool.preload:
            state = get_state(self.config)
            key = server_key(request.argv, request.cwd, request.env)
            try:
                if key is None:
                    raise PreloadUnavailable(
                        f"its entrypoint {' '.join(tool.entrypoint)!r} is not a Python file or "
                        "module"
                    )
                log = state.output_root / ".xstash" / "preload" / f"{tool.name}-{os.getpid()}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                # Not the run's cookie: the server outlives the run (its forks carry it).
                server_env = {k: v for k, v in request.env.items() if k != COOKIE_VAR}
                server = state.preload.server(key, server_env, log)
                record["preloaded"] = True
                return run_local(
                    request, on_interrupt=interrupted, on_start=started, preload=server
                )
            except PreloadUnavailable as exc:
                record["preloaded"] = False
                problem = f"tool '{tool.name}' cannot be preloaded, its runs start plainly: {exc}"
                if problem not in state.reported:
                    state.reported.add(problem)
                    self.warn(XstashWarning(problem))
        return run_local(request, on_interrupt=interrupted, on_start=started)

    def _save(self, run_dir: Path, record: dict[str, Any]) -> None:
        """Write the record; a full disk must not turn into a plugin traceback mid-run."""
        try:
            write_record(run_dir, record)
        except OSError as exc:
            self.record_error = (
                f"the run record {run_dir / 'xstash.json'} could not be written: {exc}"
            )

    def launcher(self) -> str:
        """Most specific first: the config's xstash.launcher, the tool's, the session's."""
        state = get_state(self.config)
        return self.experiment.launcher or self.experiment.tool.launcher or state.launcher

    def _submit(self, request: RunRequest, record: dict[str, Any]) -> None:
        state = get_state(self.config)
        resources = {**self.experiment.tool.resources, **self.experiment.resources}
        folder = state.output_root / ".xstash" / "slurm" / state.session_id
        try:
            job = submit_slurm(request, folder, resources, self.experiment.name)
        except Exception as exc:  # sbatch refused (bad partition, no cluster, ...)
            record.update(status="error", error=f"sbatch failed: {exc}", ended=time.time())
            self._save(request.run_dir, record)
            raise RunFailed(
                f"experiment '{self.name}' ({self.config_relpath}): submitting the SLURM job "
                f"failed: {str(exc).strip()[-2000:]}\nrun directory: {request.run_dir}"
            ) from None
        record.update(
            job_id=job.job_id,
            slurm_folder=str(folder),
            slurm_state="PENDING",
            resources=resources,
            session=state.session_id,
            worker_pid=os.getpid(),
        )
        self._save(request.run_dir, record)
        self.user_properties.append(("job_id", job.job_id))
        self.slurm_job = job

    def _run_slurm(self, request: RunRequest, record: dict[str, Any]) -> None:
        if self.presubmit_error is not None:
            raise self.presubmit_error
        if self.slurm_job is None:
            self._submit(request, record)
        job = self.slurm_job
        assert job is not None
        if get_state(self.config).detach:
            self.slurm_finished = True  # nobody waits, and nobody cancels it either
            record.update(status="submitted")
            self._save(request.run_dir, record)
            self.result_row.update(status="submitted", run_dir=str(request.run_dir))
            pytest.skip(
                f"detached: SLURM job {job.job_id} submitted; run the same pytest command again "
                "(without --xstash-detach) to collect its result"
            )
        try:
            result = job.wait()
            self.slurm_finished = True
        except BaseException:
            record.update(status="interrupted", ended=time.time(), slurm_state="CANCELLED")
            self.result_row.update(status="interrupted")
            self._save(request.run_dir, record)
            job.cancel()
            raise
        record["slurm_state"] = result.state
        if result.state == "COMPLETED" and result.returncode is not None:
            local = RunResult(
                returncode=result.returncode, started=result.started, ended=result.ended, pid=0
            )
            self._finish(request, local, record)
            return
        status = "timeout" if result.state == "TIMEOUT" else "failed"
        record.update(status=status, ended=result.ended, duration=round(result.duration, 3))
        self._save(request.run_dir, record)
        self.result_row.update(status=status, duration=round(result.duration, 3))
        parts = [
            f"experiment '{self.name}' ({self.config_relpath}): SLURM job {result.job_id} "
            f"ended {result.state} after {format_duration(result.duration)}"
            + (f" (tool exit code {result.returncode})" if result.returncode else ""),
            f"command: {display_command(request.argv)}",
            f"run directory: {request.run_dir}",
        ]
        for label, path in (
            ("stdout", request.stdout_path),
            ("stderr", request.stderr_path),
            ("SLURM job log", result.log),
        ):
            if path is None:
                continue
            lines, _ = tail_lines(path, 15)
            if lines:
                parts.append(f"last {len(lines)} lines of {label} ({path}):")
                parts.extend("  " + line for line in lines)
        raise RunFailed("\n".join(parts))

    def timeout(self) -> tuple[float | None, str]:
        """The run's time limit and where it comes from: the config's own, else the session's."""
        if self.experiment.timeout is not None:
            return self.experiment.timeout, f"xstash.timeout in {self.config_relpath}"
        state = get_state(self.config)
        return state.timeout, state.timeout_source

    def _expectations_failed(self, verdicts: list[Verdict], where: str = "") -> str:
        failed = sum(not v.ok for v in verdicts)
        return (
            f"experiment '{self.name}' ({self.config_relpath}): {failed} of {len(verdicts)} "
            f"expectation(s) failed{where}\n{verdict_table(verdicts)}"
        )

    def _metric_properties(self, metrics: dict[str, Any] | None, verdicts: list[Verdict]) -> None:
        for name, value in flatten(metrics or {}).items():
            self.user_properties.append((f"metric.{name}", fmt(value)))
        for verdict in verdicts:
            word = "ok" if verdict.ok else f"FAIL ({verdict.note})" if verdict.note else "FAIL"
            measured = "-" if verdict.measured is None else fmt(verdict.measured)
            self.user_properties.append(
                (f"expect.{verdict.metric}", f"{word}: {measured} vs {verdict.expected}")
            )

    def _judge(self, run_dir: Path) -> tuple[dict[str, Any] | None, list[Verdict], str | None]:
        """Metrics (as the record and reports keep them: see results.bounded), verdicts, and a
        problem with the metrics file (if any). Never raises: whatever a tool wrote, the run
        gets a verdict and its record an end."""
        experiment = self.experiment
        declared = experiment.metrics_file is not None or bool(experiment.expectations)
        path = run_dir / (experiment.metrics_file or DEFAULT_METRICS)
        if not declared and not path.exists():
            return None, [], None
        try:
            metrics = read_metrics(path)
            verdicts = judge(list(experiment.expectations), metrics)
            kept, note = bounded(metrics)
        except MetricsError as exc:
            return None, [], str(exc)
        except (RecursionError, ValueError, TypeError, OverflowError, MemoryError) as exc:
            return None, [], f"metrics file {path} cannot be judged: {type(exc).__name__}: {exc}"
        if note is not None:
            self.metrics_note = f"metrics file {path}: {note}"
        return kept, verdicts, None

    def _finish(self, request: RunRequest, result: RunResult, record: dict[str, Any]) -> None:
        exited_ok = result.returncode == 0
        if result.escaped:
            record["escaped"] = list(result.escaped)
            self.warn(
                XstashWarning(
                    f"experiment '{self.name}' ({self.config_relpath}): "
                    f"{len(result.escaped)} process(es) had left the tool's process group and "
                    f"were stopped when the run ended: {'; '.join(result.escaped)}"
                )
            )
        metrics, verdicts, metrics_problem = self._judge(request.run_dir)
        ok = exited_ok and metrics_problem is None and all(v.ok for v in verdicts)
        status = "timeout" if result.timed_out else "passed" if ok else "failed"
        record.update(
            status=status,
            exit_code=result.returncode,
            signal=_signal_name(result.returncode) if result.returncode < 0 else None,
            ended=result.ended,
            duration=round(result.duration, 3),
            metrics=metrics,
            metrics_error=metrics_problem,
            metrics_note=self.metrics_note,
            expectations=[v.as_dict() for v in verdicts],
        )
        self._save(request.run_dir, record)
        self.result_row.update(
            status=status,
            exit_code=result.returncode,
            duration=round(result.duration, 3),
            metrics=metrics or {},
            verdicts=[v.as_dict() for v in verdicts],
        )
        self.user_properties.append(("exit_code", str(result.returncode)))
        self.user_properties.append(("duration", f"{result.duration:.3f}"))
        self._metric_properties(metrics, verdicts)
        report = None  # a timeout's or a failed exit's report, which shows the stderr tail
        if self.record_error is None and result.timed_out:
            report = self._timeout_report(request, result)
        elif self.record_error is None and not exited_ok:
            report = self._failure_report(request, result)
        if not request.live:
            self._log_sections(request, with_stderr=report is None)
        if self.record_error is not None:
            raise RunFailed(
                f"experiment '{self.name}' ({self.config_relpath}): {self.record_error}\n"
                f"the tool {describe_exit(result.returncode)}; its logs are in {request.run_dir}"
                "\nfix: free disk space or choose another --xstash-output-root"
            )
        if report is not None:
            raise RunFailed(report)
        if metrics_problem is not None:
            raise RunFailed(
                f"experiment '{self.name}' ({self.config_relpath}): {metrics_problem}"
                f"\nrun directory: {request.run_dir}"
            )
        if not ok:
            metrics_path = request.run_dir / (self.experiment.metrics_file or DEFAULT_METRICS)
            raise RunFailed(
                self._expectations_failed(verdicts)
                + f"\nmetrics: {metrics_path}\nrun directory: {request.run_dir}"
            )

    def _log_sections(self, request: RunRequest, with_stderr: bool) -> None:
        """pytest's captured-output sections: the last lines of stdout, and of stderr unless
        the failure report already shows its tail (the same lines are not printed twice)."""
        logs = [("stdout", request.stdout_path)]
        if with_stderr:
            logs.append(("stderr", request.stderr_path))
        for name, path in logs:
            lines, cut = tail_lines(path, SECTION_TAIL)
            if lines:
                head = f"[last {len(lines)} lines; full log: {path}]\n" if cut else ""
                self.add_report_section("call", name, head + "\n".join(lines))

    def _timeout_report(self, request: RunRequest, result: RunResult) -> str:
        timeout, source = self.timeout()
        parts = [
            f"experiment '{self.name}' ({self.config_relpath}): TIMEOUT after "
            f"{format_duration(result.duration)} (limit {format_duration(timeout or 0)}, from "
            f"{source}); the tool's process tree got SIGTERM, then SIGKILL after "
            f"{format_duration(request.grace)}",
            f"command: {display_command(request.argv)}",
            f"run directory: {request.run_dir}",
        ]
        lines, _ = tail_lines(request.stderr_path, STDERR_TAIL)
        if lines:
            parts.append(f"last {len(lines)} lines of stderr ({request.stderr_path}):")
            parts.extend("  " + line for line in lines)
        else:
            parts.append(f"stderr was empty ({request.stderr_path})")
        return "\n".join(parts)

    def _failure_report(self, request: RunRequest, result: RunResult) -> str:
        experiment = self.experiment
        lines, cut = tail_lines(request.stderr_path, STDERR_TAIL)
        headline = (
            f"experiment '{self.name}' ({self.config_relpath}): tool "
            f"'{experiment.tool.name}' {describe_exit(result.returncode)} after "
            f"{format_duration(result.duration)}"
        )
        exception = self._exception_line(lines)
        if exception is not None:
            headline += f": {exception}"
        parts = [
            headline,
            f"command: {display_command(request.argv)}",
            f"cwd: {request.cwd}",
            f"run directory: {request.run_dir}",
        ]
        if lines:
            label = f"last {len(lines)} lines" if cut else "stderr"
            parts.append(f"{label} of {request.stderr_path}:")
            parts.extend("  " + line for line in lines)
        else:
            parts.append(f"stderr was empty ({request.stderr_path}); stdout: {request.stdout_path}")
        return "\n".join(parts)

    # What a Python traceback ends with: ``ValueError: msg``, ``pkg.mod.SomeError: msg``,
    # ``KeyboardInterrupt``. Group 1 is the class name.
    _EXCEPTION_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)(?:: .*|:)?")
    _EXCEPTION_NAMES = ("Error", "Exception", "Interrupt", "Exit", "Warning")
    _EXCEPTION_LINE_MAX = 300  # characters of it in the report's first line

    @classmethod
    def _exception_line(cls, lines: list[str]) -> str | None:
        """The tool's exception line in its stderr tail: the last line that looks like the one
        a Python traceback ends with (``ValueError: msg``, ``pkg.mod.SomeError: msg``,
        ``KeyboardInterrupt``), also under Hydra's short traceback (whose closing hint about
        HYDRA_FULL_ERROR is not one). A class name that does not end in Error, Exception, ...
        counts right after a traceback's indented frame lines. None when there is none."""
        found = None
        in_traceback = after_frame = False
        for line in lines:
            text = line.rstrip()
            match = cls._EXCEPTION_LINE.fullmatch(text)
            if match and (match.group(1).endswith(cls._EXCEPTION_NAMES) or after_frame):
                found = text
            if text.lstrip(" |+").startswith("Traceback (most recent call last)"):
                in_traceback = True
            after_frame = in_traceback and text[:1].isspace()
        if found is not None and len(found) > cls._EXCEPTION_LINE_MAX:
            found = found[: cls._EXCEPTION_LINE_MAX - 3] + "..."
        return found

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | Any:
        if isinstance(excinfo.value, XstashError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return (
            self.experiment.config_path,
            self.experiment.line - 1,
            f"{self.experiment.tool.name}: {self.name}",
        )
