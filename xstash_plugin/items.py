"""The pytest nodes: a YAML file collects into experiment items; an item runs its tool."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .command import build_argv
from .durations import format_duration
from .envs import venv_python
from .errors import ConfigError, ConfigErrors, EnvError, RunFailed, XstashError, XstashWarning
from .launchers.local import RunRequest, RunResult, run_local
from .runs import content_key, new_run_dir, tail_lines, write_record, write_tool_config
from .spec import Experiment, load_experiment
from .state import get_state

STDERR_TAIL = 40
SECTION_TAIL = 200


class ExperimentFile(pytest.File):
    """One experiment YAML file below a configs root."""

    def __init__(self, *, configs_root: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.configs_root = configs_root

    def collect(self) -> Iterator[ExperimentItem]:
        state = get_state(self.config)
        registry = state.registry(self.configs_root)
        try:
            experiment = load_experiment(self.path, registry)
        except (ConfigError, ConfigErrors) as exc:
            raise self.CollectError(str(exc)) from None
        first = state.names.setdefault(experiment.name, self.path)
        if first != self.path:
            self.warn(
                XstashWarning(
                    f"experiment name '{experiment.name}' is used by {self.path} and by {first}; "
                    "both run (ids and run directories carry the config path), but a unique "
                    "name is easier to tell apart"
                )
            )
        yield ExperimentItem.from_parent(self, name=experiment.name, experiment=experiment)


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

    def __init__(self, *, experiment: Experiment, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        state = get_state(self.config)
        state.register_marker(experiment.tool.name, f"experiments of tool {experiment.tool.name}")
        self.add_marker(experiment.tool.name)
        for tag in experiment.tags:
            state.register_marker(tag, "experiment tag")
            self.add_marker(tag)
        self.run_dir: Path | None = None
        self.user_properties.extend(
            [
                ("tool", experiment.tool.name),
                ("experiment", experiment.name),
                ("config", self.config_relpath.as_posix()),
                ("tags", ",".join(experiment.tags)),
                ("description", experiment.description),
                ("estimated_runtime", experiment.estimated_runtime or ""),
            ]
        )

    @property
    def config_relpath(self) -> Path:
        path = self.experiment.config_path
        try:
            return path.relative_to(self.config.rootpath)
        except ValueError:
            return path.relative_to(path.parent.parent)

    def _environment(self, python: str) -> dict[str, str]:
        env = dict(os.environ)
        env["HYDRA_FULL_ERROR"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        tool = self.experiment.tool
        if tool.env == "uv":
            venv = tool.path / ".venv"
            env["VIRTUAL_ENV"] = str(venv)
            env["PATH"] = str(venv_python(venv).parent) + os.pathsep + env.get("PATH", "")
        else:
            env.pop("VIRTUAL_ENV", None)
        return env

    def runtest(self) -> None:
        state = get_state(self.config)
        experiment = self.experiment
        tool = experiment.tool
        try:
            python = state.envs.python_for(tool)
        except EnvError as exc:
            raise RunFailed(f"tool '{tool.name}': {exc}") from None
        try:
            run_dir = new_run_dir(
                state.output_root, self.config_relpath, content_key(experiment.payload)
            )
            config_dir = write_tool_config(run_dir, experiment.payload)
        except OSError as exc:
            raise RunFailed(
                f"cannot create the run directory under {state.output_root}: {exc}\n"
                "fix: make the output root writable, free disk space, or choose another one "
                "with --xstash-output-root"
            ) from None
        self.run_dir = run_dir
        self.user_properties.append(("run_dir", str(run_dir)))
        argv = build_argv(python, experiment, config_dir, run_dir)
        record: dict[str, Any] = {
            "status": "running",
            "experiment": experiment.name,
            "config": self.config_relpath.as_posix(),
            "tool": tool.name,
            "tool_path": str(tool.path),
            "argv": list(argv),
            "cwd": str(tool.path),
            "host": socket.gethostname(),
            "python": sys.version.split()[0],
            "launcher": "local",
            "started": time.time(),
        }
        write_record(run_dir, record)
        request = RunRequest(
            argv=argv,
            cwd=tool.path,
            env=self._environment(python),
            run_dir=run_dir,
            live=state.live,
        )
        try:
            result = run_local(request)
        except BaseException:
            record.update(status="interrupted", ended=time.time())
            write_record(run_dir, record)
            raise
        self._finish(request, result, record)

    def _finish(self, request: RunRequest, result: RunResult, record: dict[str, Any]) -> None:
        ok = result.returncode == 0
        record.update(
            status="passed" if ok else "failed",
            exit_code=result.returncode,
            signal=_signal_name(result.returncode) if result.returncode < 0 else None,
            ended=result.ended,
            duration=round(result.duration, 3),
        )
        write_record(request.run_dir, record)
        self.user_properties.append(("exit_code", str(result.returncode)))
        self.user_properties.append(("duration", f"{result.duration:.3f}"))
        if not request.live:
            for name, path in (("stdout", request.stdout_path), ("stderr", request.stderr_path)):
                lines, cut = tail_lines(path, SECTION_TAIL)
                if lines:
                    head = f"[last {len(lines)} lines; full log: {path}]\n" if cut else ""
                    self.add_report_section("call", name, head + "\n".join(lines))
        if not ok:
            raise RunFailed(self._failure_report(request, result))

    def _failure_report(self, request: RunRequest, result: RunResult) -> str:
        experiment = self.experiment
        lines, cut = tail_lines(request.stderr_path, STDERR_TAIL)
        parts = [
            f"experiment '{experiment.name}' ({self.config_relpath}): tool "
            f"'{experiment.tool.name}' {describe_exit(result.returncode)} after "
            f"{format_duration(result.duration)}",
            f"command: {shlex.join(request.argv)}",
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
            f"{self.experiment.tool.name}: {self.experiment.name}",
        )
