"""The pytest nodes: a YAML file collects into experiment items; an item runs its tool.

An item is pytest's part only (``runtest``, ``repr_failure``, ``reportinfo``); what a run
does is in run.py (local) and slurm_run.py, its record in record.py, its texts in messages.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin.config.compose_client import Run as ComposeRun
from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.sweeps import Point, point_labels
from xstash_plugin.config.text import elide, printable_error
from xstash_plugin.errors import ConfigErrors, XstashError, XstashWarning
from xstash_plugin.report.rows import fmt
from xstash_plugin.run import slurm_run
from xstash_plugin.run.run import Run
from xstash_plugin.session import get_state


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
            ComposeRun(label, dict(point), state.point_overrides(point))
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


class ExperimentItem(pytest.Item):
    """One experiment (or one sweep point): running it runs the tool (see run.py); a non-zero
    exit, a failed expectation or a run that cannot start fails it."""

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
        self.run: Run | None = None  # made when it runs (or is submitted)
        self.order = 0  # place among the experiments, see set_order
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
        """What the controller's results table needs (travels to it on the test report):
        derived from the run's record, or the experiment's identity when it did not run."""
        experiment = self.experiment
        base = {
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
        return base if self.run is None else self.run.row(base)

    def set_order(self, index: int) -> None:
        """The experiment's place in collection order (its row's ``order``)."""
        self.order = index

    @property
    def config_relpath(self) -> Path:
        path = self.experiment.config_path
        try:
            return path.relative_to(self.config.rootpath)
        except ValueError:
            return path.relative_to(path.parent.parent)

    def launcher(self) -> str:
        """Most specific first: the config's xstash.launcher, the tool's, the session's."""
        state = get_state(self.config)
        return self.experiment.launcher or self.experiment.tool.launcher or state.settings.launcher

    def presubmit(self) -> None:
        """Submit this experiment's SLURM job now (the session submits all before any runs)."""
        self.run = Run(self)
        slurm_run.presubmit(self.run)

    def cancel_pending(self) -> None:
        if self.run is not None:
            slurm_run.cancel_pending(self.run)

    def runtest(self) -> None:
        state = get_state(self.config)
        slurm = self.launcher() == "slurm"
        run = self.run = self.run or Run(self)
        try:
            if not slurm:
                run.settle_stale()
            if run.slurm_job is None and state.reuse is not None and run.reuse():
                return
            if run.record is None and slurm:
                slurm_run.attach(run)
            if run.record is None:
                run.prepare()
            if slurm:
                slurm_run.run_slurm(run)
            else:
                run.run_local()
        finally:
            self.user_properties.extend(run.properties())

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
