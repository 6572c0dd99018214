"""Writes prometheusrule.yaml (and every other generated rule file and dashboard): the command
the docs have named since before the mixin; it runs `python -m mixin.generate`, which generates
them from mixin/config.yml and the sources in mixin/rules and mixin/dashboards."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mixin.generate import main

if __name__ == "__main__":
    sys.exit(main([]))
