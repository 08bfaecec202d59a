"""This session's results of seed runs, where every pytest-xdist worker (and the controller)
can read them: one small JSON file per seed item under ``<output root>/.xstash/sessions/<session
id>/``, written when the seed's result is known. A seeded point's aggregate item reads its seeds'
results from here, whichever worker ran them; the controller removes the folder at the end.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from xstash_plugin.fsutil import atomic_write


class SessionResults:
    """Result rows of this session's seed runs, by node id."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, nodeid: str) -> Path:
        return self.folder / f"{hashlib.sha256(nodeid.encode()).hexdigest()[:32]}.json"

    def put(self, nodeid: str, row: dict[str, Any]) -> None:
        """Keep ``row`` for ``nodeid``; a disk that refuses it leaves the aggregate to report
        the seed as having no result."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(self._path(nodeid), json.dumps(row, default=str))
        except OSError:
            pass

    def get(self, nodeid: str) -> dict[str, Any] | None:
        try:
            row = json.loads(self._path(nodeid).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return row if isinstance(row, dict) and row.get("id") == nodeid else None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
