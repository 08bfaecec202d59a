"""pytest hooks only: options, ini settings, collection of experiment YAML files."""

from __future__ import annotations

import datetime
import signal
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin import masking
from xstash_plugin.config.compose import COMPOSE_HELP
from xstash_plugin.config.layout import is_fragment
from xstash_plugin.config.overrides import override_value
from xstash_plugin.config.registry import META_NAME
from xstash_plugin.config.sweeps import KEY_HELP, OVERRIDE_KEY
from xstash_plugin.config.yamlio import parse_yaml
from xstash_plugin.errors import XstashError
from xstash_plugin.history.options import addoption as history_addoption
from xstash_plugin.launchers.slots import addoption as slots_addoption
from xstash_plugin.launchers.slurm_batch import addoption as slurm_addoption
from xstash_plugin.masking import SECRET_ENV_HELP
from xstash_plugin.ordering import ORDER_HELP, ORDERS, load_durations, longest_first
from xstash_plugin.report.junit import setup as junit_setup
from xstash_plugin.report.progress import addoption as progress_addoption
from xstash_plugin.report.progress import setup as progress_setup
from xstash_plugin.report.results import Results
from xstash_plugin.run.items import (
    AggregateItem,
    ExperimentFile,
    ExperimentItem,
    aggregates_after_seeds,
)
from xstash_plugin.run.needs_run import add_upstreams, needed, upstreams_first
from xstash_plugin.run.record import RunRecord, row_of
from xstash_plugin.run.rerun import register as rerun_register
from xstash_plugin.run.slurm_plan import cancel_pending, submit_session
from xstash_plugin.run.stale import recover_crashed_run
from xstash_plugin.session import (
    OUTPUT_ROOT_HELP,
    REUSE_HELP,
    STATE_KEY,
    State,
    get_state,
    make_state,
)
from xstash_plugin.settings import WIRE_KEY as SETTINGS_WIRE_KEY
from xstash_plugin.settings import build as build_settings

NO_NEEDS_HELP = (
    "run only the selected experiments, not their deselected upstreams (xstash.needs): a "
    "dependent then uses its upstream's newest passed run"
)
OVERRIDE_HELP = (
    "a Hydra override applied to every selected experiment (repeatable), e.g. "
    "trainer.max_epochs=1; VALUE is read as YAML (1 is a number, abc or 'a,b' a string, "
    "[1,2] a list, null) and reaches the tool as exactly that value"
)
TIMEOUT_HELP = (
    "kill an experiment's whole process tree after DURATION ('90s', '30m', '2h') and fail it "
    "with status timeout; a config's own xstash.timeout wins over this"
)
GRACE_HELP = "time between SIGTERM and SIGKILL when a run is stopped (default 3s)"
REPORT_HELP = (
    "write the results (one row per experiment, one column per metric, the run directory) "
    "to PATH; the suffix chooses the format: .csv, .json, .md, .html (one self-contained "
    "page: a sortable, filterable table with links to each run, and a plot per sweep), or "
    ".tex (a booktabs table for a paper: mean ± CI over seeds, best value per column in "
    "bold); give it more than once for several files"
)
TABLE_DIGITS_HELP = "digits after the decimal point in a .tex report (default 3)"
TABLE_METRICS_HELP = (
    "comma-separated metrics a .tex report shows as columns (default: those with "
    "expectations, then the others, at most 4)"
)

SUFFIXES = (".yaml", ".yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xstash", "xstash: experiment YAML files as tests")
    group.addoption(
        "--xstash-output-root",
        dest="xstash_output_root",
        default=None,
        metavar="DIR",
        help=OUTPUT_ROOT_HELP,
    )
    _repeatable(group, "--xstash-report", "PATH", REPORT_HELP)
    group.addoption(
        "--xstash-table-digits", dest="xstash_table_digits", default=None, help=TABLE_DIGITS_HELP
    )
    parser.addini("xstash_table_digits", TABLE_DIGITS_HELP, default="")
    metrics = "--xstash-table-metrics"
    group.addoption(metrics, dest="xstash_table_metrics", metavar="NAMES", help=TABLE_METRICS_HELP)
    parser.addini("xstash_table_metrics", TABLE_METRICS_HELP, default="")
    _repeatable(group, "--xstash-override", "KEY=VALUE", OVERRIDE_HELP, "xstash_overrides")
    group.addoption(
        "--xstash-compose",
        dest="xstash_compose",
        nargs="?",
        const="on",
        default=None,
        choices=["on", "off"],
        metavar="on|off",
        help=COMPOSE_HELP,
    )
    group.addoption(
        "--xstash-timeout",
        dest="xstash_timeout",
        default=None,
        metavar="DURATION",
        help=TIMEOUT_HELP,
    )
    parser.addini("xstash_timeout", TIMEOUT_HELP, default="")
    _flag(
        group,
        "--xstash-detach",
        "submit SLURM experiments and exit at once (each reported as skipped: submitted, "
        "with its job id); a later pytest over the same configs attaches to those jobs",
    )
    group.addoption(
        "--xstash-launcher",
        dest="xstash_launcher",
        default=None,
        choices=["local", "slurm"],
        help="where experiments run when neither their config nor their tool says: local "
        "(default) or slurm (one SLURM job per experiment, through submitit)",
    )
    parser.addini("xstash_kill_grace", GRACE_HELP, default="")
    parser.addini("xstash_output_root", OUTPUT_ROOT_HELP, default="")
    parser.addini("xstash_compose", COMPOSE_HELP, default="")
    _flag(group, "--xstash-reuse", REUSE_HELP)
    _flag(group, "--xstash-no-needs", NO_NEEDS_HELP)
    parser.addini("xstash_reuse", REUSE_HELP, type="bool", default=False)
    progress_addoption(parser, group)
    history_addoption(parser, group)
    slots_addoption(parser)
    slurm_addoption(parser)
    group.addoption(
        "--xstash-order", dest="xstash_order", default=None, choices=ORDERS, help=ORDER_HELP
    )
    parser.addini("xstash_order", ORDER_HELP, default="longest")
    parser.addini("xstash_secret_env", SECRET_ENV_HELP, type="linelist", default=[])


def _repeatable(
    group: pytest.OptionGroup, name: str, metavar: str, help: str, dest: str = ""
) -> None:
    """An option that may be given more than once (its values in a list)."""
    dest = dest or name.lstrip("-").replace("-", "_")
    group.addoption(name, dest=dest, action="append", default=[], metavar=metavar, help=help)


def _flag(group: pytest.OptionGroup, name: str, help: str) -> None:
    """An on/off option ``--xstash-x`` (dest ``xstash_x``), off unless given."""
    dest = name.lstrip("-").replace("-", "_")
    group.addoption(name, dest=dest, action="store_true", default=False, help=help)


def pytest_configure(config: pytest.Config) -> None:
    settings = build_settings(config)  # every xstash option and ini value, once
    masking.configure(settings.secret_env)
    state = make_state(config, settings)
    config.stash[STATE_KEY] = state
    state.overrides = parse_cli_overrides(settings.overrides_raw)
    if threading.current_thread() is threading.main_thread():
        _install_signal_handlers(config, state)
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist) reports
        config.pluginmanager.register(Results(config, state), "xstash-results")
        junit_setup(config)  # under xunit2: experiments' properties on the testsuite
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(config), "xstash-xdist")
    progress_setup(config, state)  # live progress of running experiments
    rerun_register(config)  # -v: why each experiment ran again under --xstash-reuse
    if config.pluginmanager.hasplugin("html"):  # pytest-html: columns for experiments
        from xstash_plugin.report.columns import HtmlColumns

        config.pluginmanager.register(HtmlColumns(config), "xstash-html")


def _cli_value(text: str) -> Any:
    """A command-line VALUE read as YAML, except where YAML would lose what was typed."""
    if not text.strip():
        return text
    try:
        value = parse_yaml(text, Path("--xstash-override")).data
    except XstashError:
        return text  # not YAML: the text itself, as a string
    if value is None and text.strip() not in ("null", "~", "Null", "NULL"):
        return text  # '#ff0000' is a comment to YAML, a colour to the person typing it
    if isinstance(value, (datetime.date, datetime.datetime)):
        return text
    return value


def parse_cli_overrides(raw: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """``--xstash-override KEY=VALUE`` options as (key, YAML value) pairs; UsageError if bad."""
    pairs = []
    for item in raw:
        key, sep, text = item.partition("=")
        if not sep or not OVERRIDE_KEY.fullmatch(key):
            raise pytest.UsageError(
                f"--xstash-override {item!r}: write KEY=VALUE where KEY is {KEY_HELP}"
            )
        value = _cli_value(text)
        try:
            override_value(value)
        except ValueError as exc:
            raise pytest.UsageError(f"--xstash-override {item!r}: {exc}") from None
        pairs.append((key, value))
    return tuple(pairs)


class XdistHooks:
    """Registered only when pytest-xdist is active, so xstash never imports it."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl
    def pytest_configure_node(self, node: object) -> None:
        config: pytest.Config = node.config  # type: ignore[attr-defined]
        state = get_state(config)
        node.workerinput["xstash_session_id"] = state.session_id  # type: ignore[attr-defined]
        node.workerinput[SETTINGS_WIRE_KEY] = state.settings.to_wire()  # type: ignore[attr-defined]

    @pytest.hookimpl
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """With ``--dist load`` (what ``-n`` means), deal the experiments out one by one (the
        longest first go to different workers, not xdist's consecutive first chunks), and
        hold each seeded point's aggregate back until its seeds are done."""
        if config.getoption("dist", "no") != "load":
            return None
        from xstash_plugin.scheduling import LongestFirstScheduling

        return LongestFirstScheduling(config, log)

    @pytest.hookimpl
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport) -> None:
        """A worker died (killed, OOM, segfault) while running ``crashitem``: its run record
        still says 'running' and its tool, in a process group of its own, lives on. Say what
        happened in the record and the results, and stop the tool."""
        state = get_state(self.config)
        worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", "?")
        reason = f"pytest-xdist worker {worker} died while running this experiment; its tool "
        reason += "was killed with it"
        for run_dir in recover_crashed_run(state.output_root, crashitem, state.session_id, reason):
            try:
                record = RunRecord.load(run_dir)
            except (OSError, ValueError):
                continue
            row = row_of(record, run_dir, id=crashitem, status="error")
            state.rows.append(row)
            state.session_results.put(crashitem, row)  # a seed's aggregate sees how it ended


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ExperimentFile | None:
    if file_path.suffix not in SUFFIXES or file_path.name == META_NAME:
        return None
    state = get_state(parent.config)
    folder = file_path.parent
    root = state.configs_root(folder)
    if root is None:
        return None  # YAML outside any configs root is not an experiment
    if is_fragment(file_path.name) or state.fragment_folder(folder, root):
        return None  # shared Hydra fragments
    file: ExperimentFile = ExperimentFile.from_parent(parent, path=file_path, configs_root=root)
    return file


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    compose = get_state(config).compose
    if compose is None or config.get_verbosity() < 0:
        return None  # -q: the list of tests alone
    return compose.summary()


def _install_signal_handlers(config: pytest.Config, state: State) -> None:
    # SIGTERM (a scheduler, `kill`, a CI timeout) stops runs like Ctrl-C does: records say
    # 'interrupted' and tools' process trees are killed, instead of pytest vanishing.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
        state.sigterm_installed = True
    # An xdist worker is stopped by its controller through execnet, which interrupts the
    # worker's main thread as a SIGINT would: a no-op when SIGINT is ignored, as it is in every
    # process started as a background job of a script (`pytest -n 2 ... &`). The worker would
    # then go on waiting for its tool until execnet kills it 10 s later, leaving the tool's
    # process tree running and its record 'running'. Workers take no signal from a terminal,
    # so they always get Python's own SIGINT handler back.
    if hasattr(config, "workerinput") and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is not None and state.sigterm_installed:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if state is not None and state.compose is not None:
        state.compose.close()
    if state is not None:
        state.preload.close()
        state.watchdog.close()
        if not hasattr(config, "workerinput"):
            state.session_results.clear()  # the seeds' results were for their aggregates


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if isinstance(item, (ExperimentItem, AggregateItem)):
        # Everything reported about an experiment goes through here (terminal, JUnit, xdist,
        # report files): the session's secret values are masked once, in one place.
        report.sections = [(title, masking.mask(text)) for title, text in report.sections]
        report.user_properties = [(k, masking.mask_data(v)) for k, v in report.user_properties]
        if isinstance(report.longrepr, str):
            report.longrepr = masking.mask(report.longrepr)
        if report.when == "call":
            # A plain attribute of the report: pytest-xdist carries it to the controller.
            row = masking.mask_data(dict(item.result_row))
            report.xstash = row  # type: ignore[attr-defined]
            state = get_state(item.config)
            if isinstance(item, ExperimentItem) and (
                item.group is not None or item.nodeid in state.needed
            ):
                state.session_results.put(item.nodeid, row)  # for its aggregate, its dependents
    return report


def _order(config: pytest.Config) -> str:
    return get_state(config).settings.order


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = get_state(config)
    if state.deselected and not state.settings.no_needs:  # -k picked a downstream: its needs too
        items.extend(add_upstreams(state, items, state.deselected))
    # Identical on every xdist worker: lets the controller show results in collection order.
    ours = [item for item in items if isinstance(item, (ExperimentItem, AggregateItem))]
    for index, node in enumerate(ours):
        node.set_order(index)
    slots = [i for i, item in enumerate(items) if isinstance(item, ExperimentItem)]
    experiments = [items[i] for i in slots]
    if _order(config) != "file" and len(experiments) > 1:
        learned: dict[str, float] | None = None
        estimates: list[float | None] = []
        for item in experiments:
            assert isinstance(item, ExperimentItem)
            estimate = item.experiment.estimated_seconds
            if estimate is None:
                if learned is None:  # read once, and only when some config gives no estimate
                    learned = load_durations(get_state(config).output_root)
                estimate = learned.get(item.nodeid)
            estimates.append(estimate)
        # Other tests keep their places; experiments are reordered among their own.
        for slot, item in zip(slots, longest_first(experiments, estimates), strict=True):
            items[slot] = item
    if any(isinstance(item, AggregateItem) for item in items):
        items[:] = aggregates_after_seeds(items)
    if any(isinstance(item, ExperimentItem) and item.experiment.needs for item in items):
        items[:] = upstreams_first(state, items)
        state.needed = needed(state, items)


def pytest_deselected(items: Sequence[pytest.Item]) -> None:
    """Remembered: a selected experiment's deselected upstreams run anyway (run/needs_run.py)."""
    if items:
        get_state(items[0].config).deselected.extend(items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Submit every SLURM experiment of the session before the first test waits, as job arrays
    and packed allocations (run/slurm_plan.py), so N experiments are in flight even without
    -n. Not under xdist: there each worker runs an unknown share of the items, so each submits
    its own as it reaches them."""
    config = session.config
    if (
        hasattr(config, "workerinput")
        or getattr(config.option, "dist", "no") != "no"
        or config.option.collectonly
    ):
        return
    runs = [
        item.begin_submission()
        for item in session.items
        if isinstance(item, ExperimentItem)
        and item.launcher() == "slurm"
        and not item.experiment.needs  # submitted once its upstreams have results
    ]
    if runs:
        submit_session(get_state(config), runs, load_durations(get_state(config).output_root))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # -x, Ctrl-C or a crash ended the session early: jobs nobody waits for are cancelled, with
    # one scancel for all of them.
    runs = [
        item.run
        for item in getattr(session, "items", [])
        if isinstance(item, ExperimentItem) and item.run is not None
    ]
    cancel_pending(runs)


def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, Any] | None:
    row = getattr(report, "xstash", None)
    if report.when == "call" and report.passed and row and row.get("reused_from"):
        return "passed", "r", ("PASSED (reused)", {"green": True})
    return None


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` with GPUs: one worker per GPU (launchers/inventory.py); else xdist's count."""
    from xstash_plugin.launchers.slots import auto_workers

    return auto_workers(config)
