"""Per-number counters over real HTTP: exact against the official SDK's sums for every answer
shape, resumed from the state file, anomalies counted and never applied, no read counter when
the API sends no ReadCount."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cams_simulator import Simulator, SimulatorOptions
from exporter.app import Exporter
from exporter.cams.client import PHONE_METRIC_ACTION
from exporter.config import Config, parse_config
from exporter.web.server import WebServer
from tests.kit.oracle import sdk_client
from tests.kit.senders import SPACE, sdk_raw
from tests.kit.sim import running

SINCE = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=6)
ORIGIN_MS = int(dt.datetime(SINCE.year, SINCE.month, SINCE.day, tzinfo=dt.UTC).timestamp() * 1000)
Counters = dict[str, dict[str, float]]


def config_for(sim: Simulator, state: Path | None = None) -> Config:
    text = (
        "poll:\n  interval: 10s\n  lookback: 3d\n  max_range: 4d\n  timeout: 5s\n"
        f"  counters_since: {SINCE.isoformat()}\n"
        + (f"state:\n  path: {state}\n" if state else "")
        + "accounts:\n  - name: main\n"
        f"    endpoint: {sim.url}\n"
        "    credentials: {access_key_id: demo, access_key_secret: demo-secret}\n"
        f"    spaces: [{{cust_space_id: {SPACE}}}]\n"
        "    sender_health:\n"
        "      health_status: {enabled: false}\n"
        "      phone_number_metrics: {qps: 50}\n"
    )
    return parse_config(text, env={})


class Numbers:
    """An exporter whose phone numbers are listed and read by hand."""

    def __init__(self, config: Config) -> None:
        self.exporter = Exporter(config)
        self.server = WebServer("127.0.0.1:0", self.exporter.handlers())
        self.server.start()
        [self.sender] = self.exporter.scheduler.senders

    def poll(self) -> bool:
        self.sender.refresh_numbers()
        assert self.sender.counters is not None
        ok = self.sender.counters.poll(
            self.sender.phone_numbers(), self.exporter.scheduler.stop_event
        )
        self.sender._changed()
        self.exporter.scheduler.publish(save=True)
        return ok

    def counters(self) -> Counters:
        text = requests.get(f"http://127.0.0.1:{self.server.port}/metrics", timeout=10).text
        out: Counters = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith("cams_phone_number_messages_"):
                    field = sample.name.removeprefix("cams_phone_number_messages_")
                    out.setdefault(sample.labels["phone_number"], {})[field] = sample.value
        return out

    def anomalies(self) -> float:
        text = requests.get(f"http://127.0.0.1:{self.server.port}/metrics", timeout=10).text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "cams_api_answer_anomalies_total"
            and s.labels.get("action") == PHONE_METRIC_ACTION
        )

    def close(self) -> None:
        self.server.shutdown()
        self.exporter.stop()


def truth(sim: Simulator) -> Counters:
    """The official SDK's sums over origin..now (ReadCount, which its models lack, included)."""
    client = sdk_client(sim)
    now = int(time.time() * 1000)
    out: Counters = {}
    numbers = sdk_raw(client, "QueryChatappPhoneNumbers", {"CustSpaceId": SPACE})
    for number in numbers["PhoneNumbers"]:
        phone = number["PhoneNumber"]
        sums = {"sent_total": 0.0, "delivered_total": 0.0, "read_total": 0.0}
        query = {"PhoneNumber": phone, "CustSpaceId": SPACE, "Granularity": "DAILY"}
        body = sdk_raw(
            client, PHONE_METRIC_ACTION, {**query, "Start": str(ORIGIN_MS), "End": str(now)}
        )
        for row in body["Data"]:  # one call over origin..now: what the exporter adds up
            sums["sent_total"] += row["SentCount"]
            sums["delivered_total"] += row["DeliveredCount"]
            sums["read_total"] += row["ReadCount"]
        out[phone] = sums
    return out


@pytest.mark.parametrize("shape", ["per-bucket", "aggregate", "utc8", "sparse"])
def test_number_counters_are_exact_and_survive_a_restart(shape: str, tmp_path: Path) -> None:
    options = SimulatorOptions(templates=1, static=True, shape=shape, phone_numbers=3)
    state = tmp_path / "state.json"
    with running(options) as sim:
        first = Numbers(config_for(sim, state))
        try:
            for _ in range(3):
                assert first.poll()
            before = first.counters()
        finally:
            first.close()
        expected = truth(sim)
        assert before == expected and len(expected) == 3
        assert sum(v["sent_total"] for v in expected.values()) > 0
        second = Numbers(config_for(sim, state))
        try:
            second.sender.refresh_numbers()
            second.sender._changed()
            second.exporter.scheduler.publish()
            assert second.counters() == before  # from the state file, before any read
            assert second.poll()
            assert second.counters() == expected
        finally:
            second.close()


@pytest.mark.parametrize(
    ("variant", "kind"), [("success-false", "success_false"), ("seconds", "outside_range")]
)
def test_an_anomalous_number_answer_is_counted_never_applied(variant: str, kind: str) -> None:
    with running(SimulatorOptions(templates=1, static=True, phone_numbers=2)) as sim:
        numbers = Numbers(config_for(sim))
        try:
            sim.set_variants(variant)
            assert not numbers.poll()
            assert numbers.anomalies() >= 2
            assert all(v.get("sent_total", 0) == 0 for v in numbers.counters().values())
            page = requests.get(f"http://127.0.0.1:{numbers.server.port}/", timeout=10).text
            assert kind in page
            sim.set_variants("")
            assert numbers.poll()
            assert numbers.counters() == truth(sim)
        finally:
            numbers.close()


def test_no_read_counter_when_the_api_sends_no_read_count() -> None:
    options = SimulatorOptions(
        templates=1, static=True, phone_numbers=2, variants="number-no-read-count"
    )
    with running(options) as sim:
        numbers = Numbers(config_for(sim))
        try:
            assert numbers.poll()
            found = numbers.counters()
            assert len(found) == 2
            assert all("read_total" not in v and v["sent_total"] > 0 for v in found.values())
        finally:
            numbers.close()
