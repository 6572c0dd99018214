"""What the backfill tests share: the simulator's static history, `cams-exporter backfill` and
`promtool` as a user runs them, the official SDK's daily rows as the truth, and Debian's
Prometheus on the backfilled blocks (tests/e2e/test_backfill.py, test_backfill_baselines.py)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from alibabacloud_cams20200606 import models
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from cams_simulator import Simulator
from exporter.cams.model import DAY_MS
from tests.kit.configs import Account, days_back, write_config
from tests.kit.oracle import QUICK, SPACE, sdk_client
from tests.kit.procs import Service, child_env, start_prometheus
from tests.kit.waits import wait_http

DAYS = 30
SCRAPE_S = 1
READ_WINDOW_MS = 7 * DAY_MS
COUNTERS = ("sent", "delivered", "read")
STATIC: dict[str, Any] = {
    "templates": 3,
    "languages": ("en", "es"),
    "static": True,
    "history_s": DAYS * 86400.0,
    "qps_limit": 1000,
    "list_qps_limit": 50,
}


def backfill(*flags: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m exporter backfill FLAGS` as a user runs it."""
    argv = [sys.executable, "-m", "exporter", "backfill", *flags]
    return subprocess.run(
        argv, env=child_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def promtool(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def config_for(tmp: Path, endpoint: str, **extra: Any) -> Path:
    since, _ = days_back(DAYS)
    poll = {"interval": "10s", "lookback": "8d", "timeout": "5s", "counters_since": since}
    return write_config(tmp / "config.yml", Account(endpoint), poll=poll, **extra)


def parsed_file(path: Path) -> dict[str, Any]:
    """The file's families, read by client_python's strict OpenMetrics parser."""
    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


def series_of(family: Any, *, value_of: str = "") -> dict[tuple[str, ...], list[tuple[int, float]]]:
    """(template_code, language[, label]) -> [(ms, value), ...] of one parsed family."""
    out: dict[tuple[str, ...], list[tuple[int, float]]] = {}
    for sample in family.samples:
        key = (sample.labels["template_code"], sample.labels["language"])
        if value_of:
            key = (*key, sample.labels[value_of])
        at = round(float(sample.timestamp) * 1000)
        out.setdefault(key, []).append((at, sample.value))
    return out


@dataclass
class Day:
    sent: int
    delivered: int
    read: int
    clicks: dict[str, int]


def sdk_days(sim: Simulator, start_ms: int, end_ms: int) -> dict[tuple[str, str], dict[int, Day]]:
    """The official SDK's daily rows of every unit: (code, language) -> {day start: Day}."""
    sdk = sdk_client(sim)
    out: dict[tuple[str, str], dict[int, Day]] = {}
    for t in sim.templates():
        days: dict[int, Day] = {}
        for lower in range(start_ms, end_ms, 30 * DAY_MS):  # the simulator's longest range
            request = models.GetChatappTemplateMetricRequest(
                template_code=t.code,
                language=t.language,
                cust_space_id=SPACE,
                template_type="WHATSAPP",
                granularity="DAILY",
                start=lower,
                end=min(end_ms, lower + 30 * DAY_MS),
            )
            for row in sdk.get_chatapp_template_metric(request).body.data or []:
                clicks: dict[str, int] = {}
                for click in row.cliented or []:
                    kind = QUICK.get(click.type, click.type.removesuffix("_button"))
                    key = f"{kind}/{click.button_content}"
                    clicks[key] = clicks.get(key, 0) + (click.count or 0)
                days[row.start] = Day(row.sent_count, row.delivered_count, row.read_count, clicks)
        out[(t.code, t.language)] = days
    return out


# -- Prometheus ------------------------------------------------------------------------------


class Prometheus:
    """Debian's Prometheus on a data directory holding the backfilled blocks, scraping the live
    exporter; stopped and started again to load more blocks."""

    def __init__(self, tmp: Path, data: Path, target: str) -> None:
        self.tmp, self.data = tmp, data
        self.config = tmp / "prometheus.yml"
        self.config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_S}s\n"
            "scrape_configs:\n"
            "  - job_name: cams\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.service: Service | None = None
        self.starts = 0

    def start(self) -> str:
        self.starts += 1  # a log each: the port is read from the log's first "Listening" line
        self.service = start_prometheus(
            self.tmp / f"prometheus-{self.starts}.log",
            self.config,
            self.data,
            f"--storage.tsdb.retention.time={DAYS + 30}d",
        )
        wait_http(f"{self.service.url}/-/ready", timeout=60)
        return self.service.url

    @property
    def url(self) -> str:
        assert self.service is not None
        return self.service.url

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(timeout=15)
            self.service = None

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        assert self.service is not None
        params = {"query": expr, "time": f"{at:.3f}"}
        body = requests.get(f"{self.service.url}/api/v1/query", params=params, timeout=30).json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def by_unit(self, expr: str, at: float) -> dict[tuple[str, str], float]:
        return {
            (r["metric"]["template_code"], r["metric"]["language"]): float(r["value"][1])
            for r in self.query(expr, at)
        }

    def range_by_unit(
        self, expr: str, start_ms: int, end_ms: int, step: str = "1d"
    ) -> dict[tuple[str, str], dict[int, float]]:
        assert self.service is not None
        params = {"query": expr, "start": start_ms / 1000, "end": end_ms / 1000, "step": step}
        body = requests.get(
            f"{self.service.url}/api/v1/query_range", params=params, timeout=30
        ).json()
        assert body["status"] == "success", body
        return {
            (r["metric"]["template_code"], r["metric"]["language"]): {
                round(float(t) * 1000): float(v) for t, v in r["values"]
            }
            for r in body["data"]["result"]
        }
