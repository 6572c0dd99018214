"""Suite-wide setup: compiled bytecode cached outside the tree even where the environment
forbids writing it, made once before the workers start, and the slowest modules scheduled first.

The suite starts about 100 Python processes (exporters, simulators, check-config runs) and six
xdist workers that each rewrite and import every test module. With PYTHONDONTWRITEBYTECODE set
(as in some containers, to keep source trees free of `__pycache__`), every one of them compiles
the exporter and the tests from source again: about 3 s of CPU per worker and 0.1 s per child.
So when it is set, this process and its children cache bytecode under the temporary directory
instead (PYTHONPYCACHEPREFIX), which keeps the tree as clean as the setting meant to.

On a fresh checkout nothing is cached yet, and the six workers would all rewrite the test
modules' asserts and compile the tree at once: collection took 8.3 s of CPU per worker there
against 4.1 s once cached (`pytest --collect-only -p no:xdist`, twice in a new clone). So the
controller does it once, before it starts them (`_warm_bytecode`).
"""

from __future__ import annotations

import compileall
import os
import re
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
SLOWEST = (  # by their time in a six-worker run on two cores, 53-69 s for the first seven
    "test_rules.py",
    "test_variants.py",
    "test_restarts.py",
    "test_config_fuzz.py",
    "test_dashboards.py",
    "test_faults.py",
    "test_docker.py",
    "test_reload_storm.py",
    "test_probe.py",
    "test_read_window.py",
    "test_exporter.py",
    "test_bench_smoke.py",
    "test_number_counters.py",
    "test_prometheus.py",
    "test_backfill.py",
    "test_senders.py",
    "test_client.py",
    "test_properties.py",
    "test_config.py",
    "test_cli.py",
)


def _warm_bytecode(config: pytest.Config) -> None:
    """Compile the tree and write pytest's assert-rewritten test modules, as a worker would.

    Uses pytest's rewriting functions (not public API): where they are missing or fail, each
    worker simply does the work itself, as before.
    """
    root = Path(__file__).resolve().parent.parent
    test_module = re.compile(r"/test_[^/]*\.py$")  # these pytest rewrites, below
    for folder in ("exporter", "tests", "bench"):
        compileall.compile_dir(root / folder, quiet=1, rx=test_module)
    try:
        from _pytest.assertion import rewrite

        state = config.stash[rewrite.assertstate_key]
        for source in sorted((root / "tests").glob("test_*.py")):
            cache_dir = rewrite.get_cache_dir(source)
            cache_dir.mkdir(parents=True, exist_ok=True)
            pyc = cache_dir / (source.name[:-3] + rewrite.PYC_TAIL)
            if rewrite._read_pyc(source, pyc, state.trace) is None:
                source_stat, code = rewrite._rewrite_test(source, config)
                rewrite._write_pyc(state, code, source_stat, pyc)
    except Exception:  # only an optimisation: the workers rewrite what is missing
        pass


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "dist", "no") == "loadfile":
        config.option.loadscopereorder = False  # keep the order below
    workers = getattr(config.option, "numprocesses", None)
    if workers and not hasattr(config, "workerinput") and not sys.dont_write_bytecode:
        _warm_bytecode(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Counter(item.path.name for item in items)

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        name = item.path.name
        slow = SLOWEST.index(name) if name in SLOWEST else len(SLOWEST)
        return slow, -tests[name], name

    items.sort(key=rank)  # stable: the order within a module stays
