"""Simulators for tests: in the test's process (`running`) or as a child (`simulator_process`),
both on an ephemeral loopback port; `secret_options` for one that knows only a recognisable
secret, which `assert_no_secret` looks for wherever the exporter writes."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cams_simulator import Simulator, SimulatorOptions
from exporter.cams.model import DAY_MS
from tests.kit.procs import SimulatorProcess, ahead_of_the_load, start_simulator

SECRET = "S3CR3T-cams-test-7f3a"


def secret_options(**overrides: Any) -> SimulatorOptions:
    """A small static simulator that knows only the recognisable `SECRET`."""
    values: dict[str, Any] = {
        "templates": 2,
        "static": True,
        "access_key_secret": SECRET,
        "qps_limit": 1000,
        "list_qps_limit": 50,
        "timeout_fault_s": 1.5,
    }
    values.update(overrides)
    return SimulatorOptions(**values)


def assert_no_secret(text: str, where: str, secret: str = SECRET) -> None:
    """Fail without echoing `text` (pytest would print the haystack, secret included)."""
    if secret in text:
        raise AssertionError(f"the secret is in {where}")


@pytest.fixture
def no_secret_in_test_output(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """After the test, its captured output holds no `SECRET` (then it is shown as usual). Import
    it into a test module with `autouse` semantics by `pytestmark = usefixtures(...)`."""
    yield
    out, err = capfd.readouterr()
    assert_no_secret(out + err, "the test's output")
    sys.stdout.write(out)
    sys.stderr.write(err)


SimFactory = Callable[..., Simulator]


@contextlib.contextmanager
def simulators(**defaults: Any) -> Iterator[SimFactory]:
    """A factory of simulators on free ports (`defaults` under each call's options); every one
    it started is stopped on exit."""
    started: list[Simulator] = []

    def make(**options: Any) -> Simulator:
        sim = Simulator(SimulatorOptions(**{**defaults, **options}))
        sim.start()
        started.append(sim)
        return sim

    try:
        yield make
    finally:
        for sim in started:
            sim.stop()


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
def simulator_process(*flags: str, log_dir: Path | None = None) -> Iterator[SimulatorProcess]:
    """`cams-exporter simulate` in its own process, on port 0: a measuring instrument (its
    1-second windows of arrivals). It shares no GIL with the test, and runs at a higher
    scheduling priority where allowed, so that on a loaded machine it stamps a request when the
    request arrives rather than when the scheduler gets round to its thread (the exporter's
    limiter leaves 30 ms of slack a second)."""
    with contextlib.ExitStack() as stack:
        where = log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sim = start_simulator(where / "simulator.log", *flags, preexec=ahead_of_the_load)
        stack.callback(sim.stop)
        yield sim  # it logs its URL once it serves


class SimulatedTime:
    """A clock the test moves: the exporter's (pass the instance as its clock), and the moment
    the simulator serves its counts as of (pinned). The simulator's signature window follows
    it too, except inside `oracle()`, where the official SDK, which signs with the wall clock,
    reads the very same counts."""

    def __init__(self, sim: Simulator, start: float) -> None:
        self.sim, self.now = sim, start
        self.sync()

    def __call__(self) -> float:
        return self.now

    def sync(self) -> None:
        self.sim.pin_clock(self.now)
        self.sim.set_clock_offset(self.now - time.time())  # the exporter's signatures

    def at(self, moment: float) -> None:
        """Move to `moment` (never back)."""
        assert moment >= self.now
        self.now = moment
        self.sync()

    @contextlib.contextmanager
    def oracle(self) -> Iterator[None]:
        """The simulator's signature window on the wall clock while the SDK reads."""
        self.sim.set_clock_offset(0)
        try:
            yield
        finally:
            self.sync()


def day_floor(ms: int) -> int:
    """Start of the UTC day containing `ms`."""
    return ms - ms % DAY_MS
