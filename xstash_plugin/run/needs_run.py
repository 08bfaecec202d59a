"""``xstash.needs`` at collection and at run time (see config/needs.py for the syntax).

At collection each config's needs are checked against their targets (an experiment, one point
of a sweep, no cycle). At run time a downstream experiment finds its upstream's result: the
upstream item of this session (run, or reused with --xstash-reuse), which the session ran
first (the scheduler holds a downstream until its upstreams finished, under -n too), else the
newest passed run of the upstream (when it was not selected: --xstash-no-needs). A failed
upstream fails its dependents without running them, naming the upstream and its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from xstash_plugin.config import needs as needs_config
from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.sweeps import point_labels
from xstash_plugin.errors import ConfigError, RunFailed, XstashError
from xstash_plugin.run.record import RunRecord

if TYPE_CHECKING:
    from xstash_plugin.session import State

PASSED = ("passed", "reused")


def labels_of(experiment: Experiment) -> list[str]:
    return point_labels(list(experiment.points)) if experiment.points else []


def load(state: State, path: Path) -> Experiment | None:
    root = state.configs_root(path.parent)
    if root is None:
        return None
    try:
        return state.experiment(path, root)
    except XstashError:
        return None


def collection_errors(state: State, experiment: Experiment) -> list[ConfigError]:
    if not experiment.needs:
        return []
    return needs_config.check_graph(
        experiment.config_path,
        experiment.needs,
        lambda path: load(state, path),
        labels_of,
    )


def upstream_nodeid(state: State, need: needs_config.Need) -> str | None:
    """The test id of a need's target (its point's, for a sweep)."""
    upstream = load(state, need.target)
    if upstream is None:
        return None
    try:
        relpath = need.target.relative_to(state.config.rootpath).as_posix()
    except ValueError:
        return None
    nodeid = f"{relpath}::{upstream.name}"
    return f"{nodeid}[{need.point}]" if need.point else nodeid


def newest_passed(state: State, need: needs_config.Need) -> Path | None:
    """The newest passed run of a need's target outside this session (same point)."""
    nodeid = upstream_nodeid(state, need)
    if nodeid is None:
        return None
    relpath = need.target.relative_to(state.config.rootpath)
    return state.earlier_runs().latest(relpath, nodeid)


def resolve(state: State, experiment: Experiment, who: str) -> dict[str, dict[str, Any]]:
    """``name -> {run_dir, metrics, run_key, nodeid}`` of each need; RunFailed (the
    failed-dependency report) when an upstream did not pass or has no passed run."""
    found: dict[str, dict[str, Any]] = {}
    for need in experiment.needs:
        nodeid = upstream_nodeid(state, need)
        row = state.session_results.get(nodeid) if nodeid else None
        if row is not None:
            status = str(row.get("status"))
            if status not in PASSED:
                reason = row.get("error") or row.get("reason") or status
                raise RunFailed(
                    f"{who}: failed dependency: needs '{need.name}' ({nodeid}), which "
                    f"{status} in this session: {reason}\nit was not run; fix the upstream "
                    "and run again"
                )
            run_dir = Path(str(row.get("run_dir")))
        else:
            earlier = newest_passed(state, need)
            if earlier is None:
                raise RunFailed(
                    f"{who}: failed dependency: needs '{need.name}' ({need.raw}), which did "
                    "not run in this session and has no passed run in "
                    f"{state.output_root}\nrun it too (without --xstash-no-needs)"
                )
            run_dir = earlier
        try:
            record = RunRecord.load(run_dir)
        except (OSError, ValueError) as exc:
            raise RunFailed(
                f"{who}: needs '{need.name}': its run {run_dir} has no readable record ({exc})"
            ) from None
        found[need.name] = {
            "run_dir": str(run_dir),
            "metrics": record.metrics or {},
            "run_key": record.run_key,
            "nodeid": nodeid or need.raw,
        }
    return found


def payload_with(experiment: Experiment, values: dict[str, dict[str, Any]], who: str) -> Any:
    """The tool's config with every ``${xstash.needs...}`` resolved."""
    if not values:
        return experiment.payload
    try:
        return needs_config.resolve(experiment.payload, values)
    except KeyError as exc:
        name, _, what = str(exc.args[0]).partition(".")
        known = ", ".join(sorted(values.get(name, {}).get("metrics") or {})) or "none"
        raise RunFailed(
            f"{who}: '${{xstash.needs.{name}.{what}}}' cannot be resolved: the upstream's run "
            f"has no such metric (its metrics: {known})"
        ) from None


def _needs(item: Any) -> tuple[needs_config.Need, ...]:
    experiment = getattr(item, "experiment", None)
    return tuple(getattr(experiment, "needs", ()) or ()) if hasattr(item, "run") else ()


def add_upstreams(state: State, items: list[Any], deselected: list[Any]) -> list[Any]:
    """The deselected upstreams (-k, -m) of the selected items, and theirs: to run too."""
    pool = {item.nodeid: item for item in deselected}
    added: list[Any] = []
    queue = list(items)
    while queue:
        for need in _needs(queue.pop()):
            nodeid = upstream_nodeid(state, need)
            if nodeid in pool:
                upstream = pool.pop(nodeid)
                added.append(upstream)
                queue.append(upstream)
    return added


def upstreams_first(state: State, items: list[Any]) -> list[Any]:
    """``items`` in their order, except that each upstream comes before its dependents."""
    by_id = {item.nodeid: item for item in items}
    placed: set[str] = set()
    out: list[Any] = []

    def place(item: Any, depth: int = 0) -> None:
        if item.nodeid in placed or depth > len(items):
            return
        for need in _needs(item):
            upstream = by_id.get(upstream_nodeid(state, need) or "")
            if upstream is not None:
                place(upstream, depth + 1)
        placed.add(item.nodeid)
        out.append(item)

    for item in items:
        place(item)
    return out


def needed(state: State, items: list[Any]) -> set[str]:
    """Test ids of this session's upstreams (their results are kept for their dependents)."""
    found = set()
    for item in items:
        for need in _needs(item):
            nodeid = upstream_nodeid(state, need)
            if nodeid is not None:
                found.add(nodeid)
    return found


def needs_dependencies(state: State, collection: list[str]) -> dict[int, set[int]]:
    """For the xdist controller (which has test ids, not items): each downstream's index in
    ``collection`` -> the indices of its upstreams there."""
    index = {nodeid: i for i, nodeid in enumerate(collection)}
    deps: dict[int, set[int]] = {}
    by_file: dict[str, tuple[needs_config.Need, ...]] = {}
    for i, nodeid in enumerate(collection):
        file = nodeid.split("::", 1)[0]
        if file not in by_file:
            path = state.config.rootpath / file
            experiment = load(state, path) if path.suffix in (".yaml", ".yml") else None
            by_file[file] = experiment.needs if experiment is not None else ()
        for need in by_file[file]:
            upstream = index.get(upstream_nodeid(state, need) or "")
            if upstream is not None:
                deps.setdefault(i, set()).add(upstream)
    return deps


def attach_needs(run: Any) -> None:
    """Give a Run its upstreams' results before anything else (its run key chains theirs);
    a failed upstream ends it as ``failed-dependency``, not run."""
    if not run.experiment.needs or run.needs is not None:
        return
    try:
        run.needs = resolve(run.state, run.experiment, run.who)
    except RunFailed:
        run.status_override = "failed-dependency"
        raise
