"""The lab's own pytest hooks and fixtures go here.

xstash registers itself through its ``pytest11`` entry point when installed
(``pip install -e .``). Run from a checkout where it is not installed (or with
``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``), this file loads it instead, and never both: a plugin
registered twice is an error in pytest.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points


def _loaded_by_entry_point() -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == "xstash_plugin.plugin" for ep in entry_points(group="pytest11"))


if not _loaded_by_entry_point():
    pytest_plugins = ["xstash_plugin.plugin"]
