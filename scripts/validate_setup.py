#!/usr/bin/env python3
"""Validate the setup: validate_setup.py [--list-configs] [--tool NAME]."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # works from a checkout even before `pip install -e .`

from xstash_plugin.cli import validate_setup_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(validate_setup_main(root=ROOT))
