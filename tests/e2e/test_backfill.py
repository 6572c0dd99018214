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
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from cams_simulator import SimulatorOptions
from exporter.cams.actions import METRIC_ACTION
from exporter.cams.model import DAY_MS
from tests.kit.backfilled import (
    COUNTERS,
    DAYS,
    READ_WINDOW_MS,
    STATIC,
    backfill,
    config_for,
    parsed_file,
    promtool,
    sdk_days,
    series_of,
)
from tests.kit.configs import Account, days_back, write_config
from tests.kit.inproc import PolledExporter
from tests.kit.oracle import SPACE, sdk_client
from tests.kit.procs import ROOT, child_env
from tests.kit.senders import sdk_number_rows, sdk_numbers
from tests.kit.sim import running
from tests.kit.waits import wait_until

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
