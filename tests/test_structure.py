"""The package's shape, checked: no import cycles, collection code free of pytest, modules and
functions a reader can hold in their head."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "xstash_plugin"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
MAX_ITEM_LINES = 150


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every xstash_plugin module ``name`` imports, anywhere in the file (functions and
    ``if TYPE_CHECKING:`` blocks included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if target in modules and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # A package's __init__ is imported with each of its modules; ours are empty.
    return {k: {t for t in v if modules[t].name != "__init__.py"} for k, v in graph.items()}


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def depth() -> int:
    """The longest chain of imports (a measure for the notes: how deep a reader must go)."""
    graph = _graph()
    memo: dict[str, int] = {}

    def longest(name: str) -> int:
        if name not in memo:
            memo[name] = 1 + max((longest(t) for t in graph[name]), default=0)
        return memo[name]

    return max(longest(name) for name in graph)


def test_collection_code_imports_no_pytest() -> None:
    """config/ is validation: usable (and testable) without pytest, also through what it
    imports."""
    graph, modules = _graph(), _modules()
    seen: set[str] = set()
    todo = [name for name in modules if name.startswith("xstash_plugin.config.")]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(graph[name])
    offenders = []
    for name in sorted(seen):
        tree = ast.parse(modules[name].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            if any(n == "pytest" or n.startswith(("pytest.", "_pytest")) for n in names):
                offenders.append(name)
    assert not offenders, f"config/ reaches pytest through: {offenders}"


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
            if isinstance(node, ast.ClassDef) and node.name == "ExperimentItem":
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_ITEM_LINES:
                    too_long.append(f"ExperimentItem: {length} lines (at most {MAX_ITEM_LINES})")
    assert not too_long, "\n".join(too_long)


if __name__ == "__main__":
    print(f"import graph depth: {depth()}")
