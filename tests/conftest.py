"""Suite-wide setup: each test's kind from its folder, compiled bytecode cached outside the tree
even where the environment forbids writing it, and the slowest modules scheduled first.

A test's kind is the folder it is in, and gets the marker of that name: `tests/unit/` (no
sockets, no child processes: tests/unit/conftest.py refuses both), `tests/e2e/` (real HTTP,
child processes, the official SDK over the simulator, a real Prometheus) and `tests/artifacts/`
(what ships beside the code: rules, dashboards, deploy/, the Dockerfile, the bench smoke run).
So `pytest -m unit` is the inner loop. A test module outside those three folders is refused at
collection: move it to the folder of its kind (docs/testing.md).

The suite starts about 100 Python processes (exporters, simulators, check-config runs) and six
xdist workers that each rewrite and import every test module. With PYTHONDONTWRITEBYTECODE set
(as in some containers, to keep source trees free of `__pycache__`), every one of them compiles
the exporter and the tests from source again: about 3 s of CPU per worker and 0.1 s per child.
So when it is set, this process and its children cache bytecode under the temporary directory
instead (PYTHONPYCACHEPREFIX), which keeps the tree as clean as the setting meant to.

On a fresh checkout nothing is cached yet, and each worker rewrites the asserts of the test
modules it collects (pytest offers no public way to do that once for all of them; compiling the
rest of the tree first saves nothing measurable): collection took 4.6-5.3 s of CPU in a new
clone against 2.7-3.3 s once cached (`pytest --collect-only -q -p no:xdist`, twice, two clones),
about 2 s of CPU per worker, paid once per checkout.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

# Go's collector at GOGC=400 for every Go child of the tests (Debian's prometheus and promtool,
# helm): their data here is small, so the heap stays small, and collecting a quarter as often
# took tests/e2e/test_backfill_baselines.py from 80 s of CPU to 48-60 (a test may set its own).
os.environ.setdefault("GOGC", "400")

if sys.dont_write_bytecode:
    _PREFIX = os.environ.get("PYTHONPYCACHEPREFIX") or str(
        Path(tempfile.gettempdir()) / "cams-exporter-pycache"
    )
    sys.pycache_prefix = _PREFIX
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = _PREFIX

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "e2e", "artifacts")  # each a folder of tests/ and a marker (pyproject.toml)

# The slowest modules, longest first: with `--dist loadfile` each goes to one worker, and started
# first they run while the short ones fill the other workers, instead of one of them starting
# last and keeping a single worker busy at the end (longest-processing-time-first). Every other
# module follows, most tests first (xdist's own order). A module that grows slow belongs here.
SLOWEST = (  # by their time in a six-worker run on two cores, 53-69 s for the first seven
    "artifacts/test_rules.py",
    "e2e/test_backfill_baselines.py",
    "e2e/test_variants.py",
    "e2e/test_restarts.py",
    "e2e/test_check_config.py",
    "artifacts/test_dashboards.py",
    "e2e/test_faults.py",
    "artifacts/test_docker.py",
    "e2e/test_reload_storm.py",
    "e2e/test_probe.py",
    "e2e/test_read_window.py",
    "e2e/test_exporter.py",
    "artifacts/test_bench_smoke.py",
    "e2e/test_number_counters.py",
    "e2e/test_prometheus.py",
    "e2e/test_backfill.py",
    "e2e/test_senders.py",
    "e2e/test_client.py",
    "e2e/test_poller_properties.py",
    "e2e/test_cli.py",
)


def kind_of(path: Path) -> str | None:
    """The kind of the test module at `path`: the folder of tests/ it is in (None: none)."""
    try:
        folder = path.resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return folder if folder in KINDS else None


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "dist", "no") == "loadfile":
        config.option.loadscopereorder = False  # keep the order below


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With `-m unit` alone, the e2e and artifacts folders are not even imported.

    Every test there carries its folder's marker, so `-m unit` would deselect all of them, after
    importing their modules (the official SDK, the kit's process helpers): 2.6 s of the inner
    loop's 3.4 s of collection.
    """
    if config.getoption("markexpr", "").strip() != "unit":
        return None
    kind = kind_of(collection_path)
    return True if kind is not None and kind != "unit" else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    homeless: set[str] = set()
    for item in items:
        kind = kind_of(item.path)
        if kind is None:
            homeless.add(str(item.path))
        else:
            item.add_marker(kind)
    if homeless:
        raise pytest.UsageError(
            "test modules outside tests/unit, tests/e2e and tests/artifacts (move each to the "
            "folder of its kind, see docs/testing.md): " + ", ".join(sorted(homeless))
        )
    tests = Counter(item.path for item in items)

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        name = item.path.resolve().relative_to(TESTS).as_posix()
        slow = SLOWEST.index(name) if name in SLOWEST else len(SLOWEST)
        return slow, -tests[item.path], name

    items.sort(key=rank)  # stable: the order within a module stays
