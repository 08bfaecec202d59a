"""Which files are experiments, and which folders a walk over a tool or a repository skips.

Below a configs root, a file or folder whose name starts with ``_`` is a shared fragment (Hydra
configs an experiment's ``defaults:`` can name), never an experiment, and so is everything
inside such a folder.
"""

from __future__ import annotations

from collections.abc import Iterable

SUFFIXES = (".yaml", ".yml")  # of config files: experiments, fragments, meta.yaml

# Folders no walk over a tool's or the repository's files looks into: environments and caches.
SKIP_DIRS = frozenset(
    {
        ".venv",
        "venv",
        "__pycache__",
        ".git",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "node_modules",
        ".ipynb_checkpoints",
    }
)


def is_fragment(name: str) -> bool:
    """Whether the file or folder ``name`` is a shared fragment, not an experiment."""
    return name.startswith("_")


def in_fragment(parts: Iterable[str]) -> bool:
    """Whether a path (its ``parts`` below a configs root) is or is inside a fragment."""
    return any(is_fragment(part) for part in parts)
