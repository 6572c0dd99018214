"""Simulators for tests: in the test's process (`running`) or as a child (`simulator_process`),
both on an ephemeral loopback port."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from exporter.model import DAY_MS
from exporter.simulator import Simulator, SimulatorOptions
from tests.kit.procs import Service, start_simulator


@contextlib.contextmanager
def running(options: SimulatorOptions) -> Iterator[Simulator]:
    """A simulator on an ephemeral loopback port for the duration of a with-block."""
    sim = Simulator(options)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@contextlib.contextmanager
def simulator_process(*flags: str, log_dir: Path | None = None) -> Iterator[Service]:
    """`cams-exporter simulate` in its own process (no GIL shared with the test), on port 0."""
    with contextlib.ExitStack() as stack:
        where = log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sim = start_simulator(where / "simulator.log", *flags)
        stack.callback(sim.stop)
        yield sim  # it logs its URL once it serves


def day_floor(ms: int) -> int:
    """Start of the UTC day containing `ms`."""
    return ms - ms % DAY_MS
