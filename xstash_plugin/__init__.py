"""xstash: a pytest plugin that runs experiment YAML files through their Hydra tools."""

from __future__ import annotations

__version__ = "0.1.0"
