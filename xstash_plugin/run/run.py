"""One run of an experiment item: prepare → launch → judge → finish.

:class:`Run` owns the run's record (record.py); the item's result row and JUnit properties
are derived from it when the run ends (:meth:`row`, :meth:`properties`); SLURM: slurm_run.py.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import pytest

from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.overrides import display_command
from xstash_plugin.errors import EnvError, RunFailed, XstashWarning
from xstash_plugin.fsutil import tail_lines
from xstash_plugin.launchers.base import Launcher, RunRequest, RunResult
from xstash_plugin.launchers.local import COOKIE_VAR, LocalLauncher
from xstash_plugin.launchers.pack import Submitted
from xstash_plugin.launchers.preload import PreloadLost, PreloadUnavailable, server_key
from xstash_plugin.launchers.slots import plan_for
from xstash_plugin.report import progress
from xstash_plugin.run import messages
from xstash_plugin.run.command import build_argv
from xstash_plugin.run.envs import tool_environ
from xstash_plugin.run.judge import (
    DEFAULT_METRICS,
    MetricsError,
    Verdict,
    bounded,
    judge,
    read_metrics,
)
from xstash_plugin.run.needs_run import payload_with
from xstash_plugin.run.provenance import KeyParts
from xstash_plugin.run.record import RunRecord, Status, row_of, run_properties
from xstash_plugin.run.rundir import content_key, new_run_dir, write_tool_config
from xstash_plugin.run.stale import process_identity
from xstash_plugin.run.what_ran import provenance
from xstash_plugin.session import get_state


class Item(Protocol):
    """What a run needs of its pytest item (run/items.py's ExperimentItem is one)."""

    config: pytest.Config
    name: str
    experiment: Experiment
    overrides: tuple[str, ...]
    effective_point: dict[str, Any]
    stash: pytest.Stash

    @property
    def nodeid(self) -> str: ...

    @property
    def config_relpath(self) -> Path: ...

    def launcher(self) -> str: ...

    def warn(self, warning: Warning) -> None: ...

    def add_report_section(self, when: str, key: str, content: str) -> None: ...


class Run:
    """The run of ``item`` in this session (at most one)."""

    def __init__(self, item: Item) -> None:
        self.item = item
        self.state = get_state(item.config)
        self.experiment = item.experiment
        self.who = f"experiment '{item.name}' ({item.config_relpath})"
        self.record: RunRecord | None = None
        self.request: RunRequest | None = None
        self.run_dir: Path | None = None
        self.record_error: str | None = None  # the record could not be written
        self.reused_from: Path | None = None
        self.status_override: str | None = None  # a row status no record has (reused)
        self.slurm_job: Submitted | None = None
        self.slurm_finished = False
        self.presubmit_error: RunFailed | None = None
        self.needs: dict[str, dict[str, Any]] | None = None  # upstreams' results (needs_run.py)

    # --- what the item reports, derived from the record ---------------------------------

    def row(self, base: dict[str, Any]) -> dict[str, Any]:
        """The result row: ``base`` (the item's identity) with what the record says."""
        if self.record is None:
            return {**base, "status": self.status_override or base["status"]}
        keep = {k: base[k] for k in ("id", "order", "estimated_runtime", "estimated_seconds")}
        row = row_of(self.record, self.run_dir, **keep)
        row["tags"] = base["tags"]
        row["point"] = base["point"]  # what ran, with command-line overrides of swept keys
        row.update({k: base[k] for k in ("direction", "seed", "group", "seed_key") if k in base})
        if self.reused_from is not None:
            row["reused_from"] = str(self.reused_from)
        if self.status_override is not None:
            row["status"] = self.status_override
        return row

    def properties(self) -> list[tuple[str, str]]:
        """The run's JUnit properties (the item adds its identity's)."""
        if self.record is None:
            return []
        return run_properties(self.record, self.run_dir, self.reused_from)

    # --- saving -------------------------------------------------------------------------

    def save(self) -> None:
        """Write the record; a full disk must not turn into a plugin traceback mid-run."""
        assert self.record is not None and self.run_dir is not None
        try:
            self.record.save(self.run_dir)
        except OSError as exc:
            self.record_error = (
                f"the run record {self.run_dir / 'xstash.json'} could not be written: {exc}"
            )

    def end(self, status: Status, **values: Any) -> None:
        assert self.record is not None
        self.record.update(status=status, ended=values.pop("ended", time.time()), **values)
        self.save()

    # --- before the tool starts ---------------------------------------------------------

    def run_key(self) -> str:
        """The content hash that decides whether a passed run can stand in for this one."""
        return self.key_parts().key

    def key_parts(self) -> KeyParts:
        """The run key and its ingredients (provenance.py)."""
        experiment, repo = self.experiment, self.experiment.tool.meta_path.parent.parent
        return self.state.keys.parts(
            experiment.tool.name,
            experiment.tool.path,
            experiment.payload,  # as written: an upstream's change counts as 'upstream'
            list(self.item.overrides),
            {name: repo / name for name in experiment.inputs},
            upstream={name: str(v["run_key"]) for name, v in (self.needs or {}).items()},
        )

    def _provenance(self, python: str | None) -> dict[str, Any]:
        """What ran (what_ran.py): environment, git state and diff, the run key's ingredients,
        and with --xstash-reuse why it runs again."""
        assert self.run_dir is not None
        return provenance(self.state, self.item, python, self.run_dir, self.key_parts())

    def timeout(self) -> tuple[float | None, str]:
        """The run's time limit and where it comes from: the config's own, else the session's."""
        if self.experiment.timeout is not None:
            return self.experiment.timeout, f"xstash.timeout in {self.item.config_relpath}"
        settings = self.state.settings
        if settings.timeout is None:
            return None, ""
        return settings.timeout, settings.source("timeout")

    def settle_stale(self) -> None:
        """Runs of this experiment an earlier, dead session left 'running' on this host: close
        the finished ones; refuse to start a second copy next to one whose tool still runs."""
        state = self.state
        for stale in state.stale.find(self.item.config_relpath, self.item.nodeid):
            worker = stale.record.get("worker_pid")
            if not stale.alive:
                reason = state.stale.close(stale, state.session_id)
                self.item.warn(XstashWarning(f"{stale.run_dir}: marked 'error': {reason}"))
                continue
            pids = " ".join(map(str, stale.alive))
            group = stale.record.get("tool_pid")
            stop = f"kill -- -{group}; kill {pids}" if group in stale.alive else f"kill {pids}"
            raise RunFailed(
                f"{self.who} was not started: its run {stale.run_dir} from an earlier pytest "
                f"session is still running (that pytest, pid {worker}, died and left it behind; "
                f"its processes: {pids}); xstash does not start a second copy next to it\n"
                f"fix: wait for those processes to end, or stop them ({stop}); the next "
                "session then marks that run 'error' and runs the experiment again"
            )

    def reuse(self) -> bool:
        """With --xstash-reuse: stand in a passed run with the same run key, re-judged against
        the current expectations. False when there is none (then the tool runs)."""
        state = self.state
        assert state.reuse is not None
        try:
            state.envs.python_for(self.experiment.tool)  # a lock file made by uv is in the key
        except EnvError:
            return False  # the normal path reports it, with a record
        previous = state.reuse.find(self.item.config_relpath, self.run_key())
        for problem in state.reuse.problems:
            if problem not in state.reported:
                state.reported.add(problem)
                self.item.warn(XstashWarning(problem))
        if previous is None:
            return False
        old = RunRecord.load(previous)
        metrics, verdicts, metrics_problem = self.judge(previous)
        ok = metrics_problem is None and all(v.ok for v in verdicts)
        # The reused run's record, re-judged (in memory: the file is the old run's).
        old.update(metrics=metrics or {}, expectations=[v.as_dict() for v in verdicts])
        old.nodeid, old.rerun_reason = self.item.nodeid, None  # it ran then, not now
        self.record, self.run_dir, self.reused_from = old, previous, previous
        self.status_override = "reused" if ok else "failed"
        if metrics_problem is not None:
            raise RunFailed(f"{self.who}: reused run {previous}: {metrics_problem}")
        if not ok:
            raise RunFailed(
                messages.expectations_failed(
                    self.who,
                    verdicts,
                    f" on the reused run {previous} (its config and tool are unchanged, so it "
                    "was not run again)",
                )
            )
        return True

    def prepare(self) -> RunRequest:
        """Run directory, record, environment and command: all but starting the tool."""
        state, item, experiment = self.state, self.item, self.experiment
        tool = experiment.tool
        payload = payload_with(experiment, self.needs or {}, self.who)  # needs resolved
        key = content_key({"config": payload, "overrides": item.overrides})
        try:
            run_dir = new_run_dir(state.output_root, item.config_relpath, key)
            config_dir = write_tool_config(run_dir, payload)
        except OSError as exc:
            self.status_override = "error"
            raise RunFailed(
                f"cannot create the run directory under {state.output_root}: {exc}\n"
                "fix: make the output root writable, free disk space, or choose another one "
                "with --xstash-output-root"
            ) from None
        self.run_dir = run_dir
        self.record = RunRecord(
            status=Status.RUNNING,
            experiment=experiment.name,
            config=item.config_relpath.as_posix(),
            nodeid=item.nodeid,
            config_key=key,
            point=item.effective_point or None,
            seed_key=experiment.seeding.key.lstrip("+") if experiment.seeding else None,
            overrides=list(item.overrides),
            tags=list(experiment.tags),
            tool=tool.name,
            tool_path=str(tool.path),
            cwd=str(tool.path),
            host=socket.gethostname(),
            python=sys.version.split()[0],
            started=time.time(),
            worker_pid=os.getpid(),  # who runs it (see stale.py), until the tool starts
            worker_identity=process_identity(os.getpid()),
        )
        self.save()
        try:
            python = state.envs.python_for(tool)
        except EnvError as exc:
            self.end(Status.ERROR, error=str(exc))
            raise RunFailed(f"tool '{tool.name}': {exc}\nrun directory: {run_dir}") from None
        except BaseException:  # Ctrl-C while uv works: the record must not stay 'running'
            self.end(Status.INTERRUPTED)
            raise
        argv = build_argv(python, experiment, config_dir, run_dir, item.overrides)
        self.record.update(argv=list(argv), run_key=self.run_key(), **self._provenance(python))
        self.save()
        timeout, timeout_source = self.timeout()
        self.record.update(timeout=timeout, timeout_source=timeout_source or None)
        cookie = uuid.uuid4().hex  # marks every process of this run, see kill_escapees
        self.request = RunRequest(
            timeout=timeout,
            grace=state.settings.grace,
            argv=argv,
            cwd=tool.path,
            env={**tool_environ(tool), COOKIE_VAR: cookie},
            run_dir=run_dir,
            live=state.settings.live,
            cookie=cookie,
        )
        self.record.update(launcher=item.launcher())
        return self.request

    # --- the local launch ---------------------------------------------------------------

    def run_local(self) -> None:
        request, record, state = self.request, self.record, self.state
        assert request is not None and record is not None
        tool = self.experiment.tool

        def started(pid: int) -> None:
            state.watchdog.add(pid, request.cookie, request.run_dir)  # should pytest die...
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
            self.save()
            progress.announce(self.item, request, pid)  # removed when runtest ends

        def interrupted() -> None:
            self.end(Status.INTERRUPTED)

        try:
            result = self._launch(interrupted, started)
        except PreloadLost as exc:
            self.end(Status.ERROR, error=str(exc))
            raise RunFailed(
                f"{self.who}: {exc}\nrun directory: {request.run_dir}\nfix: run it again; if it "
                f"happens again, remove 'preload: true' from tool '{tool.name}' in "
                f"{tool.meta_path}"
            ) from None
        except OSError as exc:  # the tool could not be started (or its logs not opened)
            self.end(Status.ERROR, error=f"cannot start the tool: {exc}")
            raise RunFailed(
                f"{self.who}: cannot start tool '{tool.name}': {exc}\ncommand: "
                f"{display_command(request.argv)}\nrun directory: {request.run_dir}"
            ) from None
        finally:
            if record.tool_pid is not None:
                state.watchdog.remove(record.tool_pid)  # its process group is gone
        self.finish(result)

    def _launch(self, interrupted: Any, started: Any) -> RunResult:
        """Fork the run from the tool's preload server when it has one (``preload: true``),
        else start it; a tool that cannot be preloaded runs plainly, with a warning."""
        request, record, state = self.request, self.record, self.state
        assert request is not None and record is not None
        tool, slots = self.experiment.tool, plan_for(self)  # local GPUs/CPUs/memory
        record.update(preloaded=False)
        if tool.preload:
            key = server_key(request.argv, request.cwd, request.env)
            try:
                if key is None:
                    raise PreloadUnavailable(
                        f"its entrypoint {' '.join(tool.entrypoint)!r} is not a Python file or "
                        "module"
                    )
                log = state.xstash_dir / "preload" / f"{tool.name}-{os.getpid()}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                # Not the run's cookie: the server outlives the run (its forks carry it).
                server_env = {k: v for k, v in request.env.items() if k != COOKIE_VAR}
                server = state.preload.server(key, server_env, log)
                record.update(preloaded=True)
                return self._wait(LocalLauncher(interrupted, started, server, slots))
            except PreloadUnavailable as exc:
                record.update(preloaded=False)
                problem = f"tool '{tool.name}' cannot be preloaded, its runs start plainly: {exc}"
                if problem not in state.reported:
                    state.reported.add(problem)
                    self.item.warn(XstashWarning(problem))
        return self._wait(LocalLauncher(interrupted, started, slots=slots))

    def _wait(self, launcher: Launcher) -> RunResult:
        assert self.request is not None
        return launcher.launch(self.request).wait()

    # --- after the tool ended -----------------------------------------------------------

    def judge(self, run_dir: Path) -> tuple[dict[str, Any] | None, list[Verdict], str | None]:
        """Metrics (as kept: see judge.bounded), verdicts, and a problem with the metrics file
        (if any). Never raises: whatever a tool wrote, the run gets a verdict and an end."""
        experiment = self.experiment
        declared = experiment.metrics_file is not None or bool(experiment.expectations)
        path = run_dir / (experiment.metrics_file or DEFAULT_METRICS)
        if not declared and not path.exists():
            return None, [], None
        try:
            metrics = read_metrics(path)
            # Expectations on statistics over seeds are the aggregate's to judge (aggregate.py).
            per_run = [e for e in experiment.expectations if e.statistic is None]
            verdicts = judge(per_run, metrics)
            kept, note = bounded(metrics)
        except MetricsError as exc:
            return None, [], str(exc)
        except (RecursionError, ValueError, TypeError, OverflowError, MemoryError) as exc:
            return None, [], f"metrics file {path} cannot be judged: {type(exc).__name__}: {exc}"
        if note is not None and self.record is not None and self.reused_from is None:
            self.record.update(metrics_note=f"metrics file {path}: {note}")
        return kept, verdicts, None

    def finish(self, result: RunResult) -> None:
        request, record = self.request, self.record
        assert request is not None and record is not None
        exited_ok = result.returncode == 0
        if result.escaped:
            record.update(escaped=list(result.escaped))
            self.item.warn(
                XstashWarning(
                    f"{self.who}: {len(result.escaped)} process(es) had left the tool's process "
                    f"group and were stopped when the run ended: {'; '.join(result.escaped)}"
                )
            )
        metrics, verdicts, metrics_problem = self.judge(request.run_dir)
        code = result.returncode
        ok = exited_ok and metrics_problem is None and all(v.ok for v in verdicts)
        status = Status.TIMEOUT if result.timed_out else Status.PASSED if ok else Status.FAILED
        record.update(
            exit_code=result.returncode,
            signal=messages.signal_name(code) if code is not None and code < 0 else None,
            duration=round(result.duration, 3),
            metrics=metrics,
            metrics_error=metrics_problem,
            expectations=[v.as_dict() for v in verdicts],
            slots=result.slots,
        )
        self.end(status, ended=result.ended)
        report = None  # a timeout's or a failed exit's report, which shows the stderr tail
        if self.record_error is None and result.timed_out:
            report = messages.timeout_report(self.who, request, result, *self.timeout())
        elif self.record_error is None and not exited_ok:
            report = messages.failure_report(self.who, self.experiment.tool.name, request, result)
        if not request.live:
            self._log_sections(with_stderr=report is None)
        if self.record_error is not None:
            raise RunFailed(
                f"{self.who}: {self.record_error}\nthe tool "
                f"{messages.describe_exit(result.returncode)}; its logs are in "
                f"{request.run_dir}\nfix: free disk space or choose another --xstash-output-root"
            )
        if report is not None:
            raise RunFailed(report)
        if metrics_problem is not None:
            raise RunFailed(f"{self.who}: {metrics_problem}\nrun directory: {request.run_dir}")
        if not ok:
            metrics_path = request.run_dir / (self.experiment.metrics_file or DEFAULT_METRICS)
            raise RunFailed(
                messages.expectations_failed(self.who, verdicts)
                + f"\nmetrics: {metrics_path}\nrun directory: {request.run_dir}"
            )

    def _log_sections(self, with_stderr: bool) -> None:
        """pytest's captured-output sections: the last lines of stdout, and of stderr unless
        the failure report already shows its tail (the same lines are not printed twice)."""
        assert self.request is not None
        logs = [("stdout", self.request.stdout_path)]
        if with_stderr:
            logs.append(("stderr", self.request.stderr_path))
        for name, path in logs:
            lines, cut = tail_lines(path, messages.SECTION_TAIL)
            if lines:
                head = f"[last {len(lines)} lines; full log: {path}]\n" if cut else ""
                self.item.add_report_section("call", name, head + "\n".join(lines))
