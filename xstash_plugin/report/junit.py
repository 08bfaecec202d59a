"""JUnit XML that strict consumers accept, whichever ``junit_family`` writes it.

Each experiment carries its facts as ``user_properties`` (tool, experiment, config, run_dir,
exit_code, ``metric.<name>``, ``expect.<name>``, ...), which pytest's junitxml writes as
``<properties>`` inside the ``<testcase>``. The xunit1 (and legacy) schema allows that; the
xunit2 schema, pytest's default family, does not (it allows ``<properties>`` in a
``<testsuite>`` only), so such a file fails validation in strict consumers.

Under xunit2 this plugin moves each experiment's properties to the testsuite, named per test
(``<nodeid>::<name>``, e.g. ``configs/a.yaml::a::metric.acc``), through junitxml's own
``LogXML.add_global_property``, and takes them off the experiment's test reports before
junitxml sees them. It runs where junitxml writes the file: the only process, or the
pytest-xdist controller, which gets every worker's reports through
``pytest_runtest_logreport``. Under xunit1 and legacy nothing changes.

Nothing else in xstash reads ``user_properties`` from reports: the results table and report
files come from the ``xstash`` row each call report carries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.junitxml import xml_key

from xstash_plugin.config.registry import META_NAME
from xstash_plugin.session import get_state

EXPERIMENT_SUFFIXES = (".yaml", ".yml")  # as pytest_collect_file in plugin.py


def setup(config: pytest.Config) -> None:
    """Register :class:`SuiteProperties` where junitxml will write xunit2. Called from xstash's
    ``pytest_configure``, which runs before junitxml's: its ``LogXML`` is looked up later."""
    if hasattr(config, "workerinput"):
        return  # an xdist worker: its controller writes the file
    if not getattr(config.option, "xmlpath", None):
        return  # no --junitxml
    try:
        family = str(config.getini("junit_family"))
    except ValueError:
        return  # junitxml disabled (-p no:junitxml): no such ini setting
    if family == "xunit2":
        config.pluginmanager.register(SuiteProperties(config), "xstash-junit")


class SuiteProperties:
    """Under xunit2: experiments' testcase properties become testsuite properties."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.files: dict[str, bool] = {}  # nodeid's file part -> is it an experiment file

    def experiment_report(self, report: pytest.TestReport) -> bool:
        """Whether ``report`` is an experiment's. Only a call report carries the ``xstash``
        row, and under xdist the controller has no items to ask: a setup or teardown report
        is an experiment's when its file is one xstash collects."""
        if getattr(report, "xstash", None) is not None:
            return True
        part = report.nodeid.split("::", 1)[0]
        found = self.files.get(part)
        if found is None:
            found = self.files[part] = self._experiment_file(self.config.rootpath / part)
        return found

    def _experiment_file(self, path: Path) -> bool:
        if path.suffix not in EXPERIMENT_SUFFIXES or path.name == META_NAME:
            return False
        state = get_state(self.config)
        root = state.configs_root(path.parent)
        return root is not None and not state.fragment_folder(path.parent, root)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Before junitxml's: junitxml writes a testcase's properties from its teardown report
        (or, when the call failed and so did teardown, the call report)."""
        if not report.user_properties or not self.experiment_report(report):
            return
        properties = list(report.user_properties)
        report.user_properties = []
        xml = self.config.stash.get(xml_key, None)
        if xml is None or report.when != "teardown":
            return  # the teardown report has them all: what the run added too
        for name, value in properties:
            xml.add_global_property(f"{report.nodeid}::{name}", str(value))
