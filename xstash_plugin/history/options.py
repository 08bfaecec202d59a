"""The command-line options and ini values of the results history (read once, in settings.py)."""

from __future__ import annotations

import pytest

HISTORY_HELP = (
    "the SQLite file every session's results are recorded in (default "
    "<output root>/.xstash/history.sqlite); point several repositories' sessions at one file "
    "to share it"
)
BASELINE_HELP = (
    "compare every metric with a baseline and fail a test whose metric regressed beyond the "
    "noise: REF is a git revision (the results recorded at that commit), 'last' (the previous "
    "session on this branch) or a .json results file"
)
BASELINE_WARN_HELP = "with --xstash-baseline: a regression is a warning, not a failure"
ALPHA_HELP = "significance level of the baseline comparison's Welch test (default 0.05)"
TOL_HELP = (
    "relative tolerance for metrics compared without repeats (a single run against a single "
    "run; default 0: any change in the worse direction is a regression)"
)
MLFLOW_HELP = (
    "also log every finished run to this MLflow tracking server (needs pip install "
    "'xstash[mlflow]'); an unreachable server is a warning"
)


def addoption(parser: pytest.Parser, group: pytest.OptionGroup) -> None:
    group.addoption("--xstash-history", dest="xstash_history", metavar="PATH", help=HISTORY_HELP)
    parser.addini("xstash_history", HISTORY_HELP, default="")
    group.addoption("--xstash-baseline", dest="xstash_baseline", metavar="REF", help=BASELINE_HELP)
    flag = "--xstash-baseline-warn"
    group.addoption(flag, dest="xstash_baseline_warn", action="store_true", help=BASELINE_WARN_HELP)
    parser.addini("xstash_alpha", ALPHA_HELP, default="")
    parser.addini("xstash_baseline_tol", TOL_HELP, default="")
    group.addoption("--xstash-mlflow", dest="xstash_mlflow", metavar="URI", help=MLFLOW_HELP)
