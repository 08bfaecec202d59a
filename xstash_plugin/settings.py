"""Every xstash setting, resolved once in ``pytest_configure`` (command line, then ini file,
then default) into a frozen :class:`Settings`; each value knows where it came from.

Workers of pytest-xdist do not resolve anything again: the controller's settings travel to them
in ``workerinput`` (:meth:`Settings.to_wire`), so a relative ``--xstash-output-root`` or an ini
value means the same folder everywhere. No hook reads an xstash option after this.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin.config.compose import parse_compose_setting
from xstash_plugin.config.durations import parse_duration
from xstash_plugin.launchers.base import GRACE_SECONDS

ORDERS = ("longest", "file")
PROGRESS_MODES = ("auto", "tty", "plain", "off")
DEFAULT_PROGRESS_INTERVAL = "30s"
WIRE_KEY = "xstash_settings"


@dataclass(frozen=True)
class Setting:
    """A resolved value and its source: ``--xstash-timeout``, ``ini xstash_timeout (path)``,
    or ``default``."""

    value: Any
    source: str = "default"


@dataclass(frozen=True)
class Settings:
    """The session's settings, typed; ``sources`` names where each came from."""

    output_root: Path
    compose: bool
    reuse: bool
    no_needs: bool  # --xstash-no-needs: deselected upstreams stay deselected
    launcher: str  # "local" | "slurm"
    detach: bool
    timeout: float | None  # seconds
    grace: float  # seconds between SIGTERM and SIGKILL
    order: str  # "longest" | "file"
    reports: tuple[Path, ...]  # --xstash-report, each file's format from its suffix
    table_digits: int  # digits after the point in a LaTeX table
    table_metrics: tuple[str, ...]  # a LaTeX table's metric columns (empty: chosen)
    secret_env: tuple[str, ...]
    progress: str  # one of PROGRESS_MODES, as asked (the display decides what it can do)
    progress_interval: float  # seconds
    overrides_raw: tuple[str, ...]  # --xstash-override KEY=VALUE as typed
    live: bool  # -s: the tools' output goes to the terminal too
    history: Path  # the results store (history/store.py)
    baseline: str | None  # --xstash-baseline REF
    baseline_warn: bool
    alpha: float  # the baseline comparison's significance level
    baseline_tol: float  # relative tolerance without repeats
    mlflow: str | None  # --xstash-mlflow URI
    gpus: tuple[str, ...] | None  # ini xstash_gpus: local runs' GPUs (None: detected)
    cpus: int | None  # ini xstash_cpus (None: detected)
    mem: int | None  # ini xstash_mem, bytes (None: detected)
    slurm_max_jobs: int | None  # ini xstash_slurm_max_jobs (launchers/slurm_batch.py)
    slurm_array_parallelism: int | None
    slurm_arrays: bool  # ini xstash_slurm_arrays (false: one sbatch per experiment)
    slurm_pack_below: float | None  # seconds
    slurm_pack_jobs: int
    slurm_pack_cpus: int
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, found: dict[str, Setting]) -> Settings:
        values = {name: setting.value for name, setting in found.items()}
        return cls(**values, sources={name: setting.source for name, setting in found.items()})

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def to_wire(self) -> dict[str, Any]:
        """Plain data for pytest-xdist's workerinput."""
        return {
            f.name: [_plain(getattr(self, f.name)), self.source(f.name)]
            for f in dataclasses.fields(self)
            if f.name != "sources"
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Settings:
        found = {}
        for f in dataclasses.fields(cls):
            if f.name == "sources":
                continue
            value, source = data[f.name]
            if f.name in ("output_root", "history"):
                value = Path(value)
            elif f.name == "reports":
                value = tuple(Path(v) for v in value)
            elif isinstance(value, list):
                value = tuple(value)
            found[f.name] = Setting(value, source)
        return cls.of(found)

    def describe(self) -> list[str]:
        """``name = value (source)`` per setting, for debugging."""
        return [
            f"{f.name} = {getattr(self, f.name)!r} ({self.source(f.name)})"
            for f in dataclasses.fields(self)
            if f.name != "sources"
        ]


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _option_or_ini(config: pytest.Config, option: str, ini: str) -> tuple[Any, str]:
    """The command-line value if given, else the ini value if set, else (None, 'default')."""
    given = config.getoption(option)
    if given not in (None, "", False):
        return given, f"--{option.replace('_', '-')}"
    value = config.getini(ini)
    if value not in (None, "", [], False):
        return value, f"ini {ini} ({config.inipath})"
    return None, "default"


def _duration(config: pytest.Config, name: str, cli: bool, positive: bool) -> Setting:
    raw, source = _option_or_ini(config, name, name) if cli else (config.getini(name), "")
    if not cli:
        source = f"ini {name} ({config.inipath})" if raw else "default"
    if not raw:
        return Setting(None)
    try:
        seconds = parse_duration(str(raw))
    except ValueError as exc:
        raise pytest.UsageError(f"{source}: {exc}") from None
    if positive and seconds <= 0:
        raise pytest.UsageError(f"{source}: {str(raw)!r} must be more than zero")
    return Setting(seconds, f"{source} {raw}")


def _output_root(config: pytest.Config) -> Setting:
    """Command line (relative to where pytest started) -> ini (relative to the ini file)."""
    option = config.getoption("xstash_output_root")
    if option:
        return Setting((config.invocation_params.dir / option).absolute(), "--xstash-output-root")
    ini = config.getini("xstash_output_root")
    if ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        source = f"ini xstash_output_root ({config.inipath})"
        return Setting((base / str(ini)).absolute(), source)
    return Setting(config.rootpath / "outputs")


def _compose(config: pytest.Config) -> Setting:
    raw, source = _option_or_ini(config, "xstash_compose", "xstash_compose")
    if raw is None or not str(raw).strip():
        return Setting(True)
    try:
        return Setting(parse_compose_setting(str(raw).strip(), source), source)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _choice(config: pytest.Config, option: str, choices: tuple[str, ...], default: str) -> Setting:
    raw, source = _option_or_ini(config, option, option)
    if raw is None:
        return Setting(default)
    if raw not in choices:
        label = source.split(" (")[0] if source.startswith("ini ") else source
        where = f" ({config.inipath})" if source.startswith("ini ") else ""
        raise pytest.UsageError(f"{label} = {raw!r}: use one of {', '.join(choices)}{where}")
    return Setting(str(raw), source)


def _reports(config: pytest.Config) -> Setting:
    from xstash_plugin.report.rows import REPORT_SUFFIXES

    given: list[str] = config.getoption("xstash_report") or []
    paths = []
    for report in given:
        path = config.invocation_params.dir / report
        if path.suffix not in REPORT_SUFFIXES:
            raise pytest.UsageError(
                f"--xstash-report {report}: the format comes from the suffix, which must be "
                f"one of {', '.join(REPORT_SUFFIXES)}"
            )
        if path not in paths:
            paths.append(path)
    return Setting(tuple(paths), "--xstash-report") if paths else Setting(())


def _table(config: pytest.Config) -> tuple[Setting, Setting]:
    raw, source = _option_or_ini(config, "xstash_table_digits", "xstash_table_digits")
    digits = Setting(3)
    if raw is not None:
        try:
            value = int(str(raw))
        except ValueError:
            value = -1
        if not 0 <= value <= 12:
            raise pytest.UsageError(f"{source}: {raw!r} is not a number of digits from 0 to 12")
        digits = Setting(value, source)
    raw, source = _option_or_ini(config, "xstash_table_metrics", "xstash_table_metrics")
    if raw is None:
        return digits, Setting(())
    names = raw if isinstance(raw, list) else str(raw).split(",")
    metrics = tuple(name.strip() for name in names if name.strip())
    return digits, Setting(metrics, source)


def _history(config: pytest.Config, output_root: Path) -> dict[str, Setting]:
    """The results history's settings (see history/options.py)."""
    found: dict[str, Setting] = {}
    option = config.getoption("xstash_history")
    ini = config.getini("xstash_history")
    if option:
        found["history"] = Setting(
            (config.invocation_params.dir / option).absolute(), "--xstash-history"
        )
    elif ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        found["history"] = Setting((base / str(ini)).absolute(), f"ini xstash_history ({ini})")
    else:
        found["history"] = Setting(output_root / ".xstash" / "history.sqlite")
    baseline = config.getoption("xstash_baseline")
    found["baseline"] = Setting(baseline, "--xstash-baseline") if baseline else Setting(None)
    warn = bool(config.getoption("xstash_baseline_warn"))
    found["baseline_warn"] = Setting(warn, "--xstash-baseline-warn" if warn else "default")
    for name, default, low, high in (("alpha", 0.05, 0.0, 1.0), ("baseline_tol", 0.0, 0.0, None)):
        raw = config.getini(f"xstash_{name}")
        if not raw:
            found[name] = Setting(default)
            continue
        try:
            value = float(str(raw))
        except ValueError:
            value = -1.0
        if not (value > low or (name == "baseline_tol" and value == low)) or (
            high is not None and value >= high
        ):
            where = f"ini xstash_{name} ({config.inipath})"
            raise pytest.UsageError(f"{where}: {raw!r} is not a number in the allowed range")
        found[name] = Setting(value, f"ini xstash_{name}")
    uri = config.getoption("xstash_mlflow")
    found["mlflow"] = Setting(uri, "--xstash-mlflow") if uri else Setting(None)
    return found


def _slots(config: pytest.Config) -> dict[str, Setting]:
    """The local inventory's ini values (launchers/slots.py; unset: detected)."""
    from xstash_plugin.launchers.slots import parse_cpus, parse_gpus, parse_mem

    found: dict[str, Setting] = {}
    for name, parse in (("gpus", parse_gpus), ("cpus", parse_cpus), ("mem", parse_mem)):
        raw = str(config.getini(f"xstash_{name}") or "").strip()
        if not raw:
            found[name] = Setting(None)
            continue
        source = f"ini xstash_{name} ({config.inipath})"
        try:
            found[name] = Setting(parse(raw), source)
        except ValueError as exc:
            raise pytest.UsageError(f"{source}: {exc}") from None
    return found


def _slurm(config: pytest.Config) -> dict[str, Setting]:
    """Arrays and packing (launchers/slurm_batch.py, run/slurm_plan.py)."""
    from xstash_plugin.launchers.slurm_batch import DEFAULT_PACK_CPUS, DEFAULT_PACK_JOBS

    below = _duration(config, "xstash_slurm_pack_below", cli=False, positive=True)
    found: dict[str, Setting] = {"slurm_pack_below": below, "slurm_arrays": Setting(True)}
    arrays = str(config.getini("xstash_slurm_arrays") or "").strip().lower()
    if arrays:
        source = f"ini xstash_slurm_arrays ({config.inipath})"
        if arrays not in ("true", "false", "1", "0", "yes", "no"):
            raise pytest.UsageError(f"{source}: {arrays!r} is not true or false")
        found["slurm_arrays"] = Setting(arrays in ("true", "1", "yes"), source)
    defaults = {
        "max_jobs": None,
        "array_parallelism": None,
        "pack_jobs": DEFAULT_PACK_JOBS,
        "pack_cpus": DEFAULT_PACK_CPUS,
    }
    for name, default in defaults.items():
        raw = str(config.getini(f"xstash_slurm_{name}") or "").strip()
        if not raw:
            found[f"slurm_{name}"] = Setting(default)
            continue
        source = f"ini xstash_slurm_{name} ({config.inipath})"
        if not raw.isdigit() or int(raw) < 1:
            raise pytest.UsageError(f"{source}: {raw!r} is not a whole number of at least 1")
        found[f"slurm_{name}"] = Setting(int(raw), source)
    return found


def build(config: pytest.Config) -> Settings:
    """The session's settings: from the controller when this is an xdist worker."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and WIRE_KEY in workerinput:
        return Settings.from_wire(workerinput[WIRE_KEY])
    grace = _duration(config, "xstash_kill_grace", cli=False, positive=False)
    interval = _duration(config, "xstash_progress_interval", cli=False, positive=True)
    reuse, reuse_source = _option_or_ini(config, "xstash_reuse", "xstash_reuse")
    launcher = config.getoption("xstash_launcher")
    overrides = tuple(config.getoption("xstash_overrides") or ())
    table_digits, table_metrics = _table(config)
    output_root = _output_root(config)
    return Settings.of(
        dict(
            **_history(config, output_root.value),
            **_slots(config),
            **_slurm(config),
            output_root=output_root,
            compose=_compose(config),
            reuse=Setting(bool(reuse), reuse_source),
            no_needs=Setting(True, "--xstash-no-needs")
            if config.getoption("xstash_no_needs")
            else Setting(False),
            launcher=Setting(launcher, "--xstash-launcher") if launcher else Setting("local"),
            detach=Setting(True, "--xstash-detach")
            if config.getoption("xstash_detach")
            else Setting(False),
            timeout=_duration(config, "xstash_timeout", cli=True, positive=True),
            grace=grace if grace.value is not None else Setting(GRACE_SECONDS),
            order=_choice(config, "xstash_order", ORDERS, "longest"),
            reports=_reports(config),
            table_digits=table_digits,
            table_metrics=table_metrics,
            secret_env=Setting(
                tuple(config.getini("xstash_secret_env") or ()), "ini xstash_secret_env"
            ),
            progress=_choice(config, "xstash_progress", PROGRESS_MODES, "auto"),
            progress_interval=interval
            if interval.value is not None
            else Setting(parse_duration(DEFAULT_PROGRESS_INTERVAL)),
            overrides_raw=Setting(overrides, "--xstash-override" if overrides else "default"),
            live=Setting(config.getoption("capture") == "no", "--capture"),
        )
    )
