"""The aggregate of a seeded point: its seeds' results as one judged result.

A point of an experiment with ``xstash.seeds`` runs once per seed, each run its own test. Its
aggregate item (``name::mean[point]``) gathers those results and computes, per numeric metric,
n, mean, sample std, standard error, a confidence interval (:mod:`xstash_plugin.run.stats`),
min and max, then judges the expectations: one on a statistic (``accuracy: {ci_low: '>= 0.85'}``)
on that statistic, a plain one (``accuracy: '>= 0.9'``, also judged on every seed) on the mean.

Nothing is averaged in silently. A seed that did not pass fails the aggregate (with which seed
and how it ended). A seed with no result (not selected in this session, and no passed run with
the same run key to stand in for it; or its worker died before it reported) makes the aggregate
*incomplete*: it is skipped, saying which seeds are missing and why. A seed that was not
selected (``-k``, ``--lf``) but has a passed run with the same run key is counted, and the row
says it came from that earlier run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from xstash_plugin.config.expectations import Expectation
from xstash_plugin.config.seeds import Seeding
from xstash_plugin.report.rows import PASSING, flatten, fmt, is_number
from xstash_plugin.run.judge import Verdict, verdict_table
from xstash_plugin.run.stats import CONFIDENCE, summarize

REPORTED_STATISTICS = ("mean", "ci_low", "ci_high", "n", "std")  # JUnit: stat.<metric>.<name>


@dataclass(frozen=True)
class SeedResult:
    """One seed's result: its row (this session's, or an earlier passed run's), or why none."""

    seed: int
    nodeid: str
    row: dict[str, Any] | None
    earlier: str | None = None  # the run directory of the earlier run that stands in
    missing: str | None = None  # why there is no result

    @property
    def passed(self) -> bool:
        return self.row is not None and self.row.get("status") in PASSING

    @property
    def pending(self) -> bool:
        """Submitted as a SLURM job (``--xstash-detach``) that has not finished."""
        return self.row is not None and self.row.get("status") == "submitted"

    def describe(self) -> str:
        """``seed 3 failed (exit code 1)``, ``seed 4: not selected in this session ...``."""
        if self.row is None:
            return f"seed {self.seed}: {self.missing or 'no result'}"
        if self.pending:
            return f"seed {self.seed}: submitted, not finished (run again to collect it)"
        status, code = self.row.get("status"), self.row.get("exit_code")
        how = f" (exit code {code})" if code not in (None, 0) else ""
        return f"seed {self.seed} {status}{how}: see {self.nodeid.rsplit('::', 1)[-1]}"


@dataclass
class Aggregate:
    """The outcome: ``status`` is 'passed', 'failed' or 'incomplete'; ``message`` says why it
    did not pass."""

    row: dict[str, Any]
    status: str
    message: str | None = None
    verdicts: list[Verdict] = field(default_factory=list)


def samples(results: list[SeedResult]) -> dict[str, list[float]]:
    """Each numeric metric's values over the seeds that passed, in seed order."""
    found: dict[str, list[float]] = {}
    for result in results:
        if not result.passed or result.row is None:
            continue
        for name, value in flatten(result.row.get("metrics") or {}).items():
            if is_number(value):
                found.setdefault(name, []).append(float(value))
    return found


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """``{'a.b': 1}`` -> ``{'a': {'b': 1}}`` (the means, shaped like the tools' metrics)."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        node = nested
        *parents, leaf = name.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # 'a' and 'a.b' both given: keep the flat name
                node = nested
                leaf = name
                break
            node = child
        node[leaf] = value
    return nested


def judge_statistics(
    expectations: tuple[Expectation, ...], stats: dict[str, dict[str, Any]]
) -> list[Verdict]:
    """Every expectation, on its statistic (a plain one on the mean)."""
    verdicts = []
    for exp in expectations:
        statistic = exp.statistic or "mean"
        if exp.metric not in stats:
            verdict = Verdict.of(exp, None, False, "missing in every seed that passed")
        else:
            value = stats[exp.metric].get(statistic)
            if value is None:
                verdict = Verdict.of(exp, None, False, f"{statistic} needs two or more seeds")
            else:
                ok = exp.holds(float(value)) if math.isfinite(float(value)) else False
                verdict = Verdict.of(exp, value, ok)
        verdicts.append(dataclasses.replace(verdict, statistic=statistic))
    return verdicts


def aggregate(
    base: dict[str, Any],
    seeding: Seeding,
    expectations: tuple[Expectation, ...],
    results: list[SeedResult],
) -> Aggregate:
    """The aggregate row of ``base`` (the item's identity) over ``results``, judged."""
    values = samples(results)
    stats = {
        name: summarize(series, seeding.ci, CONFIDENCE).as_dict() for name, series in values.items()
    }
    passed = [r for r in results if r.passed]
    row = {
        **base,
        "kind": "aggregate",
        "seed_key": seeding.key.lstrip("+"),
        "seeds": list(seeding.seeds),
        "n": len(passed),
        "ci_method": seeding.ci,
        "confidence": CONFIDENCE,
        "stats": stats,
        "metrics": unflatten({name: s["mean"] for name, s in stats.items()}),
        "seed_runs": [
            {
                "seed": r.seed,
                "id": r.nodeid,
                "status": r.row.get("status") if r.row is not None else "missing",
                "from": r.earlier,
            }
            for r in results
        ],
        "incomplete": None,
    }
    failed = [r for r in results if r.row is not None and not r.passed and not r.pending]
    missing = [r for r in results if r.row is None or r.pending]
    who = f"{base['id'].split('::', 1)[-1]}"
    if failed:
        row["status"] = "failed"
        lines = [
            f"{who}: {len(failed)} of {len(results)} seeds did not pass, so the seeds are "
            f"not judged as one result (statistics over the {len(passed)} that passed are "
            "in the reports, marked with their n):"
        ]
        lines += [f"  {r.describe()}" for r in failed + missing]
        return Aggregate(row, "failed", "\n".join(lines))
    if missing:
        text = f"{len(missing)} of {len(results)} seeds have no result: " + "; ".join(
            r.describe() for r in missing
        )
        row["status"] = "incomplete"
        row["incomplete"] = text
        return Aggregate(row, "incomplete", f"{who}: incomplete, {text}")
    verdicts = judge_statistics(expectations, stats)
    row["verdicts"] = [v.as_dict() for v in verdicts]
    if all(v.ok for v in verdicts):
        row["status"] = "passed"
        return Aggregate(row, "passed", None, verdicts)
    row["status"] = "failed"
    failing = sum(not v.ok for v in verdicts)
    message = (
        f"{who}: {failing} of {len(verdicts)} expectation(s) on the statistics over "
        f"{len(passed)} seeds failed ({seeding.ci} {CONFIDENCE:.0%} interval):\n"
        + verdict_table(verdicts)
    )
    return Aggregate(row, "failed", message, verdicts)


def properties(row: dict[str, Any]) -> list[tuple[str, str]]:
    """The aggregate's JUnit properties: ``stat.<metric>.<statistic>`` and its verdicts."""
    found = [("n", str(row.get("n"))), ("seeds", ",".join(map(str, row.get("seeds") or [])))]
    for metric, stats in (row.get("stats") or {}).items():
        for name in REPORTED_STATISTICS:
            if stats.get(name) is not None:
                found.append((f"stat.{metric}.{name}", fmt(stats[name])))
    for verdict in row.get("verdicts") or []:
        word = (
            "ok"
            if verdict.get("ok")
            else f"FAIL ({verdict.get('note')})"
            if verdict.get("note")
            else "FAIL"
        )
        shown = "-" if verdict.get("measured") is None else fmt(verdict["measured"])
        name = f"{verdict['metric']}.{verdict.get('statistic', 'mean')}"
        found.append((f"expect.{name}", f"{word}: {shown} vs {verdict['expected']}"))
    if row.get("incomplete"):
        found.append(("incomplete", str(row["incomplete"])))
    return found
