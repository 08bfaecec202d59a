"""What a tool's entrypoint says about its Hydra app, read without importing it (``ast``).

The primary config (``@hydra.main(config_name=...)``) decides what an experiment without a
``defaults:`` list extends; whether the entry has a ``@hydra.main`` at all and an
``if __name__ == "__main__":`` guard decides whether the tool can be imported to compose
configs. Importing would run the tool's imports (seconds, for real apps) and, without a guard,
the tool itself: reading the source is enough.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HydraMain:
    """The ``@hydra.main`` of a tool's entry, as its source says."""

    entry_file: Path | None  # the file Python runs (None: not found)
    module: str | None  # module style: what to import ('pkg.main', 'pkg.__main__')
    found: bool  # a @hydra.main decorator in the entry or a local module it imports
    config_name: str | None = None
    config_path: str | None = None
    guarded: bool = False  # the entry's top level has `if __name__ == "__main__":`
    problem: str = ""  # why the entry could not be read


def is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either way round)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    sides = [test.left, *test.comparators]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq) and bool(names and mains)


def entry_location(tool_dir: Path, entrypoint: tuple[str, ...]) -> tuple[Path | None, str | None]:
    """The entry's file and, for module style, the module to import (a package's
    ``__main__``), looked up as the registry does (the tool's folder, then ``src/``)."""
    if entrypoint[0] != "-m":
        return tool_dir / entrypoint[0], None
    module = entrypoint[1]
    rel = Path(*module.split("."))
    for base in (tool_dir, tool_dir / "src"):
        if (base / rel).with_suffix(".py").is_file():
            return (base / rel).with_suffix(".py"), module
        if (base / rel / "__main__.py").is_file():
            return base / rel / "__main__.py", f"{module}.__main__"
    return None, module


def _hydra_main_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names under which the module can reach Hydra's ``main``: ``hydra`` (``hydra.main``) and
    ``main`` as imported from hydra (``from hydra import main as hmain``)."""
    modules, functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "hydra":
                    modules.add(alias.asname or "hydra")
        elif isinstance(node, ast.ImportFrom) and node.module == "hydra" and node.level == 0:
            for alias in node.names:
                if alias.name == "main":
                    functions.add(alias.asname or "main")
    return modules, functions


def _string(node: ast.expr | None) -> tuple[bool, str | None]:
    """(known, value) of a decorator argument: a string or None literal is known."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, str)):
        return True, node.value
    return False, None


def _decorator(tree: ast.Module) -> ast.Call | None:
    modules, functions = _hydra_main_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            if not isinstance(deco, ast.Call):
                continue
            func = deco.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "main"
                and isinstance(func.value, ast.Name)
                and func.value.id in modules
            ) or (isinstance(func, ast.Name) and func.id in functions):
                return deco
    return None


def _local_imports(tree: ast.Module, file: Path, tool_dir: Path) -> list[Path]:
    """Files of the tool's own modules that ``file`` imports by name (``from .train import
    main``, ``from app.train import main``): where a package's ``__main__`` finds its main."""
    found: list[Path] = []
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or (node.module is None and node.level == 0):
            continue
        parts = (node.module or "").split(".") if node.module else []
        bases = [file.parent] if node.level == 1 else []
        if node.level > 1:
            bases = [file.parents[node.level - 2]]
        if node.level == 0:
            bases = [tool_dir, tool_dir / "src"]
        for base in bases:
            target = base.joinpath(*parts) if parts else base
            for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                if candidate.is_file() and candidate not in found:
                    found.append(candidate)
            if not parts:  # `from . import train`
                for alias in node.names:
                    module = base / f"{alias.name}.py"
                    if module.is_file() and module not in found:
                        found.append(module)
    return found


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_bytes(), filename=str(path))


def read_hydra_main(tool_dir: Path, entrypoint: tuple[str, ...]) -> HydraMain:
    """The entry's ``@hydra.main`` (in the entry itself, else in a local module it imports)."""
    entry, module = entry_location(tool_dir, entrypoint)
    if entry is None or not entry.is_file():
        return HydraMain(entry, module, False, problem="the entry's file was not found")
    try:
        tree = _parse(entry)
    except (OSError, SyntaxError, ValueError) as exc:
        return HydraMain(entry, module, False, problem=f"cannot read {entry}: {exc}")
    guarded = any(is_main_guard(node) for node in tree.body)
    deco = _decorator(tree)
    if deco is None:
        for other in _local_imports(tree, entry, tool_dir):
            try:
                deco = _decorator(_parse(other))
            except (OSError, SyntaxError, ValueError):
                continue
            if deco is not None:
                break
    if deco is None:
        return HydraMain(entry, module, False, guarded=guarded)
    args: dict[str, ast.expr] = dict(zip(("config_path", "config_name"), deco.args, strict=False))
    args.update({kw.arg: kw.value for kw in deco.keywords if kw.arg})
    _, config_path = _string(args.get("config_path"))
    known, config_name = _string(args.get("config_name"))
    return HydraMain(
        entry,
        module,
        True,
        config_name=config_name if known else None,
        config_path=config_path,
        guarded=guarded,
    )
