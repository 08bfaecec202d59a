"""The seed's command-line scripts, as thin wrappers over pytest.

``scripts/run_experiment TOOL CONFIG [KEY=VALUE ...] [--validate-only]`` runs (or only collects,
which validates) one experiment through pytest, each ``KEY=VALUE`` passed on as
``--xstash-override KEY=VALUE``; ``scripts/validate_setup.py`` checks the registry, every config,
and optionally builds tool environments; ``xstash env RUN_DIR`` prints the requirements that
rebuild a run's tool environment (:func:`main` dispatches ``xstash``'s subcommands).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin.config.layout import in_fragment
from xstash_plugin.config.registry import META_NAME, Registry, load_registry
from xstash_plugin.config.suggest import did_you_mean
from xstash_plugin.config.text import printable, quote
from xstash_plugin.config.yamlio import load_yaml_file
from xstash_plugin.errors import ConfigError, ConfigErrors, EnvError
from xstash_plugin.fsutil import xstash_dir

SUFFIXES = (".yaml", ".yml")


def _fail(message: str) -> int:
    print(f"❌ {message}", file=sys.stderr)
    return 1


def _config_names(configs: Path) -> list[str]:
    names = []
    for path in sorted(configs.rglob("*")):
        rel = path.relative_to(configs)
        if path.suffix in SUFFIXES and path.name != META_NAME and not in_fragment(rel.parts):
            names.append(rel.with_suffix("").as_posix())
    return names


def find_config(configs: Path, name: str) -> Path | str:
    """The file for config ``name`` (with or without suffix), or an error message.

    Refused: absolute names, names with control characters, names that lead outside
    ``configs`` (``..`` or a symlink), meta.yaml and '_' fragments (not experiments).
    """
    shown = quote(name, 200)
    if not name or Path(name).is_absolute():
        return f"Config name {shown} must be a path relative to {configs}"
    if "\n" in name or printable(name) != name:
        return f"Config name {shown} contains control characters: give a config path"
    candidates = (
        [configs / name]
        if name.endswith(SUFFIXES)
        else [configs / f"{name}{suffix}" for suffix in SUFFIXES]
    )
    try:
        root = configs.resolve()
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved != root and root not in resolved.parents:
                return (
                    f"Config name {shown} points outside {configs}: configs must live in the "
                    "configs folder"
                )
        found = next((c for c in candidates if c.is_file()), None)
    except OSError as exc:  # e.g. a name longer than the file system allows
        return f"Config name {shown} is not a usable path: {exc.strerror}"
    if found is not None:
        parts = Path(os.path.normpath(found.relative_to(configs))).parts
        if parts == (META_NAME,):
            return f"{found} is the tool registry, not an experiment config"
        if in_fragment(parts):
            return (
                f"{found} is a shared fragment (a '_' name), not an experiment: "
                "pytest never collects it"
            )
        return found
    return (
        f"Config file not found: {candidates[0]}\n"
        "   check that configs/<config-name>.yaml exists."
        + did_you_mean(name, _config_names(configs))
    )


def _pytest(args: list[str], root: Path) -> int:
    command = [sys.executable, "-m", "pytest", *args]
    print("$ " + shlex.join(["pytest", *args]), flush=True)
    return subprocess.call(command, cwd=root)


def split_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """``KEY=VALUE`` arguments (not starting with '-') as ``--xstash-override`` pairs, and the
    other arguments, in their order."""
    overrides: list[str] = []
    other: list[str] = []
    for arg in args:
        if not arg.startswith("-") and "=" in arg:
            overrides += ["--xstash-override", arg]
        else:
            other.append(arg)
    return overrides, other


def run_experiment_main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """``run_experiment TOOL CONFIG [KEY=VALUE...] [--validate-only] [-- PYTEST_ARGS...]``."""
    parser = argparse.ArgumentParser(
        prog="run_experiment",
        usage="%(prog)s [-h] [--validate-only] tool config [KEY=VALUE ...] [-- PYTEST_ARGS ...]",
        description="Run one experiment config with its tool (through pytest).",
        epilog="KEY=VALUE arguments are Hydra overrides for the run (pytest's "
        "--xstash-override; VALUE is read as YAML). Arguments after '--' go to pytest unchanged.",
    )
    parser.add_argument("tool", help="tool name, as registered in configs/meta.yaml")
    parser.add_argument("config", help="config path below configs/, without .yaml")
    parser.add_argument(
        "--validate-only",
        action="store_true",
        help="validate the config (pytest --collect-only) without running the tool",
    )
    raw = list(sys.argv[1:] if argv is None else argv)
    # Split at the first '--' ourselves: argparse keeps or drops it depending on what precedes.
    passthrough: list[str] = []
    if "--" in raw:
        cut = raw.index("--")
        raw, passthrough = raw[:cut], raw[cut + 1 :]
    args, known_rest = parser.parse_known_args(raw)
    overrides, other = split_overrides(known_rest)
    rest = [*overrides, *other, *passthrough]
    root = root or Path.cwd()
    configs = root / "configs"
    if not (configs / META_NAME).is_file():
        return _fail(f"no {configs / META_NAME}: run this from the repository's top folder")
    registry = load_registry(configs / META_NAME)
    if registry.error is not None:
        return _fail(f"the tool registry is broken:\n{registry.error}")
    if args.tool not in registry.names:
        return _fail(
            f"Tool not found in meta config: {quote(args.tool)}; registered: "
            f"{', '.join(registry.names) or '(none)'}.{did_you_mean(args.tool, registry.names)}\n"
            f"   add an entry for it under 'tools:' in {configs / META_NAME}"
        )
    found = find_config(configs, args.config)
    if isinstance(found, str):
        return _fail(found)
    try:
        data = load_yaml_file(found).data
    except ConfigError as exc:
        return _fail(str(exc))
    named = data.get("tool") if isinstance(data, dict) else None
    if named is not None and named != args.tool:
        return _fail(
            f"{found.relative_to(root)} is a config for tool '{named}', not '{args.tool}':\n"
            f"   run: python3 scripts/run_experiment {named} {args.config}"
        )
    target = found.relative_to(root).as_posix()
    if args.validate_only:
        code = _pytest([target, "--collect-only", "-q", *rest], root)
        if code == 0:
            print(f"✅ {target} is valid (tool {args.tool})")
        return code
    return _pytest([target, "-s", "-q", *rest], root)


class _Recorder:
    """Collects items and collection errors while pytest runs with its terminal output off."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.errors: list[tuple[str, str]] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.errors.append((report.nodeid, report.longreprtext))

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.items.extend(items)


def collect(root: Path, target: str = "configs") -> _Recorder:
    """pytest's own collection of ``target``, recorded (nothing runs, nothing is printed)."""
    recorder = _Recorder()
    args = [
        target,
        "--collect-only",
        "-p",
        "no:terminal",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(root),
    ]
    old = Path.cwd()
    try:
        os.chdir(root)
        pytest.main(args, plugins=[recorder])
    finally:
        os.chdir(old)
    return recorder


def _check_tool_env(registry: Registry, name: str, root: Path) -> list[str]:
    from xstash_plugin.run.envs import EnvManager

    tool = registry.tools[name]
    manager = EnvManager(xstash_dir(root / "outputs"), uuid.uuid4().hex)
    try:
        python = manager.python_for(tool)
    except EnvError as exc:
        return [str(exc)]
    probe = subprocess.run(
        [python, "-c", "import hydra; print(hydra.__version__)"],
        capture_output=True,
        text=True,
        cwd=tool.path,
        check=False,
    )
    if probe.returncode != 0:
        return [
            f"hydra cannot be imported with {python}:\n{probe.stderr.strip()[-2000:]}\n"
            f"   add hydra-core to the dependencies of {tool.path}"
        ]
    print(f"   environment: {python} (hydra-core {probe.stdout.strip()})")
    return []


def validate_setup_main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """``validate_setup.py [--list-configs] [--tool NAME]``."""
    parser = argparse.ArgumentParser(
        prog="validate_setup.py", description="Validate the tool registry and every config."
    )
    parser.add_argument("--list-configs", action="store_true", help="list the configs")
    parser.add_argument(
        "--tool",
        metavar="NAME",
        help="check one tool: its registration, its environment (built with uv), its configs",
    )
    args = parser.parse_args(argv)
    root = root or Path.cwd()
    configs = root / "configs"
    meta = configs / META_NAME
    if not meta.is_file():
        return _fail(f"no {meta}: run this from the repository's top folder")
    registry = load_registry(meta)
    if registry.error is not None:
        return _fail(f"the tool registry is broken:\n{registry.error}")
    problems = 0
    if args.tool is not None and args.tool not in registry.names:
        return _fail(
            f"Tool not found in meta config: {quote(args.tool)}; registered: "
            f"{', '.join(registry.names) or '(none)'}.{did_you_mean(args.tool, registry.names)}"
        )
    names = [args.tool] if args.tool else registry.names
    print(f"🔧 tools in {meta.relative_to(root)}:")
    for name in names:
        if name in registry.tool_errors:
            problems += 1
            print(f"  ❌ {name}: {registry.tool_errors[name]}")
            continue
        tool = registry.tools[name]
        print(
            f"  ✅ {name}: {tool.path.relative_to(root)} ({' '.join(tool.entrypoint)}, "
            f"env {tool.env})"
        )
        if args.tool:
            for message in _check_tool_env(registry, name, root):
                problems += 1
                print(f"  ❌ {message}")
    recorder = collect(root)
    items = [i for i in recorder.items if not args.tool or _tool_of(i) == args.tool]
    if args.list_configs or args.tool:
        print(f"📋 configs ({len(items)}):")
        for item in items:
            exp = item.experiment
            estimate = exp.estimated_runtime or "-"
            tags = ",".join(exp.tags) or "-"
            print(f"  {item.nodeid:<55} tool={exp.tool.name} est={estimate} tags={tags}")
    errors = recorder.errors
    if args.tool:
        errors = [e for e in errors if _mentions_tool(root / e[0].split("::")[0], args.tool)]
    for nodeid, text in errors:
        problems += 1
        print(f"  ❌ {nodeid}:\n" + "\n".join("     " + line for line in text.splitlines()))
    print(
        f"{'✅' if not problems else '❌'} {len(items)} valid config(s), "
        f"{len(errors)} invalid config(s), {problems} problem(s)"
    )
    return 1 if problems else 0


def _tool_of(item: Any) -> str | None:
    experiment = getattr(item, "experiment", None)
    return None if experiment is None else str(experiment.tool.name)


def _mentions_tool(path: Path, tool: str) -> bool:
    try:
        data = load_yaml_file(path).data
    except (ConfigError, ConfigErrors):
        return False
    return isinstance(data, dict) and data.get("tool") == tool


def environment_text(run_dir: Path) -> str:
    """The requirements file that rebuilds the tool environment of the run in ``run_dir``
    (kept once per environment under its output root, see run/envs.py); ValueError if none."""
    from xstash_plugin.fsutil import XSTASH_DIR
    from xstash_plugin.run.envs import ENVIRONMENTS
    from xstash_plugin.run.record import RECORD_NAME, RunRecord

    try:
        record = RunRecord.load(run_dir)
    except FileNotFoundError:
        raise ValueError(
            f"{run_dir} holds no run record ({RECORD_NAME}): give a run directory, "
            "e.g. outputs/configs/<config>/<run>"
        ) from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"the run record {run_dir / RECORD_NAME} cannot be read: {exc}") from None
    digest = record.environment_hash
    if not digest:
        raise ValueError(
            f"the run record {run_dir / RECORD_NAME} names no environment: an older xstash "
            "wrote it, the run ended before its environment was ready, or uv could not list "
            "the packages of its interpreter"
        )
    candidates = [Path(record.environment_path)] if record.environment_path else []
    for parent in run_dir.resolve().parents:  # the output root, wherever it was moved
        candidates.append(parent / XSTASH_DIR / ENVIRONMENTS / f"{digest}.txt")
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if hashlib.sha256(text.encode()).hexdigest()[:16] == digest:
            return (
                f"# xstash env {run_dir}: tool {record.tool}, environment {digest}\n"
                "# rebuild: uv venv --python <that python> && uv pip install -r <this file>\n"
                + text
            )
    raise ValueError(
        f"environment {digest} of the run in {run_dir} is not in {candidates[0].parent}: "
        f"it is kept as {XSTASH_DIR}/{ENVIRONMENTS}/{digest}.txt under the output root"
    )


def env_main(argv: list[str] | None = None) -> int:
    """``xstash env RUN_DIR``: print the requirements.txt of a run's tool environment."""
    parser = argparse.ArgumentParser(
        prog="xstash env",
        description="Print a requirements.txt that rebuilds the tool environment a run used "
        "(its resolved packages, as `uv pip freeze` listed them).",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (it holds xstash.json)")
    args = parser.parse_args(argv)
    try:
        text = environment_text(args.run_dir)
    except ValueError as exc:
        return _fail(f"xstash env: {exc}")
    sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``xstash env RUN_DIR``, else ``xstash history ...`` (history/cli.py)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["env"]:
        return env_main(args[1:])
    from xstash_plugin.history.cli import main as history_main

    return history_main(args)


if __name__ == "__main__":
    sys.exit(main())
