"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.kit.backfilled import Prometheus


@pytest.fixture
def prometheus_on(tmp_path: Path) -> Iterator[Callable[[Path, str], Prometheus]]:
    """Debian's Prometheus on a data directory, scraping one target; stopped after the test."""
    started: list[Prometheus] = []

    def make(data: Path, target: str) -> Prometheus:
        prom = Prometheus(tmp_path, data, target)
        started.append(prom)
        return prom

    yield make
    for prom in started:
        prom.stop()
