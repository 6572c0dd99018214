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
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from alibabacloud_tea_openapi.utils import Utils

from exporter.model import DAY_MS
from exporter.simulator import Simulator, SimulatorOptions
from tests.kit.sim import day_floor, free_port, running, sdk_client, sdk_sum, wait_http
from tests.test_exporter import Running, make_config

SCRAPE_S = 1


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_S}s\n"
            f"  evaluation_interval: {SCRAPE_S}s\n"
            "scrape_configs:\n"
            "  - job_name: cams\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        processes.append(
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready", timeout=60)
        return url

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


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


def wait_samples(prom: str, expr: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(prom, f"count_over_time({expr}[5m])")
        if result and min(float(r["value"][1]) for r in result) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus did not collect {count} samples of {expr}")


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
    prometheus_for: Any, monkeypatch: Any
) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    options = SimulatorOptions(templates=4, static=True, list_qps_limit=50, qps_limit=1000)
    with running(options) as sim:
        instance = Running(make_config(sim, lookback="2d"), clock=clock)
        try:
            instance.poll()
            prom = prometheus_for(f"127.0.0.1:{instance.server.port}")
            wait_samples(prom, "cams_template_messages_sent_total", 5)

            offset[0] = 86400.0
            sim.set_clock_offset(offset[0])
            instance.poll()
            jumped = time.time()
            time.sleep(6 * SCRAPE_S)
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
        finally:
            instance.close()
