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
from xstash_plugin.config.seeds import AGGREGATE_NAME, Seeding, directions
from xstash_plugin.config.sweeps import Point, point_labels
from xstash_plugin.config.text import elide, printable_error
from xstash_plugin.errors import ConfigErrors, EnvError, RunFailed, XstashError, XstashWarning
from xstash_plugin.launchers.slots import local_misfit
from xstash_plugin.report.rows import fmt
from xstash_plugin.run import needs_run, regression, slurm_run
from xstash_plugin.run.aggregate import SeedResult, aggregate, samples
from xstash_plugin.run.aggregate import properties as aggregate_properties
from xstash_plugin.run.record import RunRecord, row_of
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

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        state = get_state(self.config)
        try:
            experiment = state.experiment(self.path, self.configs_root)
        except XstashError as exc:
            raise self.CollectError(str(exc)) from None
        where = experiment.launcher_or(state.settings.launcher)
        misfit = local_misfit(experiment, state.settings, where)
        problems = [misfit] if misfit is not None else []
        problems += needs_run.collection_errors(state, experiment)
        if problems:
            raise self.CollectError(str(ConfigErrors(problems)))
        seeding = experiment.seeding
        if seeding is not None:
            group_labels, labels = seeding.labels()
        else:
            group_labels = []
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
        if seeding is not None:
            yield from self._seeded(experiment, seeding, group_labels, labels)
        elif not experiment.points:
            yield ExperimentItem.from_parent(self, name=experiment.name, experiment=experiment)
        else:
            for point, label in zip(experiment.points, labels, strict=True):
                yield self._node(ExperimentItem, experiment, label, point=point)

    def _node(self, kind: Any, experiment: Experiment, label: str, **kwargs: Any) -> Any:
        """A child node named ``<experiment>[<label>]`` (just the name without a label)."""
        if not label:
            return kind.from_parent(self, name=experiment.name, experiment=experiment, **kwargs)
        parent_id = getattr(self, "id", None)
        if hasattr(parent_id, "with_params"):
            # pytest >= 9.2 keeps ids structured: `name[params]` must be built as such, or
            # --lf / --nf cannot match the ids they read back from the cache.
            kwargs["nodeid"] = parent_id.child(experiment.name).with_params(label)  # type: ignore[union-attr]
        name = f"{experiment.name}[{label}]"
        return kind.from_parent(self, name=name, experiment=experiment, **kwargs)

    def _seeded(
        self, experiment: Experiment, seeding: Seeding, group_labels: list[str], labels: list[str]
    ) -> Iterator[pytest.Item | pytest.Collector]:
        """Every seed run (point by point), then the node holding the points' aggregates."""
        per = len(seeding.seeds)
        groups = []
        for g, (group, group_label) in enumerate(zip(seeding.groups, group_labels, strict=True)):
            seeds = []
            for s, seed in enumerate(seeding.seeds):
                index = g * per + s
                point = experiment.points[index]
                item = self._node(ExperimentItem, experiment, labels[index], point=point, seed=seed)
                seeds.append(item)
                yield item
            groups.append((group, group_label, seeds))
        node = SeedGroup.from_parent(self, name=experiment.name, experiment=experiment)
        node.groups = groups
        yield node


class PlainFailures(pytest.Item):
    """An item whose failures are xstash's own texts (no traceback of the plugin)."""

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | Any:
        if isinstance(excinfo.value, XstashError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)


class ExperimentItem(PlainFailures):
    """One experiment (or one sweep point): running it runs the tool (see run.py); a non-zero
    exit, a failed expectation or a run that cannot start fails it."""

    def __init__(
        self,
        *,
        experiment: Experiment,
        point: Point = (),
        seed: int | None = None,
        group: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.point = point
        self.seed = seed  # xstash.seeds: this run's seed, and its aggregate's id
        self.group = group
        if seed is not None:
            # `-k` cannot hold '=': `-k "seed_0 or seed_1"` picks seeds by this keyword.
            self.extra_keyword_matches.add(f"seed_{seed}")
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
        base = identity_row(
            self.nodeid,
            experiment,
            self.config_posix,
            self.effective_point,
            self.order,
            overrides=list(self.overrides),
            estimated_runtime=experiment.estimated_runtime,
            estimated_seconds=experiment.estimated_seconds,
            **({} if self.group is None else self._seed_fields()),
        )
        return base if self.run is None else self.run.row(base)

    def _seed_fields(self) -> dict[str, Any]:
        assert self.experiment.seeding is not None
        key = self.experiment.seeding.key.lstrip("+")
        return {"seed": self.seed, "group": self.group, "seed_key": key}

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
        return self.experiment.launcher_or(state.settings.launcher)

    def begin_submission(self) -> Run:
        """This experiment's run, before the session submits it (see run/slurm_plan.py)."""
        self.run = Run(self)
        return self.run

    def runtest(self) -> None:
        run = self.run = self.run or Run(self)
        try:
            self._run(run)
            if self.seed is None and run.record is not None:  # seeds: their aggregate compares
                self._against_baseline(run)
        finally:
            self.user_properties.extend(run.properties())

    def _run(self, run: Run) -> None:
        state = get_state(self.config)
        slurm = self.launcher() == "slurm"
        if not slurm:
            run.settle_stale()
        needs_run.attach_needs(run)  # upstreams' results, or the failed-dependency report
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

    def _against_baseline(self, run: Run) -> None:
        assert run.record is not None
        compared, failure = regression.check(
            self,
            self.experiment,
            self.config_posix,
            self.effective_point,
            regression.numeric(run.record.metrics),
        )
        if compared is None:
            return
        run.record.update(baseline=compared)
        if run.reused_from is None:
            run.save()
        if failure is not None:
            run.status_override = "regressed"
            raise RunFailed(failure)

    def reportinfo(self) -> tuple[Path, int, str]:
        return (
            self.experiment.config_path,
            self.experiment.line - 1,
            f"{self.experiment.tool.name}: {self.name}",
        )


def identity_row(
    nodeid: str,
    experiment: Experiment,
    config: str,
    point: dict[str, Any],
    order: int,
    **values: Any,
) -> dict[str, Any]:
    """A result row before its run: who it is, nothing measured yet."""
    return {
        "id": nodeid,
        "experiment": experiment.name,
        "config": config,
        "tool": experiment.tool.name,
        "tags": list(experiment.tags),
        "point": point,
        "overrides": [],
        "status": "not run",
        "estimated_runtime": None,
        "estimated_seconds": None,
        "duration": None,
        "exit_code": None,
        "metrics": {},
        "verdicts": [],
        "run_dir": None,
        "order": order,
        "direction": directions(experiment.expectations, experiment.direction),
        **values,
    }


class SeedGroup(pytest.Collector):
    """A seeded experiment's aggregates: ``name::mean[point]`` (``name::mean`` without a
    sweep), one per point, like a test function parametrized by point. The seed runs are
    items of the file beside it (``name[point-seed=3]``)."""

    def __init__(self, *, experiment: Experiment, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.groups: list[tuple[Point, str, list[ExperimentItem]]] = []

    def collect(self) -> Iterator[AggregateItem]:
        for point, label, seeds in self.groups:
            extra: dict[str, Any] = {}
            name = AGGREGATE_NAME
            if label:
                name = f"{AGGREGATE_NAME}[{label}]"
                parent_id = getattr(self, "id", None)
                if hasattr(parent_id, "with_params"):  # pytest >= 9.2: see ExperimentFile._node
                    extra["nodeid"] = parent_id.child(AGGREGATE_NAME).with_params(label)  # type: ignore[union-attr]
            item = AggregateItem.from_parent(
                self, name=name, experiment=self.experiment, point=point, **extra
            )
            item.seeds = seeds
            for seed in seeds:
                seed.group = item.nodeid
            yield item


class AggregateItem(PlainFailures):
    """The seeds of one point as one result: statistics over their metrics, judged (see
    run/aggregate.py). Runs after its seeds (collection order; the xdist scheduler holds it
    back); never waits for them."""

    def __init__(self, *, experiment: Experiment, point: Point = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.point = point
        self.order = 0
        self.row: dict[str, Any] | None = None
        self.seeds: list[ExperimentItem] = []  # set by SeedGroup.collect
        state = get_state(self.config)
        tool = experiment.tool.name
        self.add_marker(state.register_marker(tool, f"experiments of tool {tool}"))
        for tag in experiment.tags:
            self.add_marker(state.register_marker(tag, "experiment tag"))
        self.user_properties.extend(
            [("tool", tool), ("experiment", experiment.name), ("kind", "aggregate")]
        )

    def set_order(self, index: int) -> None:
        self.order = index

    @property
    def result_row(self) -> dict[str, Any]:
        if self.row is not None:
            return self.row
        config = self.seeds[0].config_posix if self.seeds else ""
        return identity_row(
            self.nodeid, self.experiment, config, dict(self.point), self.order, kind="aggregate"
        )

    def runtest(self) -> None:
        seeding = self.experiment.seeding
        assert seeding is not None
        results = [seed_result(self, item) for item in self.seeds]
        outcome = aggregate(self.result_row, seeding, self.experiment.expectations, results)
        self.row = outcome.row
        self.user_properties.extend(aggregate_properties(outcome.row))
        if outcome.status == "incomplete":
            pytest.skip(outcome.message or "incomplete")
        if outcome.status == "failed":
            raise RunFailed(outcome.message or "failed")
        config = str(outcome.row["config"])
        compared, failure = regression.check(
            self, self.experiment, config, dict(self.point), samples(results)
        )
        if compared is not None:
            outcome.row["baseline"] = compared
        if failure is not None:
            outcome.row["status"] = "regressed"
            raise RunFailed(failure)

    def reportinfo(self) -> tuple[Path, int, str]:
        line = self.experiment.line - 1
        return (self.experiment.config_path, line, f"{self.experiment.tool.name}: {self.name}")


def seed_result(aggregate_item: AggregateItem, item: ExperimentItem) -> SeedResult:
    """A seed's result: from this session; else, when it was not selected, a passed run with
    the same run key; else why there is none."""
    state = get_state(aggregate_item.config)
    assert item.seed is not None
    row = state.session_results.get(item.nodeid)
    if row is not None:
        return SeedResult(item.seed, item.nodeid, row)
    if item.nodeid in state.selected(aggregate_item.session):
        why = "no result in this session (its worker died, or the session stopped first)"
        return SeedResult(item.seed, item.nodeid, None, missing=why)
    earlier = earlier_passed(item)
    if earlier is not None:
        record = RunRecord.load(earlier)
        row = row_of(record, earlier, id=item.nodeid, status="passed")
        return SeedResult(item.seed, item.nodeid, row, earlier=str(earlier))
    why = (
        "not selected in this session, and no passed run with the same run key stands in for "
        f"it (run it: pytest '{item.nodeid}')"
    )
    return SeedResult(item.seed, item.nodeid, None, missing=why)


def earlier_passed(item: ExperimentItem) -> Path | None:
    """The run directory of the latest passed run with ``item``'s run key, if any."""
    state = get_state(item.config)
    try:
        state.envs.python_for(item.experiment.tool)  # a uv lock file is in the run key
        key = Run(item).run_key()
    except (EnvError, OSError, ValueError):
        return None
    return state.earlier_runs().find(item.config_relpath, key)


def aggregates_after_seeds(items: list[pytest.Item]) -> list[pytest.Item]:
    """Each aggregate right after the last of its seeds that runs (so a serial session judges
    it once they are done); one with none of its seeds selected stays where it is."""
    aggregates = {item.nodeid: item for item in items if isinstance(item, AggregateItem)}
    last: dict[str, int] = {}
    for index, item in enumerate(items):
        if isinstance(item, ExperimentItem) and item.group in aggregates:
            last[item.group] = index
    after: dict[int, list[pytest.Item]] = {}
    for nodeid, index in last.items():
        after.setdefault(index, []).append(aggregates[nodeid])
    moved = {id(item) for group in after.values() for item in group}
    ordered: list[pytest.Item] = []
    for index, item in enumerate(items):
        if id(item) not in moved:
            ordered.append(item)
        ordered.extend(after.get(index, ()))
    return ordered
