"""``xstash history``: the results history from the command line.

    xstash history EXPERIMENT [--metric NAME] [--commits N] [--history FILE]
    xstash history import OUTPUT_ROOT [--history FILE]

The first prints each metric of the experiment (per config and sweep point) over the last N
commits, oldest first, with the steps beyond noise flagged and the commit that introduced each
(see changepoints.py). The second back-fills the store from existing run directories.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from xstash_plugin.history.changepoints import steps
from xstash_plugin.history.store import HistoryError, HistoryStore, SeriesPoint, import_outputs
from xstash_plugin.report.rows import text_table

DEFAULT_HISTORY = Path("outputs") / ".xstash" / "history.sqlite"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xstash", description="xstash's results history")
    commands = parser.add_subparsers(dest="command", required=True)
    history = commands.add_parser(
        "history",
        help="a metric over commits, or 'import OUTPUT_ROOT' to back-fill the store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    history.add_argument("experiment", help="an experiment's name, or 'import'")
    history.add_argument("root", nargs="?", help="with 'import': the output root to read")
    history.add_argument("--metric", help="only this metric (a dotted name)")
    history.add_argument("--commits", type=int, default=30, help="how many commits (default 30)")
    history.add_argument(
        "--history",
        type=Path,
        default=DEFAULT_HISTORY,
        help=f"the store (default {DEFAULT_HISTORY}, where pytest writes it by default)",
    )
    return parser


def _label(point: SeriesPoint) -> str:
    inner = ",".join(f"{k}={v}" for k, v in point.point.items())
    return f"{point.config}" + (f" [{inner}]" if inner else "") + f"  {point.metric}"


def series_lines(found: Sequence[SeriesPoint]) -> list[str]:
    """One table per (config, point, metric): a row per commit, steps flagged."""
    groups: dict[str, list[SeriesPoint]] = {}
    for point in found:
        groups.setdefault(_label(point), []).append(point)
    lines: list[str] = []
    for label, points in groups.items():
        points.sort(key=lambda p: p.ended)
        means = [statistics.fmean(p.values) for p in points]
        found_steps = {step.index: step for step in steps(means)}
        body = []
        for index, (point, mean) in enumerate(zip(points, means, strict=True)):
            when = datetime.datetime.fromtimestamp(point.ended).strftime("%Y-%m-%d %H:%M")
            value = f"{mean:.6g}" + (f" (n={len(point.values)})" if len(point.values) > 1 else "")
            step = found_steps.get(index)
            note = (
                f"<- step {step.before:.4g} -> {step.after:.4g}, introduced here"
                if step is not None
                else ""
            )
            body.append([(point.commit or "-")[:10], when, value, note])
        lines += ["", label, *text_table(["commit", "session end", "value", ""], body)]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        store = HistoryStore(args.history)
        try:
            if args.experiment == "import":
                if not args.root:
                    print("xstash history import: give the output root to read", file=sys.stderr)
                    return 2
                count = import_outputs(store, Path(args.root))
                print(f"imported {count} run(s) from {args.root} into {args.history}")
                return 0
            found = store.series(args.experiment, args.metric, args.commits)
        finally:
            store.close()
    except HistoryError as exc:
        print(f"xstash history: {exc}", file=sys.stderr)
        return 1
    if not found:
        what = f" metric '{args.metric}' of" if args.metric else ""
        print(f"no results of{what} experiment '{args.experiment}' in {args.history}")
        return 1
    commits = len({p.commit for p in found})
    print(f"experiment '{args.experiment}': {commits} commit(s) in {args.history}")
    print("\n".join(series_lines(found)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
