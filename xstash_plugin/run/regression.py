"""A run's metrics (or a seeded point's, over its seeds) against ``--xstash-baseline``.

Compared after the run passed its own expectations (history/compare.py says how). A metric
that regressed beyond the noise fails the test with a table: baseline against now, the
difference, its confidence interval, the p-value, and which results the baseline is; with
``--xstash-baseline-warn`` it is a warning instead. The comparisons go into the run's record
(``baseline``) and its result row either way.
"""

from __future__ import annotations

from typing import Any

import pytest

from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.seeds import directions
from xstash_plugin.errors import XstashWarning
from xstash_plugin.history.baseline import Baseline, load_baseline
from xstash_plugin.history.compare import compare, comparison_table
from xstash_plugin.report.rows import flatten, is_number, text_table
from xstash_plugin.session import State, get_state


def baseline_of(config: pytest.Config, state: State) -> Baseline | None:
    """This process's baseline, resolved once (None without --xstash-baseline)."""
    ref = state.settings.baseline
    if ref is None:
        return None
    if state.baseline is None:
        state.baseline = load_baseline(
            ref,
            state.settings.history,
            config.rootpath,
            state.session_id,
            config.invocation_params.dir,
        )
    return state.baseline


def numeric(metrics: dict[str, Any] | None) -> dict[str, list[float]]:
    """A run's metrics as the comparison takes them: flattened, numbers only, one value each."""
    return {k: [float(v)] for k, v in flatten(metrics or {}).items() if is_number(v)}


def check(
    item: pytest.Item,
    experiment: Experiment,
    config_path: str,
    point: dict[str, Any],
    metrics: dict[str, list[float]],
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The comparisons as data (None: no baseline asked for, or none to compare with), and the
    failure text when a metric regressed (None with --xstash-baseline-warn: then a warning)."""
    state = get_state(item.config)
    baseline = baseline_of(item.config, state)
    if baseline is None:
        return None, None
    if baseline.problem is not None:
        if baseline.problem not in state.reported:
            state.reported.add(baseline.problem)
            item.warn(XstashWarning(f"--xstash-baseline: {baseline.problem}"))
        return None, None
    settings = state.settings
    found = compare(
        metrics,
        baseline.of(config_path, point) or {},
        directions(experiment.expectations, experiment.direction),
        settings.alpha,
        dict(experiment.min_effect),
        settings.baseline_tol,
    )
    regressed = [c for c in found if c.outcome == "regressed"]
    failure = None
    if regressed:
        commit = baseline.commit
        where = f" (commit {commit[:10]})" if commit and commit[:7] not in baseline.label else ""
        message = (
            f"{item.nodeid.split('::', 1)[-1]}: {len(regressed)} metric(s) regressed against "
            f"the baseline {baseline.label}{where}:\n"
            + "\n".join(text_table(*_split(comparison_table(found))))
            + "\nfix: if the change is intended, this session's results become the new "
            "baseline once they are on the baseline's branch; to look without failing, add "
            "--xstash-baseline-warn"
        )
        if settings.baseline_warn:
            item.warn(XstashWarning(message))
        else:
            failure = message
    return [c.as_dict() for c in found], failure


def _split(rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    return rows[0], rows[1:]
