"""Per-session state, resolved once in ``pytest_configure`` and kept in ``config.stash``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin.config.compose import ComposeService
from xstash_plugin.config.experiment import Experiment, load_experiment
from xstash_plugin.config.layout import in_fragment
from xstash_plugin.config.overrides import overrides_for
from xstash_plugin.config.registry import META_NAME, Registry, load_registry
from xstash_plugin.config.sweeps import Point
from xstash_plugin.errors import ConfigError, ConfigErrors, XstashError
from xstash_plugin.fsutil import xstash_dir
from xstash_plugin.history.baseline import Baseline
from xstash_plugin.launchers.preload import PreloadPool
from xstash_plugin.run.envs import EnvManager
from xstash_plugin.run.provenance import KeyMaker
from xstash_plugin.run.reuse import ReuseIndex, SubmittedIndex
from xstash_plugin.run.session_results import SessionResults
from xstash_plugin.run.stale import StaleRuns
from xstash_plugin.run.watchdog import Watchdog
from xstash_plugin.settings import Settings

REUSE_HELP = (
    "do not run an experiment again when a passed run with the same run key (tool code, "
    "dependencies, config as sent, overrides, declared inputs) exists in the output root: "
    "re-check its metrics against the current expectations instead (also: resume)"
)
OUTPUT_ROOT_HELP = "folder for run directories (default: 'outputs' next to the pytest rootdir)"


@dataclass
class State:
    """What every hook and item of one pytest process shares: the settings (resolved once,
    see settings.py), the session's services, and its caches."""

    config: pytest.Config
    settings: Settings
    session_id: str
    envs: EnvManager
    registries: dict[Path, Registry] = field(default_factory=dict)
    roots: dict[Path, Path | None] = field(default_factory=dict)
    fragments: dict[Path, bool] = field(default_factory=dict)  # see fragment_folder
    names: dict[str, Path] = field(default_factory=dict)
    markers: dict[str, pytest.MarkDecorator] = field(default_factory=dict)  # registered
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)  # per tool folder
    rows: list[dict[str, Any]] = field(default_factory=list)  # results seen by this process
    overrides: tuple[tuple[str, Any], ...] = ()  # --xstash-override, parsed once
    compose: ComposeService | None = None  # --xstash-compose (on unless turned off)
    sigterm_installed: bool = False
    keys: KeyMaker = field(default_factory=KeyMaker)
    reuse: ReuseIndex | None = None  # --xstash-reuse
    submitted: SubmittedIndex = field(init=False)
    reported: set[str] = field(default_factory=set)  # warnings already given
    parsed: dict[Path, Experiment | XstashError] = field(default_factory=dict)
    preload: PreloadPool = field(default_factory=PreloadPool)  # tools with preload: true
    watchdog: Watchdog = field(init=False)  # kills this process's tools should it be killed
    stale: StaleRuns = field(init=False)  # runs earlier sessions left 'running'
    session_results: SessionResults = field(init=False)  # seed results, for their aggregates
    baseline: Baseline | None = None  # --xstash-baseline, resolved on first use (regression.py)
    deselected: list[Any] = field(default_factory=list)  # by -k/-m (upstreams may come back)
    needed: set[str] = field(default_factory=set)  # test ids of this session's upstreams
    slurm: Any = None  # the Submitter of run/slurm_plan.py: arrays, packs, the queue cap
    _earlier: ReuseIndex | None = None
    _selected: set[str] | None = None

    def __post_init__(self) -> None:
        self.submitted = SubmittedIndex(self.output_root)
        self.watchdog = Watchdog(self.xstash_dir / "watchdog", self.settings.grace)
        self.stale = StaleRuns(self.output_root)
        self.session_results = SessionResults(self.xstash_dir / "sessions" / self.session_id)

    def earlier_runs(self) -> ReuseIndex:
        """Passed runs by run key (the --xstash-reuse index, or one made on first use)."""
        if self.reuse is not None:
            return self.reuse
        if self._earlier is None:
            self._earlier = ReuseIndex(self.output_root)
        return self._earlier

    def selected(self, session: pytest.Session) -> set[str]:
        """The node ids this session runs (after -k, -m, --lf deselection)."""
        if self._selected is None:
            self._selected = {item.nodeid for item in session.items}
        return self._selected

    @property
    def output_root(self) -> Path:
        return self.settings.output_root

    @property
    def xstash_dir(self) -> Path:
        """xstash's own files under the output root (environments, locks, logs, caches)."""
        return xstash_dir(self.output_root)

    def configs_root(self, folder: Path) -> Path | None:
        """The nearest folder at or above ``folder`` that holds a meta.yaml, cached."""
        chain: list[Path] = []
        found: Path | None = None
        current = folder
        while True:
            if current in self.roots:
                found = self.roots[current]
                break
            chain.append(current)
            if (current / META_NAME).is_file():
                found = current
                break
            if current.parent == current:
                break
            current = current.parent
        for visited in chain:
            self.roots[visited] = found
        return found

    def fragment_folder(self, folder: Path, root: Path) -> bool:
        """Whether ``folder`` (below the configs root ``root``) is or is inside a folder named
        ``_...`` (shared Hydra fragments, not experiments), cached."""
        found = self.fragments.get(folder)
        if found is None:
            parts = folder.relative_to(root).parts
            found = self.fragments[folder] = in_fragment(parts)
        return found

    def registry(self, root: Path) -> Registry:
        """meta.yaml of a configs root, parsed once per session."""
        if root not in self.registries:
            self.registries[root] = load_registry(root / META_NAME)
        return self.registries[root]

    def experiment(self, path: Path, root: Path) -> Experiment:
        """The experiment in ``path``, parsed and checked once per session."""
        if path not in self.parsed:
            try:
                self.parsed[path] = load_experiment(path, self.registry(root))
            except (ConfigError, ConfigErrors) as exc:
                self.parsed[path] = exc
        found = self.parsed[path]
        if isinstance(found, XstashError):
            raise found
        return found

    def point_overrides(self, point: Point) -> list[str]:
        """Override strings of a run: the sweep point, then --xstash-override (which wins)."""
        return overrides_for([*point, *self.overrides])

    def register_marker(self, name: str, what: str) -> pytest.MarkDecorator:
        """The marker ``name``, registered (with ``what`` for ``pytest --markers``) once: items
        share one decorator per name."""
        found = self.markers.get(name)
        if found is None:
            self.config.addinivalue_line("markers", f"{name}: {what} (registered by xstash)")
            found = self.markers[name] = getattr(pytest.mark, name)
        return found


STATE_KEY = pytest.StashKey[State]()


def make_state(config: pytest.Config, settings: Settings) -> State:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "xstash_session_id" in workerinput:
        session_id = str(workerinput["xstash_session_id"])
    else:
        session_id = uuid.uuid4().hex
    own = xstash_dir(settings.output_root)
    envs = EnvManager(own, session_id)
    return State(
        config=config,
        settings=settings,
        session_id=session_id,
        envs=envs,
        compose=ComposeService(own, envs) if settings.compose else None,
        reuse=ReuseIndex(settings.output_root) if settings.reuse else None,
    )


def get_state(config: pytest.Config) -> State:
    return config.stash[STATE_KEY]
