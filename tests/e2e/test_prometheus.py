"""A real Prometheus (Debian's `prometheus`) scrapes the exporter; PromQL sees the simulator's day.

The simulator is static and the exporter's clock moves with the simulator's: after a first poll
the test moves both one day ahead, so a whole new day of messages appears at once. Prometheus'
`increase()` over a window spanning the jump must equal that day's counts as the official SDK
reads them (up to Prometheus' documented extrapolation to the window edges), and a read-rate
query (read / delivered increase) must equal the day's read / delivered exactly, since the same
extrapolation factor divides out.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from alibabacloud_tea_openapi.utils import Utils

from cams_simulator import Simulator, SimulatorOptions
from exporter.cams.model import DAY_MS
from tests.kit.configs import Account, parsed
from tests.kit.inproc import PolledExporter
from tests.kit.oracle import sdk_client, sdk_sum
from tests.kit.procs import Service, start_prometheus
from tests.kit.sim import day_floor, running
from tests.kit.waits import wait_http, wait_until

SCRAPE_S = 1


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Start Debian's Prometheus (on port 0, read back) scraping a target every SCRAPE_S."""
    started: list[Service] = []

    def start(target: str) -> str:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_S}s\n"
            f"  evaluation_interval: {SCRAPE_S}s\n"
            "scrape_configs:\n"
            "  - job_name: cams\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        prom = start_prometheus(tmp_path / "prometheus.log", config, tmp_path / "data")
        started.append(prom)
        wait_http(f"{prom.url}/-/ready", timeout=60)
        return prom.url

    yield start
    for prom in started:
        prom.stop(timeout=15)


def query(prom: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"query": expr}
    if at is not None:
        params["time"] = at
    body = requests.get(f"{prom}/api/v1/query", params=params, timeout=10).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def by_unit(result: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {
        (r["metric"]["template_code"], r["metric"]["language"]): float(r["value"][1])
        for r in result
    }


def wait_samples(
    prom: str, expr: str, count: int, since: float | None = None, timeout: float = 60
) -> None:
    """Until Prometheus holds `count` samples of every series of `expr` (scraped after the
    moment `since`, when given)."""

    def collected() -> bool:
        window = "5m" if since is None else f"{int(time.time() - since)}s"
        if window == "0s":
            return False
        result = query(prom, f"count_over_time({expr}[{window}])")
        return bool(result) and min(float(r["value"][1]) for r in result) >= count

    wait_until(collected, timeout, f"Prometheus collecting {count} samples of {expr}", every=0.2)


def sdk_day(sim: Simulator, offset_s: float, day_start: int, monkeypatch: Any) -> dict[Any, Any]:
    """What the official SDK reads for one day, signing with the simulator's (shifted) time."""
    shifted = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s)
    monkeypatch.setattr(Utils, "get_timestamp", lambda: shifted.strftime("%Y-%m-%dT%H:%M:%SZ"))
    sdk = sdk_client(sim)
    out = {}
    for t in sim.templates():
        out[(t.code, t.language)] = sdk_sum(sdk, t.code, t.language, day_start, day_start + DAY_MS)
    monkeypatch.undo()
    return out


def test_prometheus_increase_and_read_rate_match_the_simulator(
    prometheus_for: Callable[[str], str], monkeypatch: Any
) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    options = SimulatorOptions(templates=4, static=True, list_qps_limit=50, qps_limit=1000)
    with running(options) as sim:
        poll = {"interval": "10s", "lookback": "2d", "max_range": "5d", "timeout": "5s"}
        with PolledExporter(parsed(Account(sim.url), poll=poll), clock=clock) as instance:
            instance.poll()
            prom = prometheus_for(f"127.0.0.1:{instance.server.port}")
            wait_samples(prom, "cams_template_messages_sent_total", 5)

            offset[0] = 86400.0
            sim.set_clock_offset(offset[0])
            instance.poll()
            jumped = time.time()
            wait_samples(
                prom, "cams_template_messages_sent_total", 6, since=jumped
            )  # of the new day
            at = time.time()
            window = int(at - jumped + 6 * SCRAPE_S)

            new_day = day_floor(int(clock() * 1000))
            truth = sdk_day(sim, offset[0], new_day, monkeypatch)
            assert sum(t.sent for t in truth.values()) > 0

            current = by_unit(query(prom, "cams_template_messages_sent_total", at))
            exported = instance.scrape()
            for (name, labels), value in exported.items():
                d = dict(labels)
                if name == "cams_template_messages_sent_total":
                    assert current[(d["template_code"], d["language"])] == value

            increase = by_unit(
                query(prom, f"increase(cams_template_messages_sent_total[{window}s])", at)
            )
            # Prometheus extrapolates increase() to the window's edges, by at most a sample
            # interval and a bit at each end; it never reports less than the real change.
            stretch = window / (window - 2.2 * SCRAPE_S)
            for unit, day in truth.items():
                assert day.sent <= increase[unit] + 1e-9 <= day.sent * stretch + 1e-6, unit

            rate = by_unit(
                query(
                    prom,
                    f"increase(cams_template_messages_read_total[{window}s])"
                    f" / increase(cams_template_messages_delivered_total[{window}s])",
                    at,
                )
            )
            checked = 0
            for unit, day in truth.items():
                if day.delivered:
                    assert rate[unit] == pytest.approx(day.read / day.delivered, rel=1e-9)
                    checked += 1
            assert checked >= 1
