"""Suite-wide setup: compiled bytecode cached outside the tree even where the environment
forbids writing it, and the slowest modules scheduled first.

The suite starts about 150 Python processes (exporters, simulators, check-config runs) and four
xdist workers that each rewrite and import every test module. With PYTHONDONTWRITEBYTECODE set
(as in some containers, to keep source trees free of `__pycache__`), every one of them compiles
the exporter and the tests from source again: about 3 s of CPU per worker and 0.1 s per child.
So when it is set, this process and its children cache bytecode under the temporary directory
instead (PYTHONPYCACHEPREFIX), which keeps the tree as clean as the setting meant to.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

if sys.dont_write_bytecode:
    _PREFIX = os.environ.get("PYTHONPYCACHEPREFIX") or str(
        Path(tempfile.gettempdir()) / "cams-exporter-pycache"
    )
    sys.pycache_prefix = _PREFIX
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = _PREFIX


# The slowest modules, longest first: with `--dist loadfile` each goes to one worker, and started
# first they run while the short ones fill the other workers, instead of one of them starting
# last and keeping a single worker busy at the end (longest-processing-time-first). Every other
# module follows, most tests first (xdist's own order). A module that grows slow belongs here.
SLOWEST = (
    "test_variants.py",
    "test_restarts.py",
    "test_faults.py",
    "test_rules.py",
    "test_docker.py",
    "test_config_fuzz.py",
    "test_probe.py",
    "test_exporter.py",
    "test_reload_storm.py",
    "test_dashboards.py",
    "test_cli.py",
    "test_prometheus.py",
    "test_bench_smoke.py",
    "test_properties.py",
)


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "dist", "no") == "loadfile":
        config.option.loadscopereorder = False  # keep the order below


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Counter(item.path.name for item in items)

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        name = item.path.name
        slow = SLOWEST.index(name) if name in SLOWEST else len(SLOWEST)
        return slow, -tests[name], name

    items.sort(key=rank)  # stable: the order within a module stays
