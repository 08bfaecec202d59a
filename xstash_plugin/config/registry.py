"""``configs/meta.yaml``, the tool registry, turned into :class:`Tool` values.

Every problem is a :class:`ConfigError` with meta.yaml's path and line. A problem with one tool
fails only the experiments that use that tool; a problem with the file as a whole fails every
experiment of that configs root.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from xstash_plugin.config.hydra_entry import HydraMain, read_hydra_main
from xstash_plugin.config.markers import marker_problem
from xstash_plugin.config.resources import check_launcher, check_resources
from xstash_plugin.config.suggest import did_you_mean
from xstash_plugin.config.text import printable_error, quote
from xstash_plugin.config.yamlio import YamlDoc, load_yaml_file
from xstash_plugin.errors import ConfigError

META_NAME = "meta.yaml"
TOOL_KEYS = {
    "path": "the tool's folder, relative to the repository (the folder holding configs/)",
    "entrypoint": "'src/main.py' (file style) or '-m src.main' (module style)",
    "description": "what the tool does",
    "env": "'uv' (default), 'system' (the interpreter running pytest) or a path to a python",
    "python": "the Python uv builds the tool's environment with (default: the one running pytest)",
    "pass_experiment": "true to also give the tool the key 'experiment' in its config",
    "launcher": "'local' (default) or 'slurm': where this tool's experiments run",
    "resources": "SLURM resources for this tool's jobs: {partition, time, cpus, gpus, mem, ...}",
    "preload": "true to import the tool once per worker and fork each run from it (faster starts)",
    "config_name": "the tool's primary config, which experiments extend (default: read from "
    "its @hydra.main(config_name=...))",
}


@dataclass(frozen=True)
class Tool:
    """One registered tool: where it lives and how it is started."""

    name: str
    path: Path
    entrypoint: tuple[str, ...]
    description: str
    env: str  # "uv", "system", or an absolute path to a python interpreter
    python: str | None
    pass_experiment: bool
    meta_path: Path
    line: int
    launcher: str | None = None  # None: not set in meta.yaml
    resources: dict[str, Any] = field(default_factory=dict)
    preload: bool = False  # fork each local run from a process that imported the tool once
    # The config experiments extend: meta.yaml's config_name, else @hydra.main's (None: none).
    primary: str | None = None
    hydra_main: HydraMain | None = None  # what the entry's source says (see hydra_entry)

    @property
    def module_style(self) -> bool:
        return self.entrypoint[0] == "-m"


@dataclass
class Registry:
    """The tools of one configs root, and what was wrong with the ones that are broken."""

    meta_path: Path
    repo_root: Path
    tools: dict[str, Tool] = field(default_factory=dict)
    tool_errors: dict[str, ConfigError] = field(default_factory=dict)
    error: ConfigError | None = None

    # Folder of a config -> whether it resolves inside ``homes`` (see experiment._real_outside).
    folders_inside: dict[Path, bool] = field(default_factory=dict, repr=False, compare=False)

    @property
    def names(self) -> list[str]:
        return sorted({*self.tools, *self.tool_errors})

    @cached_property
    def homes(self) -> tuple[Path, Path]:
        """The repository and the configs root with symlinks resolved (once): every experiment
        config must resolve inside one of them."""
        return self.repo_root.resolve(), self.meta_path.parent.resolve()


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _parse_entrypoint(
    raw: str, tool_dir: Path, repo_root: Path, meta: Path, line: int
) -> tuple[str, ...]:
    fix = "use 'src/main.py' (file style) or '-m src.main' (module style)"
    try:
        argv = tuple(shlex.split(raw))
    except ValueError as exc:
        raise ConfigError(meta, line, f"entrypoint {raw!r} cannot be parsed: {exc}", fix) from None
    if not argv:
        raise ConfigError(meta, line, "entrypoint is empty", fix)
    if argv[0] == "-m":
        if len(argv) < 2 or not all(p.isidentifier() for p in argv[1].split(".")):
            raise ConfigError(meta, line, f"entrypoint {raw!r} names no valid module", fix)
        rel = Path(*argv[1].split("."))
        candidates = [base / rel.with_suffix(".py") for base in (tool_dir, tool_dir / "src")] + [
            base / rel / "__main__.py" for base in (tool_dir, tool_dir / "src")
        ]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ConfigError(
                meta,
                line,
                f"entrypoint module '{argv[1]}' not found in {tool_dir}"
                f" (looked for {rel.with_suffix('.py')} and {rel / '__main__.py'})",
                "check the module path; module style runs 'python -m <module>' in the tool's "
                "folder",
            )
    else:
        found = tool_dir / argv[0]
        if not found.is_file():
            hint = ""
            if not argv[0].endswith(".py") and all(p.isidentifier() for p in argv[0].split(".")):
                hint = f" (for a module write '-m {argv[0]}')"
            raise ConfigError(
                meta,
                line,
                f"entrypoint file '{argv[0]}' does not exist in {tool_dir}{hint}",
                "give the path of the tool's main script relative to the tool's folder",
            )
    if not _inside(found, repo_root):
        raise ConfigError(
            meta,
            line,
            f"entrypoint {raw!r} resolves outside the repository {repo_root}",
            "the entrypoint (after following symlinks) must live in the repository",
        )
    return argv


def _parse_tool(name: str, spec: Any, doc: YamlDoc, repo_root: Path) -> Tool:
    meta = doc.path
    line = doc.line("tools", name)
    _check_spec_keys(name, spec, doc)
    tool_dir = _tool_dir(name, spec["path"], doc, repo_root)
    entrypoint = _parse_entrypoint(
        spec["entrypoint"], tool_dir, repo_root, meta, doc.line("tools", name, "entrypoint")
    )
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(
            meta,
            doc.line("tools", name, "description"),
            "description must be a string",
            'quote it: description: "..."',
        )
    env = _tool_env(name, spec, doc, repo_root)
    python_req = spec.get("python")
    if python_req is not None and not isinstance(python_req, (str, int, float)):
        raise ConfigError(
            meta,
            doc.line("tools", name, "python"),
            "python must be a string",
            "write e.g. python: '3.11' (or leave it out to use the python running pytest)",
        )
    pass_experiment = _flag(
        spec, "pass_experiment", doc, name, "write pass_experiment: true (or false, the default)"
    )
    preload = _flag(
        spec,
        "preload",
        doc,
        name,
        "write preload: true to fork each run from a preloaded tool process (or false)",
    )
    hydra_main = read_hydra_main(tool_dir, entrypoint)
    primary = _primary(name, spec, doc, hydra_main)
    launcher, resources = _tool_launch(name, spec, doc)
    return Tool(
        name=name,
        path=tool_dir,
        entrypoint=entrypoint,
        description=description,
        env=env,
        python=None if python_req is None else str(python_req),
        pass_experiment=pass_experiment,
        meta_path=meta,
        line=line,
        launcher=launcher,
        resources=resources,
        preload=preload,
        primary=primary,
        hydra_main=hydra_main,
    )


def _check_spec_keys(name: str, spec: Any, doc: YamlDoc) -> None:
    """``spec`` is a mapping of known keys, with a path and an entrypoint."""
    meta = doc.path
    line = doc.line("tools", name)
    if not isinstance(spec, dict):
        raise ConfigError(
            meta,
            line,
            f"tool '{name}' must be a mapping with 'path' and 'entrypoint'",
            f"write: {name}: {{path: tools/{name}, entrypoint: src/main.py}}",
        )
    unknown = sorted(set(map(str, spec)) - set(TOOL_KEYS))
    if unknown:
        key = unknown[0]
        raise ConfigError(
            meta,
            doc.line("tools", name, key),
            f"unknown key {quote(key)} in tool '{name}'.{did_you_mean(key, TOOL_KEYS)}",
            "allowed keys: " + ", ".join(TOOL_KEYS),
        )
    for key in ("path", "entrypoint"):
        if key not in spec:
            raise ConfigError(
                meta, line, f"tool '{name}' has no '{key}'", f"add '{key}: {TOOL_KEYS[key]}'"
            )
        if not isinstance(spec[key], str) or not spec[key].strip():
            raise ConfigError(
                meta,
                doc.line("tools", name, key),
                f"'{key}' of tool '{name}' must be a non-empty string",
                f"write '{key}: {TOOL_KEYS[key]}'",
            )


def _tool_dir(name: str, rel: str, doc: YamlDoc, repo_root: Path) -> Path:
    """The tool's folder: inside the repository, and there."""
    tool_dir = (repo_root / rel).absolute()
    pline = doc.line("tools", name, "path")
    if Path(rel).is_absolute() or not _inside(tool_dir, repo_root):
        raise ConfigError(
            doc.path,
            pline,
            f"path '{rel}' of tool '{name}' is outside the repository {repo_root}",
            "keep tools inside the repository, e.g. 'tools/<name>' (symlinks are resolved)",
        )
    if not tool_dir.is_dir():
        raise ConfigError(
            doc.path,
            pline,
            f"path '{rel}' of tool '{name}' does not exist ({tool_dir})",
            "create the tool's folder or correct the path (relative to the folder holding "
            "configs/)",
        )
    return tool_dir


def _tool_env(name: str, spec: dict[str, Any], doc: YamlDoc, repo_root: Path) -> str:
    """'uv', 'system', or the absolute path of an existing python."""
    env = spec.get("env", "uv")
    eline = doc.line("tools", name, "env")
    if not isinstance(env, str) or not env:
        raise ConfigError(doc.path, eline, "env must be a string", "use: " + TOOL_KEYS["env"])
    if env not in ("uv", "system"):
        python = Path(env) if Path(env).is_absolute() else repo_root / env
        if not python.is_file():
            raise ConfigError(
                doc.path,
                eline,
                f"env '{env}' is neither 'uv', 'system' nor an existing python",
                "use: " + TOOL_KEYS["env"],
            )
        env = str(python.absolute())
    return env


def _primary(name: str, spec: dict[str, Any], doc: YamlDoc, hydra_main: HydraMain) -> str | None:
    """The config the tool's experiments extend: meta.yaml's config_name, else @hydra.main's."""
    if "config_name" not in spec:
        return hydra_main.config_name
    primary = spec["config_name"]
    if primary is not None and (not isinstance(primary, str) or not primary.strip()):
        raise ConfigError(
            doc.path,
            doc.line("tools", name, "config_name"),
            f"config_name of tool '{name}' must be a config name",
            "write e.g. config_name: main (the tool's primary config), or null for a tool "
            "whose experiments are its whole config",
        )
    return str(primary) if primary is not None else None


def _tool_launch(
    name: str, spec: dict[str, Any], doc: YamlDoc
) -> tuple[str | None, dict[str, Any]]:
    """The tool's launcher and resources (None and {}: not set)."""
    launcher: str | None = None
    resources: dict[str, Any] = {}
    try:
        if "launcher" in spec:
            launcher = check_launcher(spec["launcher"])
        if "resources" in spec:
            resources = check_resources(spec["resources"])
    except ValueError as exc:
        key = "launcher" if launcher is None and "launcher" in spec else "resources"
        raise ConfigError(
            doc.path,
            doc.line("tools", name, key),
            f"tool '{name}': {exc}",
            "launcher: local | slurm; resources: {partition: gpu, time: 2h, cpus: 4, mem: 16G}",
        ) from None
    return launcher, resources


def _flag(spec: dict[str, Any], key: str, doc: YamlDoc, name: str, fix: str) -> bool:
    """A true/false key of tool ``name`` (default false), or a ConfigError at its line."""
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(doc.path, doc.line("tools", name, key), f"{key} must be true/false", fix)
    return value


def _check_tool_name(name: str, doc: YamlDoc) -> None:
    """Tool names become pytest markers: a name like 'skip' would silently skip experiments."""
    problem = marker_problem(name, "tool name", " (experiments are marked with it)")
    if problem is not None:
        raise ConfigError(doc.path, doc.line("tools", name), *problem)


def load_registry(meta_path: Path) -> Registry:
    """Load and check one ``meta.yaml``. Never raises: problems are kept in the result, their
    messages free of control characters from the file (see
    :func:`~xstash_plugin.config.text.printable`)."""
    registry = _load_registry(meta_path)
    if registry.error is not None:
        registry.error = printable_error(registry.error)
    for name, error in registry.tool_errors.items():
        registry.tool_errors[name] = printable_error(error)
    return registry


def _load_registry(meta_path: Path) -> Registry:
    repo_root = meta_path.parent.parent
    registry = Registry(meta_path=meta_path, repo_root=repo_root)
    try:
        doc = load_yaml_file(meta_path)
    except ConfigError as exc:
        registry.error = exc
        return registry
    example = "tools:\n    my-tool: {path: tools/my-tool, entrypoint: src/main.py}"
    if not isinstance(doc.data, dict):
        what = "is empty" if doc.data is None else "must be a mapping with a 'tools' key"
        registry.error = ConfigError(meta_path, 1, f"meta.yaml {what}", "write:\n  " + example)
        return registry
    for dup_path, first, again in doc.duplicates:
        # YAML keeps only the last value: a repeated key silently drops tools or settings.
        if dup_path[:1] == ("tools",) and len(dup_path) == 2:
            what = f"tool {quote(dup_path[1])} is registered twice (first at line {first})"
            fix = "keep one entry per tool name"
        else:
            what = f"duplicate key '{'.'.join(dup_path)}' (first at line {first})"
            fix = "YAML keeps only the last value: merge the two into one"
        registry.error = ConfigError(meta_path, again, what, fix)
        return registry
    unknown = sorted(set(map(str, doc.data)) - {"tools"})
    if unknown:
        registry.error = ConfigError(
            meta_path,
            doc.line(unknown[0]),
            f"unknown top-level key {quote(unknown[0])}.{did_you_mean(unknown[0], ['tools'])}",
            "meta.yaml has one key: 'tools'",
        )
        return registry
    if "tools" not in doc.data:
        registry.error = ConfigError(
            meta_path, 1, "meta.yaml has no 'tools' key", "write:\n  " + example
        )
        return registry
    tools = doc.data["tools"]
    if not isinstance(tools, dict):
        registry.error = ConfigError(
            meta_path,
            doc.line("tools"),
            "'tools' must be a mapping of tool name to settings",
            "write:\n  " + example,
        )
        return registry
    for name, spec in tools.items():
        name = str(name)
        try:
            _check_tool_name(name, doc)
            registry.tools[name] = _parse_tool(name, spec, doc, repo_root)
        except ConfigError as exc:
            registry.tool_errors[name] = exc
    return registry
