"""The counter logic's property through the poller (hypothesis), beyond
tests/unit/counting/test_state_properties.py.

`AccountPoller` against real simulators (in-process, static data, loopback): any sequence of
polls, clock moves (day rollovers, folds), restarts from the state file, answer shapes that
change between restarts (per-bucket, sparse, aggregate) and partly failing polls gives counters
that never decrease and, after every fully successful poll, equal the API's sum over origin..now.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cams_simulator import Simulator, SimulatorOptions
from exporter.cams.client import LIST_ACTION, METRIC_ACTION, CamsClient
from exporter.cams.context import AccountContext
from exporter.cams.instruments import Instruments
from exporter.cams.model import DAY_MS
from exporter.cams.ratelimit import RateLimiter
from exporter.cams.retry import RetryPolicy
from exporter.config import StaticCredentials
from exporter.counting.store import CounterStore
from exporter.templates.poller import AccountPoller
from tests.kit.configs import Account, days_back, parsed
from tests.kit.counts import Fields, fields_of_row, nonzero, plus
from tests.kit.sim import SECRET, running

SHAPES = ("per-bucket", "sparse", "aggregate")


@pytest.fixture(scope="module")
def simulators() -> Iterator[dict[str, Simulator]]:
    """Three simulators with the same data, each answering in one shape."""

    def options(shape: str) -> SimulatorOptions:
        return SimulatorOptions(
            templates=2,
            languages=("en",),
            static=True,
            shape=shape,
            access_key_secret=SECRET,
            qps_limit=10_000,
            list_qps_limit=10_000,
        )

    with (
        running(options("per-bucket")) as a,
        running(options("sparse")) as b,
        running(options("aggregate")) as c,
    ):
        yield {"per-bucket": a, "sparse": b, "aggregate": c}


def make_client(sim: Simulator, clock: Any, stop: threading.Event) -> CamsClient:
    return CamsClient(
        endpoint=sim.url,
        credentials=StaticCredentials("demo", SECRET),
        limiters={METRIC_ACTION: RateLimiter(10_000), LIST_ACTION: RateLimiter(10_000)},
        timeout_s=5,
        retry=RetryPolicy(max_retries=0),
        stop=stop,
        clock=clock,
    )


@dataclass
class World:
    """One exporter's view: the moving clock, the store on disk, the current poller."""

    sims: dict[str, Simulator]
    lookback: str
    tmp: Path
    offset_s: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    instruments: Instruments = field(default_factory=Instruments)

    def __post_init__(self) -> None:
        self.state = str(self.tmp / "state.json")
        self.since, self.origin_ms = days_back(3)
        self.store = CounterStore()
        self.shape = "per-bucket"
        self.poller = self.build("per-bucket")

    def clock(self) -> float:
        return time.time() + self.offset_s

    def build(self, shape: str) -> AccountPoller:
        sim = self.sims[shape]
        poll = {"interval": "10s", "lookback": self.lookback, "max_range": "4d"}
        account = Account(sim.url, secret=SECRET, qps=None, list_qps=None)
        config = parsed(account, poll={**poll, "counters_since": self.since})
        self.shape = shape
        client = make_client(sim, self.clock, self.stop)
        context = AccountContext(config.accounts[0], config.poll, client, self.clock)
        return AccountPoller(context, self.store, self.instruments)

    def advance(self, hours: int) -> None:
        self.offset_s += hours * 3600
        for sim in self.sims.values():
            sim.set_clock_offset(self.offset_s)

    def restart(self, shape: str) -> None:
        self.store.save(self.state)
        self.poller.context.client.close()
        self.store, warning = CounterStore.load(self.state)
        assert warning is None
        self.poller = self.build(shape)

    def poll(self, faults: str = "") -> bool:
        sim = self.sims[self.shape]
        sim.set_faults(faults)
        try:
            self.poller.discovery.forget()
            return self.poller.run_cycle(self.stop, 2)
        finally:
            sim.set_faults("")

    def counters(self) -> dict[tuple[str, str], Fields]:
        out = {}
        for series in self.poller.series():
            c = series.counts
            f: Fields = {"sent": c.sent, "delivered": c.delivered, "read": c.read}
            for button_type, button, count in c.clicks:
                f[(button_type, button)] = count
            out[(series.key.template_code, series.key.language)] = nonzero(f)
        return out

    def truth(self) -> dict[tuple[str, str], Fields]:
        """The API's sum over origin..now, read day by day from the per-bucket simulator."""
        sim = self.sims["per-bucket"]
        client = make_client(sim, self.clock, self.stop)
        now_ms = int(self.clock() * 1000)
        out = {}
        try:
            for template in sim.templates():
                rows = client.template_metrics(
                    code=template.code,
                    language=template.language,
                    start_ms=self.origin_ms,
                    end_ms=now_ms,
                    max_range_ms=4 * DAY_MS,
                    cust_space_id="cams-demo",
                )
                total: Fields = {}
                for r in rows:
                    total = plus(total, fields_of_row(r))
                out[(template.code, template.language)] = nonzero(total)
        finally:
            client.close()
        return out

    def close(self) -> None:
        self.poller.context.client.close()
        for sim in self.sims.values():
            sim.set_clock_offset(0)
            sim.set_faults("")


step_st = st.one_of(
    st.tuples(st.just("advance"), st.integers(1, 40)),
    st.tuples(st.just("poll"), st.just(0)),
    st.tuples(st.just("restart"), st.integers(0, len(SHAPES) - 1)),
    st.tuples(st.just("faulty poll"), st.integers(0, 10_000)),
)


@settings(
    max_examples=int(os.environ.get("PROP_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.sampled_from(SHAPES),
    lookback=st.sampled_from(["1d", "2d"]),
    steps=st.lists(step_st, min_size=1, max_size=10),
)
def test_poller_counters_are_exact_through_polls_clock_moves_restarts_and_shape_changes(
    simulators: dict[str, Simulator],
    first: str,
    lookback: str,
    steps: list[tuple[str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = World(simulators, lookback, Path(tmp))
        try:
            world.restart(first)
            previous: dict[tuple[str, str], Fields] = {}
            for kind, arg in [*steps, ("poll", 0)]:
                ok = True
                if kind == "advance":
                    world.advance(arg)
                elif kind == "restart":
                    world.restart(SHAPES[arg])
                elif kind == "faulty poll":
                    world.poll(f"5xx=0.3,reset=0.2,malformed=0.2,seed={arg}")
                else:
                    ok = world.poll()
                    assert ok, "a poll without faults failed"
                now = world.counters()
                for unit, before in previous.items():
                    after = now.get(unit, {})
                    assert all(after.get(f, 0) >= v for f, v in before.items()), (
                        f"{kind}: a counter of {unit} went down"
                    )
                if kind == "poll":
                    assert now == world.truth(), f"not exact after {steps}"
                previous = now
        finally:
            world.close()
