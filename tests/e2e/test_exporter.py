"""The exporter end to end over real HTTP: exact counters for every shape, restarts, growth."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from cams_simulator import Simulator, SimulatorOptions
from exporter.cams.model import DAY_MS
from exporter.config import Config
from tests.kit.configs import Account, days_back, parsed
from tests.kit.exact import assert_exact
from tests.kit.inproc import PolledExporter
from tests.kit.series import Series
from tests.kit.sim import day_floor, running

Start = Callable[..., PolledExporter]


def make_config(
    sim: Simulator,
    *,
    state: Path | None = None,
    since: dt.date | None = None,
    lookback: str = "3d",
    max_range: str = "5d",
    granularity: str = "DAILY",
) -> Config:
    poll: dict[str, object] = {"interval": "10s", "granularity": granularity}
    poll |= {"lookback": lookback, "max_range": max_range, "timeout": "5s"}
    if since is not None:
        poll["counters_since"] = since
    return parsed(Account(sim.url), poll=poll, state=state)


def static_simulator(templates: int) -> contextlib.AbstractContextManager[Simulator]:
    """A static simulator of `templates` templates that never throttles these tests."""
    return running(
        SimulatorOptions(templates=templates, static=True, list_qps_limit=50, qps_limit=1000)
    )


@pytest.fixture
def started() -> Iterator[Start]:
    instances: list[PolledExporter] = []

    def start(config: Config, clock: Callable[[], float] = time.time) -> PolledExporter:
        instance = PolledExporter(config, clock=clock)
        instances.append(instance)
        return instance

    yield start
    for instance in instances:
        instance.close()


@pytest.mark.parametrize("shape", ["per-bucket", "aggregate", "utc8", "sparse"])
def test_counters_are_exact_for_every_shape_and_survive_restarts(
    shape: str, tmp_path: Path, started: Start
) -> None:
    since, origin = days_back(8)
    state = tmp_path / "state.json"
    options = SimulatorOptions(
        templates=5, static=True, shape=shape, list_qps_limit=50, qps_limit=1000
    )
    with running(options) as sim:
        first = started(make_config(sim, state=state, since=since))
        for _ in range(3):
            first.poll()
        before = first.scrape()
        assert_exact(sim, before, origin)
        shapes = {dict(k[1]).get("shape") for k in before if k[0] == "cams_metric_shape_info"}
        assert shapes == {"aggregate" if shape == "aggregate" else "per-bucket"}
        first.close()
        assert state.exists()

        # Restart from state: the same values at once, before any poll, and after one.
        second = started(make_config(sim, state=state, since=since))
        resumed = second.scrape()
        for key, value in before.items():
            if key[0].startswith("cams_template_") and key[0].endswith("_total"):
                assert resumed[key] == value, key
        second.poll()
        assert_exact(sim, second.scrape(), origin)

        # No state but a fixed origin: a backfill in max_range chunks gives the same counters.
        third = started(make_config(sim, since=since))
        third.poll()
        assert_exact(sim, third.scrape(), origin)


@pytest.mark.parametrize("shape", ["per-bucket", "aggregate"])
def test_half_hour_granularity_is_exact_too(shape: str, started: Start) -> None:
    since, origin = days_back(4)
    options = SimulatorOptions(
        templates=3, static=True, shape=shape, list_qps_limit=50, qps_limit=1000
    )
    with running(options) as sim:
        instance = started(make_config(sim, since=since, granularity="HALF_HOUR"))
        instance.poll()
        instance.poll()
        series = instance.scrape()
        assert_exact(sim, series, origin, granularity="HALF_HOUR")
        buckets = [len(u.buckets) for k, u in instance.exporter.store if k.account == "main"]
        if shape == "per-bucket":
            assert max(buckets) > 48  # half-hour buckets of the live window


def test_aggregate_shape_is_detected_even_with_a_short_lookback(
    started: Start,
) -> None:
    options = SimulatorOptions(
        templates=2, static=True, shape="aggregate", list_qps_limit=50, qps_limit=1000
    )
    with running(options) as sim:
        instance = started(make_config(sim, lookback="1d"))
        instance.poll()
        instance.poll()
        series = instance.scrape()
        assert ("cams_metric_shape_info", (("account", "main"), ("shape", "aggregate"))) in series
        assert_exact(sim, series, day_floor(int(time.time() * 1000)) - DAY_MS)


def test_without_origin_counters_start_at_the_first_lookback_window(
    started: Start,
) -> None:
    with static_simulator(3) as sim:
        instance = started(make_config(sim, lookback="2d"))
        instance.poll()
        origin = day_floor(int(time.time() * 1000)) - 2 * DAY_MS
        assert_exact(sim, instance.scrape(), origin)


def test_live_counters_never_decrease_over_many_polls(started: Start) -> None:
    """Late reads and growing days, with exporter and simulator clocks moved 7h per poll."""
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    with running(SimulatorOptions(templates=4, list_qps_limit=50, qps_limit=1000)) as sim:
        instance = started(make_config(sim, lookback="2d"), clock=clock)
        previous: Series = {}
        grew = 0
        for _ in range(14):
            instance.poll()
            series = instance.scrape()
            for key, value in series.items():
                if key[0].endswith("_total") and key[0].startswith("cams_template_"):
                    assert value >= previous.get(key, 0), key
                    grew += value > previous.get(key, 0)
            previous = series
            offset[0] += 7 * 3600
            sim.set_clock_offset(offset[0])
        assert grew > 20
        held = [v for (n, _), v in previous.items() if n == "cams_downward_revisions_held_total"]
        assert held == [0]


def test_new_template_shows_zero_series_before_its_first_read(
    started: Start,
) -> None:
    with static_simulator(2) as sim:
        instance = started(make_config(sim))
        poller = instance.exporter.scheduler
        poller.accounts[0].refresh_units()
        poller.publish()
        series = instance.scrape()
        sent = [v for (n, _), v in series.items() if n == "cams_template_messages_sent_total"]
        assert len(sent) == 4 and set(sent) == {0.0}
        info = [k for k in series if k[0] == "cams_template_info"]
        assert len(info) == 4


def test_a_vanished_template_is_kept_until_a_second_discovery(
    started: Start,
) -> None:
    with static_simulator(3) as sim:
        config = make_config(sim)
        instance = started(config)
        instance.poll()
        gone = sim.templates()[0].code
        sim.delete_template(gone)
        account = instance.exporter.scheduler.accounts[0]

        def codes() -> set[str]:
            account.discovery.forget()  # run discovery now instead of after discovery_interval
            account.refresh_units()
            return {k.template_code for k in (u.key for u in account.discovery.units())}

        assert gone in codes()  # first discovery without it: kept
        assert gone not in codes()  # second: gone
        sim.restore_template(gone)
        assert gone in codes()


def test_exposition_passes_promtool(started: Start) -> None:
    with static_simulator(3) as sim:
        instance = started(make_config(sim))
        instance.poll()
        plain = requests.get(f"{instance.url}/metrics", timeout=10)
        # The format asked for, under a Content-Type that does not move with client_python.
        assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        body = plain.content
        assert b"\nprocess_open_fds " in body and b"\nprocess_max_fds " in body
        result = subprocess.run(
            ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30
        )
        assert result.returncode == 0, result.stdout + result.stderr
        # promtool reads only the text format; the OpenMetrics form must satisfy the strict
        # OpenMetrics parser (one # EOF at the very end, _total names, no duplicate families).
        om = requests.get(
            f"{instance.url}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=10,
        )
        assert om.headers["Content-Type"] == (
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        )
        assert om.text.endswith("# EOF\n") and om.text.count("# EOF") == 1
        om_names = {f.name for f in openmetrics_families(om.text)}
        assert {"cams_template_messages_sent", "cams_api_requests", "process_open_fds"} <= om_names
        text = requests.get(f"{instance.url}/metrics", timeout=10).text
        for name in (
            "cams_api_requests_total",
            "cams_api_request_duration_seconds_bucket",
            "cams_up",
            "cams_poll_last_success_timestamp_seconds",
            "cams_template_newest_data_timestamp_seconds",
            "cams_templates_discovered",
            "cams_downward_revisions_held_total",
            "cams_exporter_build_info",
            "cams_template_info",
        ):
            assert f"\n{name}{{" in text, name


def test_gzip_scrape_decodes_to_the_plain_body(started: Start) -> None:
    with static_simulator(2) as sim:
        instance = started(make_config(sim))
        instance.poll()
        zipped = requests.get(
            f"{instance.url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=10
        )
        assert zipped.headers["Content-Encoding"] == "gzip"
        families = list(text_string_to_metric_families(zipped.text))
        names = {f.name for f in families}
        assert "cams_template_messages_sent" in names
        assert "cams_api_requests" in names  # the live part, a second gzip member
