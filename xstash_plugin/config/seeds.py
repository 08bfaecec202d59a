"""Seeds: one experiment (or sweep point) repeated over several seeds, judged as one result.

``xstash.seeds: 5`` (seeds 0..4) or ``xstash.seeds: [0, 1, 2, 17, 42]`` runs every point once
per seed, the seed passed to the tool as the Hydra override ``<seed_key>=<seed>`` (``seed_key``
defaults to ``seed``; a dotted key or ``+key`` like a sweep key). Each seed is its own test
item, id ``name[<point>-seed=3]``; each point also gets one aggregate item, id
``name::mean[<point>]`` (``name::mean`` without a sweep), that judges the statistics over the
seeds (:mod:`xstash_plugin.run.stats`): ``xstash.ci: t`` (Student t, the default) or
``bootstrap`` chooses how the confidence interval is computed.

``xstash.direction: {loss: min, accuracy: max}`` says which way a metric is better, for the
best value a LaTeX table marks; without it, an expectation's comparison (``>=`` is "higher is
better") says it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xstash_plugin.config.expectations import Expectation
from xstash_plugin.config.sweeps import KEY_HELP, OVERRIDE_KEY, Point, point_labels
from xstash_plugin.config.text import quote
from xstash_plugin.config.yamlio import YamlDoc
from xstash_plugin.errors import ConfigError
from xstash_plugin.run.stats import CI_METHODS

SEEDS_HELP = "write seeds: 5 (seeds 0 to 4) or seeds: [0, 1, 2, 17, 42], at least two seeds"
MAX_SEEDS = 1000
AGGREGATE_NAME = "mean"  # the aggregate items: `lr_sweep::mean[lr=0.1]`
DIRECTIONS = ("max", "min")


@dataclass(frozen=True)
class Seeding:
    """The seeds of an experiment and how their results are summarized."""

    seeds: tuple[int, ...]
    key: str = "seed"
    ci: str = "t"
    groups: tuple[Point, ...] = ((),)  # the points each seed runs at (the sweep's, or one)

    def points(self) -> tuple[Point, ...]:
        """Every run: each point with each seed (point-major, so a point's seeds are adjacent)."""
        return tuple((*group, (self.key, seed)) for group in self.groups for seed in self.seeds)

    def labels(self) -> tuple[list[str], list[str]]:
        """(the groups' labels, every seed run's label), in :meth:`points` order. A seed run's
        label is its group's label, ``-``, and ``<key>=<seed>``: the seed part is never
        shortened, so a seed run's id always names its group's (the xdist scheduler relies on
        it, see :func:`xstash_plugin.scheduling.aggregate_dependencies`)."""
        groups = point_labels(list(self.groups)) if self.groups != ((),) else [""]
        runs = [
            f"{group}-{self.key}={seed}" if group else f"{self.key}={seed}"
            for group in groups
            for seed in self.seeds
        ]
        return groups, runs


def _seed_list(doc: YamlDoc, raw: Any, errors: list[ConfigError]) -> tuple[int, ...]:
    line = doc.line("xstash", "seeds")
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 2 <= raw <= MAX_SEEDS:
            errors.append(
                ConfigError(
                    doc.path, line, f"xstash.seeds: {raw} seeds (give 2 to {MAX_SEEDS})", SEEDS_HELP
                )
            )
            return ()
        return tuple(range(raw))
    if not isinstance(raw, list):
        errors.append(
            ConfigError(
                doc.path,
                line,
                f"xstash.seeds must be a count or a list of integers, not {quote(raw)}",
                SEEDS_HELP,
            )
        )
        return ()
    seeds: list[int] = []
    for index, seed in enumerate(raw):
        where = doc.line("xstash", "seeds", str(index))
        if not isinstance(seed, int) or isinstance(seed, bool):
            errors.append(
                ConfigError(doc.path, where, f"seed {quote(seed)} is not an integer", SEEDS_HELP)
            )
        elif seed in seeds:
            errors.append(
                ConfigError(
                    doc.path,
                    where,
                    f"seed {seed} is listed twice",
                    "list each seed once: two runs with one seed are the same run",
                )
            )
        else:
            seeds.append(seed)
    if len(raw) < 2 and not errors:
        what = "empty" if not raw else "a single seed"
        errors.append(
            ConfigError(doc.path, line, f"xstash.seeds is {what}: statistics need two", SEEDS_HELP)
        )
    if len(raw) > MAX_SEEDS:
        errors.append(
            ConfigError(doc.path, line, f"xstash.seeds lists {len(raw)} seeds", SEEDS_HELP)
        )
    return tuple(seeds)


def _seed_key(
    doc: YamlDoc, raw: Any, points: tuple[Point, ...], given: bool, errors: list[ConfigError]
) -> str:
    line = doc.line("xstash", "seed_key")
    if not isinstance(raw, str) or not OVERRIDE_KEY.fullmatch(raw):
        errors.append(
            ConfigError(
                doc.path, line, f"xstash.seed_key {quote(raw)} is not an override key", KEY_HELP
            )
        )
        return "seed"
    bare = raw.lstrip("+")
    swept = {key.lstrip("+") for point in points for key, _ in point}
    if bare in swept:
        errors.append(
            ConfigError(
                doc.path,
                line if given else doc.line("xstash", "sweep"),
                f"the seed key '{bare}' is also swept in xstash.sweep",
                "sweep other keys and let xstash.seeds set the seed, or name the tool's seed "
                "key in xstash.seed_key",
            )
        )
    return raw


def _choice(
    doc: YamlDoc,
    block: dict[str, Any],
    key: str,
    allowed: tuple[str, ...],
    errors: list[ConfigError],
) -> str | None:
    if key not in block:
        return None
    value = block[key]
    if value not in allowed:
        errors.append(
            ConfigError(
                doc.path,
                doc.line("xstash", key),
                f"xstash.{key} is {quote(value)}",
                "write one of: " + ", ".join(allowed),
            )
        )
        return None
    return str(value)


def check_seeding(
    doc: YamlDoc,
    block: Any,
    points: tuple[Point, ...],
    expectations: tuple[Expectation, ...],
    errors: list[ConfigError],
) -> Seeding | None:
    """``xstash.seeds``, ``seed_key`` and ``ci``: None when the experiment has no seeds."""
    if not isinstance(block, dict):
        return None
    ci = _choice(doc, block, "ci", CI_METHODS, errors)
    if "seeds" not in block:
        errors.extend(
            ConfigError(
                doc.path,
                doc.line("xstash", key),
                f"xstash.{key} is set but the experiment has no xstash.seeds",
                f"add xstash.seeds ({SEEDS_HELP}), or remove xstash.{key}",
            )
            for key in ("seed_key", "ci")
            if key in block
        )
        for exp in expectations:
            if exp.statistic is not None:
                errors.append(
                    ConfigError(
                        doc.path,
                        doc.line("xstash", "expect", exp.metric, exp.statistic),
                        f"expectation for '{exp.metric}' is on the statistic '{exp.statistic}' "
                        "over seeds, but the experiment has no xstash.seeds",
                        f"add xstash.seeds ({SEEDS_HELP}), or expect the metric itself",
                    )
                )
        return None
    seeds = _seed_list(doc, block["seeds"], errors)
    key = _seed_key(doc, block.get("seed_key", "seed"), points, "seed_key" in block, errors)
    return Seeding(seeds=seeds, key=key, ci=ci or "t", groups=points or ((),))


def _per_metric(
    doc: YamlDoc,
    block: Any,
    key: str,
    valid: tuple[Callable[[Any], bool], str],
    fix: str,
    errors: list[ConfigError],
) -> list[tuple[str, Any]]:
    """``xstash.<key>``: a mapping of metric name to a value ``valid[0]`` accepts (``valid[1]``
    says what it must be); every bad entry is an error."""
    if not isinstance(block, dict) or key not in block:
        return []
    raw = block[key]
    if not isinstance(raw, dict) or not raw:
        where = doc.line("xstash", key)
        errors.append(ConfigError(doc.path, where, f"xstash.{key} must be a mapping", fix))
        return []
    found = []
    for metric, value in raw.items():
        if valid[0](value):
            found.append((str(metric), value))
            continue
        where = doc.line("xstash", key, str(metric))
        what = f"{key} of '{metric}' is {quote(value)}, not {valid[1]}"
        errors.append(ConfigError(doc.path, where, what, fix))
    return found


def check_direction(
    doc: YamlDoc, block: Any, errors: list[ConfigError]
) -> tuple[tuple[str, str], ...]:
    """``xstash.direction``: metric -> 'max' or 'min' (which way is better)."""
    fix = "write direction: {accuracy: max, loss: min} (max: higher is better)"
    valid = (lambda value: value in DIRECTIONS, "max or min")
    found = _per_metric(doc, block, "direction", valid, fix, errors)
    return tuple((metric, str(value)) for metric, value in found)


def directions(
    expectations: tuple[Expectation, ...], explicit: tuple[tuple[str, str], ...]
) -> dict[str, str]:
    """Which way each metric is better: ``xstash.direction``, else the expectation's comparison
    (``>=``/``>``: max, ``<=``/``<``: min)."""
    found: dict[str, str] = {}
    for exp in expectations:
        if exp.kind == "cmp" and exp.op in (">=", ">"):
            found.setdefault(exp.metric, "max")
        elif exp.kind == "cmp" and exp.op in ("<=", "<"):
            found.setdefault(exp.metric, "min")
    found.update(explicit)
    return found


def _non_negative(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def check_min_effect(
    doc: YamlDoc, block: Any, errors: list[ConfigError]
) -> tuple[tuple[str, float], ...]:
    """``xstash.min_effect``: metric -> the smallest change a baseline comparison counts."""
    fix = "write min_effect: {accuracy: 0.005} (a non-negative number per metric)"
    valid = (_non_negative, "a non-negative number")
    found = _per_metric(doc, block, "min_effect", valid, fix, errors)
    return tuple((metric, float(value)) for metric, value in found)
