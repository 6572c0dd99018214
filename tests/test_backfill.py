"""`cams-exporter backfill` end to end, with real parts: the simulator with 30 days of static
history, the command as a user runs it, `promtool tsdb create-blocks-from openmetrics`, Debian's
Prometheus started on those blocks and then scraping the live exporter, and the official SDK's
daily rows as the truth.

A proxy in front of the simulator plays the reset Meta documents (reads and clicks of a day
answered as 0 once it is past the 7-day read window), as the simulator's own `--read-reset`
(another branch) will.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from alibabacloud_cams20200606 import models
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from cams_simulator import Simulator, SimulatorOptions
from exporter.cams.model import DAY_MS
from tests.kit.configs import Account, days_back, write_config
from tests.kit.inproc import PolledExporter
from tests.kit.oracle import QUICK, SPACE, sdk_client
from tests.kit.procs import ROOT, Service, child_env, start_prometheus
from tests.kit.sim import running
from tests.kit.waits import wait_http, wait_until

DAYS = 30
SCRAPE_S = 1
READ_WINDOW_MS = 7 * DAY_MS
COUNTERS = ("sent", "delivered", "read")
STATIC = {
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


@pytest.fixture
def prometheus_on(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def make(data: Path, target: str) -> Prometheus:
        prom = Prometheus(tmp_path, data, target)
        started.append(prom)
        return prom

    yield make
    for prom in started:
        prom.stop()


def _level_one_rules(path: Path) -> Path:
    """recording.yml's groups that read only the exporter's series (no recorded `cams:` one):
    the only ones `create-blocks-from rules` can evaluate over raw blocks in one pass."""
    groups = yaml.safe_load((ROOT / "prometheus" / "recording.yml").read_text())["groups"]
    first = [g for g in groups if all("cams:" not in r["expr"] for r in g["rules"])]
    path.write_text(yaml.safe_dump({"groups": first}, sort_keys=False))
    return path


# -- the day-one flow ----------------------------------------------------------------------------


def test_history_from_day_one_continues_into_the_live_counters(
    tmp_path: Path, prometheus_on: Any
) -> None:
    with running(SimulatorOptions(**STATIC)) as sim:
        config = config_for(tmp_path, sim.url)
        _, origin_ms = days_back(DAYS)
        now_ms = int(time.time() * 1000)
        junction_ms = now_ms - now_ms % DAY_MS  # today's midnight: the last backfilled point

        # the live exporter is set up first only to learn its address: Prometheus labels what
        # it scrapes with job and instance, and the backfilled series must carry the same
        with PolledExporter(config) as live:
            target = f"127.0.0.1:{live.server.port}"

            # 1. backfill
            om = tmp_path / "history.om"
            labels = ("--label", "job=cams", "--label", f"instance={target}")
            done = backfill("--config.file", str(config), "--output", str(om), *labels)
            assert done.returncode == 0, done.stderr
            assert "wrote" in done.stderr and "not written" not in done.stderr, done.stderr
            assert "no job or instance" not in done.stderr
            families = parsed_file(om)
            sent_file = series_of(families["cams_template_messages_sent"])
            assert len(sent_file) == 6
            assert {len(points) for points in sent_file.values()} == {DAYS + 1}
            assert all(points[0] == (origin_ms, 0) for points in sent_file.values())
            assert all(points[-1][0] == junction_ms for points in sent_file.values())

            # 2. blocks
            data = tmp_path / "data"
            blocks = promtool("tsdb", "create-blocks-from", "openmetrics", str(om), str(data))
            assert blocks.returncode == 0, blocks.stderr
            assert len([p for p in data.iterdir() if (p / "meta.json").exists()]) == DAYS + 1

            truth = sdk_days(sim, origin_ms, junction_ms + DAY_MS)  # backfilled days, today

            # 3. the live exporter polls, and a Prometheus started on the blocks scrapes it
            live.poll()
            prom = prometheus_on(data, target)
            prom.start()
            started = time.time()

            def scraped() -> bool:
                window = f"{max(1, int(time.time() - started))}s"
                counts = prom.by_unit(
                    f"count_over_time(cams_template_messages_sent_total[{window}])", time.time()
                )
                return len(counts) == 6 and min(counts.values()) >= 3

            wait_until(scraped, 60, "three live scrapes of every unit", every=0.3)
            at = time.time()

            # increase over each past day, at its end, is the SDK's row of that day
            for name in COUNTERS:
                increase = prom.range_by_unit(
                    f"increase(cams_template_messages_{name}_total[1d])",
                    origin_ms + DAY_MS,
                    junction_ms,
                )
                assert increase.keys() == truth.keys()
                for unit, by_end in increase.items():
                    expected = {
                        start + DAY_MS: float(getattr(day, name))
                        for start, day in truth[unit].items()
                        if start < junction_ms
                    }
                    assert by_end == expected, (name, unit)
            assert sum(d.sent for days in truth.values() for d in days.values()) > 0

            # clicks too, by button
            clicks = prom.query(
                "increase(cams_template_button_clicks_total[1d])", (junction_ms) / 1000
            )
            seen = {
                (r["metric"]["template_code"], r["metric"]["language"],
                 f'{r["metric"]["button_type"]}/{r["metric"]["button"]}'): float(r["value"][1])
                for r in clicks
            }  # fmt: skip
            expected_clicks = {
                (*unit, button): float(count)
                for unit, days in truth.items()
                for button, count in days[junction_ms - DAY_MS].clicks.items()
            }
            assert seen == expected_clicks and seen

            # the live counters continue the backfilled ones: no reset, and exactly today's
            # counts (the simulator's whole day) between the junction and now
            span = f"{(int(at * 1000) - origin_ms) // 1000 + 60}s"
            for family in (*(f"messages_{n}" for n in COUNTERS), "button_clicks"):
                resets = prom.query(f"resets(cams_template_{family}_total[{span}])", at)
                assert resets and all(float(r["value"][1]) == 0 for r in resets), family
            for name in COUNTERS:
                live_now = prom.by_unit(f"cams_template_messages_{name}_total", at)
                at_junction = prom.by_unit(
                    f"cams_template_messages_{name}_total", junction_ms / 1000
                )
                for unit, value in live_now.items():
                    today = float(getattr(truth[unit][junction_ms], name))
                    assert value - at_junction[unit] == today, (name, unit)
            samples = prom.by_unit(
                f"count_over_time(cams_template_messages_sent_total[{span}])", at
            )
            assert min(samples.values()) >= DAYS + 1 + 3

            # the file's families are the live exporter's: same help, type and labels
            live_text = live.get(
                "/metrics", headers={"Accept": "application/openmetrics-text"}
            ).text
            live_families = {f.name: f for f in text_string_to_metric_families(live_text)}
            for name, family in families.items():
                if name.startswith("cams_template"):
                    assert (family.type, family.documentation) == (
                        live_families[name].type,
                        live_families[name].documentation,
                    )
                    live_labels = {tuple(sorted(s.labels)) for s in live_families[name].samples}
                    mine = {
                        tuple(sorted(set(s.labels) - {"job", "instance"})) for s in family.samples
                    }
                    assert mine == live_labels

            # 4. recording rules over the backfilled blocks (the groups one pass can evaluate)
            rules_dir = tmp_path / "rules"
            start_ms = junction_ms - 2 * DAY_MS
            rules = promtool(
                "tsdb", "create-blocks-from", "rules",
                f"--url={prom.url}",
                f"--start={start_ms // 1000}", f"--end={junction_ms // 1000}",
                f"--output-dir={rules_dir}",
                str(_level_one_rules(tmp_path / "rules.yml")),
                timeout=300,
            )  # fmt: skip
            assert rules.returncode == 0, rules.stderr[-2000:]
            prom.stop()
            for block in rules_dir.iterdir():
                shutil.move(str(block), data / block.name)
            prom.start()
            day_end = junction_ms - DAY_MS
            recorded = prom.by_unit(
                "last_over_time(cams:template_messages_sent:sum[5m])", day_end / 1000 + 300
            )
            counted = prom.by_unit("cams_template_messages_sent_total", day_end / 1000)
            assert recorded == counted and recorded
