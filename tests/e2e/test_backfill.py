"""`cams-exporter backfill` end to end, with real parts: the simulator with 30 days of static
history, the command as a user runs it, `promtool tsdb create-blocks-from openmetrics`, Debian's
Prometheus started on those blocks and then scraping the live exporter, and the official SDK's
daily rows as the truth.

A proxy in front of the simulator rewrites its answers where the simulator has no switch yet:
the reset Meta documents (reads and clicks of a day answered as 0 once it is past the 7-day
read window, as the simulator's own `--read-reset`, on another branch, will play it), and one
unit's answer that cannot be vouched for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import yaml
from alibabacloud_cams20200606 import models
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from cams_simulator import Simulator, SimulatorOptions
from exporter.cams.actions import METRIC_ACTION
from exporter.cams.model import DAY_MS
from tests.kit.configs import Account, days_back, write_config
from tests.kit.inproc import PolledExporter
from tests.kit.oracle import QUICK, SPACE, sdk_client
from tests.kit.procs import ROOT, Service, child_env, start_prometheus
from tests.kit.senders import sdk_number_rows, sdk_numbers
from tests.kit.sim import running
from tests.kit.waits import wait_http, wait_until

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


# -- what the API no longer holds ----------------------------------------------------------------


Rewrite = Callable[[dict[str, Any], dict[str, str]], None]


class Rewriting:
    """A proxy in front of a simulator that rewrites the JSON of each GetChatappTemplateMetric
    answer (`rewrite(body, query)`) before passing it on; signatures still hold (the Host the
    client signed is passed through)."""

    def __init__(self, upstream: str, rewrite: Rewrite) -> None:
        self.upstream = upstream

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                skip = ("content-length", "connection", "accept-encoding")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                answer = requests.post(upstream + self.path, data=body, headers=headers, timeout=30)
                content = answer.content
                if answer.ok and self.headers.get("x-acs-action") == METRIC_ACTION:
                    doc = answer.json()
                    rewrite(doc, dict(parse_qsl(urlsplit(self.path).query)))
                    content = json.dumps(doc).encode()
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Rewriting:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_reset(body: dict[str, Any], _query: dict[str, str]) -> None:
    """Meta's reset: 0 reads and 0 clicks for every day past the 7-day read window."""
    now_ms = time.time() * 1000
    for row in body.get("Data") or []:
        if row["End"] + READ_WINDOW_MS <= now_ms:
            row["ReadCount"] = 0
            for click in row.get("Cliented") or []:
                click["Count"] = 0


def test_reads_the_api_zeroed_past_its_read_window_start_at_its_edge(tmp_path: Path) -> None:
    with running(SimulatorOptions(**STATIC)) as sim, Rewriting(sim.url, read_reset) as proxy:
        config = config_for(tmp_path, proxy.url)
        _, origin_ms = days_back(DAYS)
        now_ms = int(time.time() * 1000)
        junction_ms = now_ms - now_ms % DAY_MS
        edge_ms = junction_ms - READ_WINDOW_MS  # the end of the last day past the window
        om = tmp_path / "history.om"
        done = backfill("--config.file", str(config), "--output", str(om))
        truth = sdk_days(sim, origin_ms, junction_ms)  # the simulator itself: never zeroed

    assert done.returncode == 0, done.stderr  # what the API no longer holds is no failure
    edge_day = time.strftime("%Y-%m-%d", time.gmtime(edge_ms / 1000))
    assert f"left out (6): reads and clicks before {edge_day}" in done.stderr, done.stderr
    families = parsed_file(om)
    sent = series_of(families["cams_template_messages_sent"])
    read = series_of(families["cams_template_messages_read"])
    clicks = series_of(families["cams_template_button_clicks"], value_of="button")
    assert sent.keys() == read.keys() == truth.keys()
    for unit, days in truth.items():
        # sent and delivered: every day from the origin, as the API holds them
        assert [t for t, _ in sent[unit]] == list(range(origin_ms, junction_ms + 1, DAY_MS))
        assert sent[unit][-1][1] == sum(d.sent for d in days.values())
        # reads: from the edge on only, counting what the API still holds before it (0)
        assert [t for t, _ in read[unit]] == list(range(edge_ms, junction_ms + 1, DAY_MS))
        assert read[unit][0][1] == 0
        assert read[unit][-1][1] == sum(d.read for s, d in days.items() if s >= edge_ms)
    assert clicks and all(points[0][0] == edge_ms for points in clicks.values())


# -- exit codes, and what is not written ----------------------------------------------------------


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_bad_config_flags_or_state_exit_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    nowhere = "http://127.0.0.1:9"  # never called: every problem is found before a call
    plain = write_config(tmp_path / "plain.yml", Account(nowhere), poll={"lookback": "8d"})
    done = backfill("--config.file", str(plain))
    assert done.returncode == 2 and one_line(done).startswith("poll.counters_since: not set")

    config = config_for(tmp_path, nowhere)
    cases = {
        ("--since", "2026-13-01"): "--since: not a UTC date like 2026-01-31",
        ("--since", "2026-02-02", "--until", "2026-02-01"): "--since 2026-02-02: must be before",
        ("--label", "account=x"): "--label account: the exporter sets this label itself",
        ("--label", "job=a", "--label", "job=b"): "--label job: given more than once",
        ("--label", "9job=x"): "--label: expected NAME=VALUE",
        ("--output", str(tmp_path / "no" / "such" / "dir.om")): "--output",
    }
    for flags, start in cases.items():
        done = backfill("--config.file", str(config), *flags)
        assert done.returncode == 2, (flags, done.stderr)
        assert start in one_line(done), (flags, done.stderr)

    corrupt = tmp_path / "state.json"
    corrupt.write_text("{not json")
    stated = config_for(tmp_path, nowhere, state=corrupt)
    done = backfill("--config.file", str(stated), "--until", "2026-01-01")
    assert done.returncode == 2 and one_line(done).startswith("state.path: ")
    assert corrupt.read_text() == "{not json"


def test_an_answer_that_cannot_be_vouched_for_is_not_written_and_exit_is_1(
    tmp_path: Path,
) -> None:
    with running(SimulatorOptions(**STATIC)) as sim:
        victim = sim.templates()[0]

        def negative(body: dict[str, Any], query: dict[str, str]) -> None:
            if (query.get("TemplateCode"), query.get("Language")) == (victim.code, "en"):
                for row in body.get("Data") or []:
                    row["SentCount"] = -1

        with Rewriting(sim.url, negative) as proxy:
            config = config_for(tmp_path, proxy.url)
            om = tmp_path / "history.om"
            done = backfill("--config.file", str(config), "--output", str(om))
    assert done.returncode == 1, done.stderr
    assert "not written (1): answer not applied (bad_count)" in done.stderr, done.stderr
    assert f"main/cams-demo/{victim.code}/en" in done.stderr
    written = series_of(parsed_file(om)["cams_template_messages_sent"])
    assert len(written) == 5 and (victim.code, "en") not in written  # the others are there


def test_an_api_that_refuses_is_named_and_no_secret_shows(tmp_path: Path) -> None:
    options = SimulatorOptions(**{**STATIC, "access_key_secret": "S3CR3T-backfill"})
    with running(options) as sim:
        spaces = ({"cust_space_id": SPACE, "templates": [{"code": "abc", "language": "en"}]},)
        since, _ = days_back(DAYS)
        config = write_config(
            tmp_path / "config.yml",
            Account(sim.url, secret="not-the-secret", spaces=spaces),
            poll={"counters_since": since, "timeout": "5s", "max_retries": 0},
        )
        done = backfill("--config.file", str(config), "--output", str(tmp_path / "h.om"))
    assert done.returncode == 1, done.stderr
    assert "discovery failed (SignatureDoesNotMatch" in done.stderr, done.stderr
    assert "not written (1): read failed: SignatureDoesNotMatch" in done.stderr
    assert "main/cams-demo/abc/en" in done.stderr
    assert "S3CR3T" not in done.stderr + done.stdout and "not-the-secret" not in done.stderr
    assert parsed_file(tmp_path / "h.om")["cams_template_messages_sent"].samples == []


def test_the_state_file_is_read_never_written(tmp_path: Path) -> None:
    state = tmp_path / "state" / "state.json"
    state.parent.mkdir()
    with running(SimulatorOptions(**STATIC)) as sim:
        config = config_for(tmp_path, sim.url, state=state)
        with PolledExporter(config) as live:
            live.poll()  # the exporter has counted: its state file holds every unit
        before = (state.read_bytes(), state.stat().st_mtime_ns, sorted(os.listdir(state.parent)))
        origin = json.loads(state.read_bytes())["units"]
        assert origin

        done = backfill("--config.file", str(config))
        assert done.returncode == 2 and one_line(done).startswith("--until: required")

        now_ms = int(time.time() * 1000)
        junction_ms = now_ms - now_ms % DAY_MS
        until = time.strftime("%Y-%m-%d", time.gmtime(junction_ms / 1000))
        om = tmp_path / "history.om"
        done = backfill("--config.file", str(config), "--until", until, "--output", str(om))
        assert done.returncode == 0, done.stderr
    after = (state.read_bytes(), state.stat().st_mtime_ns, sorted(os.listdir(state.parent)))
    assert after == before
    # the units the exporter counts end 8 days before its first scrape (--until), when
    # their days were final; they start at the origin its state holds
    _, origin_ms = days_back(DAYS)
    sent = series_of(parsed_file(om)["cams_template_messages_sent"])
    assert len(sent) == 6
    for points in sent.values():
        assert [t for t, _ in points] == list(
            range(origin_ms, junction_ms - 8 * DAY_MS + 1, DAY_MS)
        )


def test_an_api_that_sums_ranges_is_read_day_by_day_to_the_same_file(tmp_path: Path) -> None:
    outputs = {}
    for shape in ("per-bucket", "aggregate"):
        with running(SimulatorOptions(**{**STATIC, "shape": shape})) as sim:
            config = config_for(tmp_path, sim.url)
            om = tmp_path / f"{shape}.om"
            done = backfill("--config.file", str(config), "--output", str(om))
            calls = sim.stats()["actions"][METRIC_ACTION]["calls"]
        assert done.returncode == 0, done.stderr
        outputs[shape] = (om.read_text(), calls, done.stderr)
    assert outputs["aggregate"][0] == outputs["per-bucket"][0]
    assert "the API sums ranges" in outputs["aggregate"][2]
    assert outputs["aggregate"][1] >= 6 * DAYS > outputs["per-bucket"][1]


def test_phone_number_counters_on_stdout(tmp_path: Path) -> None:
    options = SimulatorOptions(**{**STATIC, "templates": 1, "phone_numbers": 2})
    senders = {
        "health_status": {"enabled": False},
        "phone_number_metrics": {"qps": 50},
    }
    with running(options) as sim:
        since, origin_ms = days_back(DAYS)
        config = write_config(
            tmp_path / "config.yml",
            Account(sim.url, extra={"sender_health": senders}),
            poll={"counters_since": since},
        )
        done = backfill("--config.file", str(config))
        now_ms = int(time.time() * 1000)
        junction_ms = now_ms - now_ms % DAY_MS
        sdk = sdk_client(sim)
        truth = {
            n.phone_number: sum(
                r.sent_count
                for lower in range(origin_ms, junction_ms, 30 * DAY_MS)
                for r in sdk_number_rows(
                    sdk, n.phone_number, lower, min(junction_ms, lower + 30 * DAY_MS)
                )
            )
            for n in sdk_numbers(sdk)
        }
    assert done.returncode == 0, done.stderr
    families = {f.name: f for f in text_string_to_metric_families(done.stdout)}
    last: dict[str, float] = {}
    for sample in families["cams_phone_number_messages_sent"].samples:
        last[sample.labels["phone_number"]] = sample.value
    assert last == truth and len(truth) == 2
    assert {s.labels["phone_number"] for s in families["cams_phone_number_messages_read"].samples}


def test_the_bench_prints_its_row() -> None:
    bench = [sys.executable, str(ROOT / "bench" / "backfill.py"), "--templates", "2", "--days", "3"]
    done = subprocess.run(
        bench, env=child_env(), capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    header, _, row = done.stdout.strip().splitlines()
    assert header.startswith("| units | days | metric calls |")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["4", "3", "4"]  # one call per unit for 3 days
    assert float(cells[6]) > 0 and not cells[10].startswith("failed")


def test_half_hour_buckets_give_the_daily_values_at_every_midnight(tmp_path: Path) -> None:
    points = {}
    with running(SimulatorOptions(**{**STATIC, "templates": 2, "history_s": 10 * 86400.0})) as sim:
        for granularity in ("DAILY", "HALF_HOUR"):
            since, _ = days_back(9)
            config = write_config(
                tmp_path / f"{granularity}.yml",
                Account(sim.url),
                poll={
                    "counters_since": since,
                    "granularity": granularity,
                    "max_range": "5d",
                    "lookback": "2d",
                },
            )
            om = tmp_path / f"{granularity}.om"
            done = backfill("--config.file", str(config), "--output", str(om))
            assert done.returncode == 0, done.stderr
            points[granularity] = {
                (s.name, tuple(sorted(s.labels.items())), float(s.timestamp)): s.value
                for family in parsed_file(om).values()
                for s in family.samples
            }
    daily, half = points["DAILY"], points["HALF_HOUR"]
    assert daily and daily.items() <= half.items()  # every midnight, the same value
    assert len(half) > 40 * len(daily)  # and a point at the end of every half hour between


# -- the recording rules over the imported days ----------------------------------------------------


# the last value of a series recorded every 10 minutes: one sample (ranges include both ends)
LAST_10M = "599s"


def test_the_rules_over_the_imported_days_give_the_baselines_of_the_past_week(
    tmp_path: Path, prometheus_on: Any
) -> None:
    """`create-blocks-from rules` with prometheus/backfill/pass-N.yml, one pass after the other
    (each pass's blocks loaded before the next), over the 16 days before the junction: for each
    of the past 7 days, the template's own read rate over the week before yesterday, its
    delivery threshold and its baseline exist, each from the SDK's daily rows."""
    passes = sorted((ROOT / "prometheus" / "backfill").glob("pass-*.yml"))
    assert [p.name for p in passes] == [f"pass-{n}.yml" for n in range(1, len(passes) + 1)]
    with running(SimulatorOptions(**STATIC)) as sim:
        config = config_for(tmp_path, sim.url)
        _, origin_ms = days_back(DAYS)
        now_ms = int(time.time() * 1000)
        junction_ms = now_ms - now_ms % DAY_MS
        om = tmp_path / "history.om"
        done = backfill("--config.file", str(config), "--output", str(om))
        assert done.returncode == 0, done.stderr
        data = tmp_path / "data"
        blocks = promtool("tsdb", "create-blocks-from", "openmetrics", str(om), str(data))
        assert blocks.returncode == 0, blocks.stderr
        truth = sdk_days(sim, origin_ms, junction_ms)
    prom = prometheus_on(data, "127.0.0.1:9")  # scrapes nothing: the imported days only
    prom.start()
    start_s = (junction_ms - 16 * DAY_MS) // 1000
    for n, rules in enumerate(passes, start=1):
        out = tmp_path / f"rules-{n}"
        made = promtool(
            "tsdb", "create-blocks-from", "rules", "-q",
            f"--url={prom.url}", f"--start={start_s}", f"--end={junction_ms // 1000}",
            f"--output-dir={out}", str(rules),
            timeout=600,
        )  # fmt: skip
        assert made.returncode == 0, (rules.name, made.stderr[-2000:])
        prom.stop()
        moved = [shutil.move(str(block), data / block.name) for block in out.iterdir()]
        assert moved, f"{rules.name} made no block"
        prom.start()

    def window(unit: tuple[str, str], last_day_ms: int, name: str) -> int:
        """The SDK's count of the 7 days that end at `last_day_ms` (a midnight)."""
        days = truth[unit]
        return sum(
            getattr(days[d], name) for d in range(last_day_ms - 7 * DAY_MS, last_day_ms, DAY_MS)
        )

    owned: set[tuple[str, str]] = set()
    for k in range(1, 8):
        # 23:00 of each of the past 7 days: the day before it ended 47 h after the last point
        # of its window, when the expected reads of that point have all but caught up with it
        at_ms = junction_ms - k * DAY_MS - 3_600_000
        last_ms = at_ms - DAY_MS - 23 * 3_600_000  # the window's end: a midnight
        at = at_ms / 1000
        # each group evaluates every 10 minutes at an offset of its own: its last value there
        own = prom.by_unit(f"last_over_time(cams:template_read_rate:own[{LAST_10M}])", at)
        delivery = prom.by_unit(
            f"last_over_time(cams:template_delivery_rate:threshold[{LAST_10M}])", at
        )
        baseline = {
            (r["metric"]["template_code"], r["metric"]["language"]): r["metric"]["baseline"]
            for r in prom.query(f"last_over_time(cams:template_read_rate:baseline[{LAST_10M}])", at)
        }
        assert baseline.keys() == truth.keys(), k  # every template is judged, every day
        for unit in truth:
            delivered, sent = window(unit, last_ms, "delivered"), window(unit, last_ms, "sent")
            if sent >= 200:
                assert delivery[unit] == pytest.approx(0.8 * min(1, delivered / sent)), unit
            if delivered >= 300:  # over 200 expected reads, settled 47 h after the window
                ratio = min(1.0, window(unit, last_ms, "read") / delivered)
                assert own[unit] == pytest.approx(ratio, abs=0.03), (k, unit)
                assert baseline[unit] in ("own", "peers"), (k, unit)
                owned.add(unit)
            elif delivered < 150:  # under 200 expected reads: no rate of its own
                assert unit not in own, (k, unit)
        assert {u for u, source in baseline.items() if source == "own"} <= own.keys()
    assert len(owned) >= 2, "no template with a settled week of its own to judge"

    # the live rules (prometheus/recording.yml) a day after the junction read the imported
    # days' series at their usual offsets: the own read rate's week is the imported one
    live = {
        rule["record"]: rule["expr"]
        for group in yaml.safe_load((ROOT / "prometheus" / "recording.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    at = (junction_ms + DAY_MS - 3_600_000) / 1000
    reads = prom.by_unit(live["cams:template_messages_read:increase7d_offset1d"], at)
    expected = prom.by_unit(live["cams:template_reads_expected:increase7d_offset1d"], at)
    settled = [u for u in truth if window(u, junction_ms - DAY_MS, "delivered") >= 300]
    assert settled
    for unit in settled:
        read, delivered = (window(unit, junction_ms - DAY_MS, n) for n in ("read", "delivered"))
        assert reads[unit] / expected[unit] == pytest.approx(read / delivered, abs=0.03), unit
    last_hour = prom.query(
        f"last_over_time(cams:template_read_rate:baseline[{LAST_10M}])",
        (junction_ms - 3_600_000) / 1000,
    )
    assert any(r["metric"]["baseline"] == "own" for r in last_hour)
