"""The small exception hierarchy xstash renders as plain messages (never a plugin traceback)."""

from __future__ import annotations

from pathlib import Path


class XstashError(Exception):
    """Base class: the message is complete and meant for a person."""


class ConfigError(XstashError):
    """A problem in a YAML file (experiment or meta.yaml), located by file and line."""

    def __init__(self, path: Path | str, line: int | None, what: str, fix: str = "") -> None:
        self.path = str(path)
        self.line = line
        self.what = what
        self.fix = fix
        super().__init__(self.render())

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def render(self) -> str:
        msg = f"{self.location}: {self.what}"
        if self.fix:
            msg += f"\n  fix: {self.fix}"
        return msg


class ConfigErrors(XstashError):
    """Several problems found in one file; all are reported at once."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))


class EnvError(XstashError):
    """A tool's environment could not be prepared (e.g. ``uv sync`` failed)."""


class RunFailed(XstashError):
    """The tool ran and failed; the message is the whole failure report."""


class XstashWarning(UserWarning):
    """Warnings about configs that are valid but probably not what was meant."""
