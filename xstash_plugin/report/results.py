"""The session's results, at its end: the terminal table, the ``--xstash-report`` files, the
results history (``history.sqlite``) and, if asked, MLflow. Registered on the controller only
(or the one process without xdist)."""

from __future__ import annotations

from typing import Any

import pytest

from xstash_plugin.fsutil import atomic_write
from xstash_plugin.history.recorder import log_to_mlflow, record_history
from xstash_plugin.ordering import save_durations
from xstash_plugin.report.files import render
from xstash_plugin.report.history_section import history_section
from xstash_plugin.report.rows import TERMINAL_METRICS, fold, slow_warnings, table_rows, text_table
from xstash_plugin.run.regression import baseline_of
from xstash_plugin.session import State


class Results:
    """Gathers every experiment's result row (from local or xdist workers' reports) and
    reports them at the end."""

    def __init__(self, config: pytest.Config, state: State) -> None:
        self.config = config
        self.state = state
        self.notes: list[str] = []  # warnings for the terminal summary

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row: dict[str, Any] | None = getattr(report, "xstash", None)
        if row is not None and report.when == "call":
            self.state.rows.append(row)

    def sorted_rows(self) -> list[dict[str, Any]]:
        return fold(sorted(self.state.rows, key=lambda r: (r.get("order", 0), str(r["id"]))))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        rows = self.sorted_rows()
        if not rows and not self.notes:
            return
        terminalreporter.section("xstash results")
        header, body = table_rows(rows, limit=TERMINAL_METRICS)
        for line in text_table(header, body) if rows else []:
            terminalreporter.write_line(line)
        reused = [row for row in rows if row.get("reused_from")]
        if reused:
            terminalreporter.write_line(
                f"{len(reused)} of {len(rows)} experiment(s) reused a passed run with the same "
                "run key (--xstash-reuse): not run again, metrics re-checked"
            )
        for line in [*slow_warnings(rows), *self.notes]:
            terminalreporter.write_line(f"warning: {line}", yellow=True)
        for path in self.state.settings.reports:
            terminalreporter.write_line(f"results written to {path}")

    def pytest_sessionfinish(self) -> None:
        """Before the terminal summary (pytest's terminal reporter prints it after every
        plain ``pytest_sessionfinish``): what goes wrong here is told there."""
        state, settings = self.state, self.state.settings
        save_durations(state.output_root, state.rows)
        rows = self.sorted_rows()
        if not self.config.option.collectonly:
            self.notes += record_history(self.config, state, rows)
            self.notes += log_to_mlflow(state, rows)
        history = None
        if any(path.suffix in (".html", ".htm") for path in settings.reports):
            baseline = baseline_of(self.config, state)
            commit = baseline.commit if baseline is not None else None
            history = history_section(settings.history, rows, commit)
        for path in settings.reports:
            path.parent.mkdir(parents=True, exist_ok=True)
            text = render(path, rows, settings.table_digits, settings.table_metrics, history)
            atomic_write(path, text)
