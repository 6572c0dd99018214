"""Sender health end to end over real HTTP: the exporter against the simulator, its /metrics and
status page checked against what the official SDK reads from the same simulator."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cams_simulator import Simulator, SimulatorOptions
from exporter.app import Exporter, build_limiters
from exporter.cams.client import (
    HEALTH_ACTION,
    LIST_ACTION,
    METRIC_ACTION,
    PHONE_METRIC_ACTION,
    PHONE_NUMBERS_ACTION,
)
from exporter.cams.model import NumberKey
from exporter.cams.sender_model import TIER_LIMITS
from exporter.config import Config, parse_config
from exporter.senders.plan import calls_per_hour
from exporter.senders.poller import SenderPoller
from exporter.templates.sharding import Shard
from exporter.web.server import WebServer
from tests.kit.oracle import sdk_client
from tests.kit.senders import override_can_send, override_number, sdk_health, sdk_numbers
from tests.kit.sim import running
from tests.kit.waits import wait_until

Sample = tuple[str, dict[str, str], float]
SENDER_ACTIONS = (PHONE_NUMBERS_ACTION, PHONE_METRIC_ACTION, HEALTH_ACTION)
FAST = {"qps_limit": 1000, "list_qps_limit": 1000, "health_qps_limit": 1000}
FAST |= {"numbers_qps_limit": 1000}


def config_for(
    sim: Simulator, sender_health: str | None, spaces: int = 1, retries: int = 4
) -> Config:
    lines = [
        "poll: {interval: 10s, lookback: 3d, max_range: 5d, timeout: 5s,"
        f" max_retries: {retries}}}",
        "accounts:",
        "  - name: main",
        f"    endpoint: {sim.url}",
        "    credentials: {access_key_id: demo, access_key_secret: demo-secret}",
        "    qps: 50",
        "    list_qps: 5",
        "    spaces:",
        *(f"      - cust_space_id: cams-{i}" for i in range(spaces)),
    ]
    if sender_health is not None:
        lines.append(f"    sender_health: {sender_health}")
    config = parse_config("\n".join(lines) + "\n", env={})
    account = config.accounts[0]
    if account.sender_health is None:
        return config
    # Tests read every node at once: faster than the ceilings a config may ask for.
    health = account.sender_health
    fast = replace(
        health,
        health_status=replace(health.health_status, qps=200.0),
        phone_numbers=replace(health.phone_numbers, qps=100.0),
    )
    return replace(config, accounts=(replace(account, sender_health=fast),))


class Running:
    """An exporter and its web server, driven by hand."""

    def __init__(self, config: Config, shard: Shard | None = None) -> None:
        self.exporter = Exporter(config, shard=shard)
        self.server = WebServer("127.0.0.1:0", self.exporter.handlers())
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.stop = threading.Event()

    @property
    def sender(self) -> SenderPoller:
        (sender,) = self.exporter.scheduler.senders
        return sender

    def poll(self, health: bool = True) -> None:
        scheduler = self.exporter.scheduler
        for account in scheduler.accounts:
            assert account.run_cycle(scheduler.stop_event, 8)
        for sender in scheduler.senders:
            sender.refresh_numbers()
            if health:
                assert sender.run_health_round(self.stop, spread=False)
        scheduler.publish()

    def samples(self, prefix: str = "cams_") -> list[Sample]:
        response = requests.get(f"{self.url}/metrics", timeout=10)
        assert response.status_code == 200
        return [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
            if s.name.startswith(prefix)
        ]

    def page(self) -> str:
        response = requests.get(f"{self.url}/", timeout=10)
        assert response.status_code == 200
        return response.text

    def close(self) -> None:
        self.server.shutdown()
        self.exporter.stop()


@pytest.fixture
def started() -> Iterator[Callable[..., Running]]:
    instances: list[Running] = []

    def start(config: Config, shard: Shard | None = None) -> Running:
        instance = Running(config, shard)
        instances.append(instance)
        return instance

    yield start
    for instance in instances:
        instance.close()


def current(samples: list[Sample], name: str, key: str, **match: str) -> dict[str, str]:
    """{entity id: the state whose series is 1} of a state set."""
    out: dict[str, str] = {}
    for sample_name, labels, value in samples:
        if sample_name != name or any(labels.get(k) != v for k, v in match.items()):
            continue
        if value == 1:
            ident = labels.get(key, "") + (f":{labels['language']}" if "language" in labels else "")
            assert ident not in out, f"two states at 1 for {ident}"
            out[ident] = labels["rating" if "rating" in labels else "status"]
    return out


def test_existing_configs_stay_templates_only(started: Callable[..., Running]) -> None:
    with running(SimulatorOptions(templates=2, static=True, **FAST)) as sim:
        instance = started(config_for(sim, None))
        assert instance.exporter.scheduler.senders == []
        instance.poll()
        names = {name for name, _, _ in instance.samples()}
        assert not any(n.startswith(("cams_phone", "cams_waba", "cams_health")) for n in names)
        assert "cams_template_can_send" not in names
        rate_actions = {labels["action"] for n, labels, _ in instance.samples("cams_api_rate")}
        assert rate_actions == {METRIC_ACTION, LIST_ACTION}
        assert "Sender health" not in instance.page()
        assert set(sim.stats()["actions"]) == {METRIC_ACTION, LIST_ACTION}


def test_numbers_and_can_send_match_the_sdk(started: Callable[..., Running]) -> None:
    with running(SimulatorOptions(templates=4, static=True, phone_numbers=4, **FAST)) as sim:
        instance = started(config_for(sim, "true"))
        instance.poll()
        before = sim.stats()["actions"]
        samples = instance.samples()
        page = instance.page()
        assert sim.stats()["actions"] == before, "a scrape or a page view never calls the API"

        sdk = sdk_client(sim)
        numbers = sdk_numbers(sdk, space="cams-0")
        infos = {
            labels["phone_number"]: labels
            for name, labels, _ in samples
            if name == "cams_phone_number_info"
        }
        assert set(infos) == {n.phone_number for n in numbers}
        for n in numbers:
            info = infos[n.phone_number]
            assert (info["status"], info["quality_rating"], info["verified_name"]) == (
                n.status,
                n.quality_rating,
                n.verified_name,
            )
            assert info["messaging_limit_tier"] == n.messaging_limit_tier
            assert (info["account"], info["space"]) == ("main", "cams-0")
        ratings = current(samples, "cams_phone_number_quality_rating", "phone_number")
        assert ratings == {n.phone_number: n.quality_rating for n in numbers}
        rating_states = {
            labels["rating"]
            for name, labels, _ in samples
            if name == "cams_phone_number_quality_rating"
        }
        assert rating_states == {"GREEN", "YELLOW", "RED", "UNKNOWN"}
        limits = {
            labels["phone_number"]: value
            for name, labels, value in samples
            if name == "cams_phone_number_messaging_limit"
        }
        assert limits == {n.phone_number: TIER_LIMITS[n.messaging_limit_tier] for n in numbers}
        assert math.inf in limits.values()

        phones = current(samples, "cams_phone_number_can_send", "phone_number")
        assert phones == {
            n.phone_number: sdk_health(sdk, "phone", phone_number=n.phone_number)
            .entities[0]
            .can_send_message
            for n in numbers
        }
        templates = current(samples, "cams_template_can_send", "template_code")
        truth = {}
        for t in sim.templates():
            data = sdk_health(sdk, "template", template_code=t.code, language=t.language)
            truth[f"{t.code}:{t.language}"] = data.entities[0].can_send_message
        assert templates == truth and len(truth) == 8
        (waba,) = [
            (labels["waba_id"], labels["status"])
            for name, labels, value in samples
            if name == "cams_waba_can_send" and value == 1
        ]
        entity = sdk_health(sdk, "waba").entities[0]
        assert waba == (entity.waba_id, entity.can_send_message)

        errors = [labels for name, labels, _ in samples if name == "cams_health_status_error_info"]
        expected = sum(1 for state in [*truth.values(), *phones.values()] if state != "AVAILABLE")
        assert len(errors) == expected + (waba[1] != "AVAILABLE")
        for labels in errors:
            assert labels["error_code"] and labels["description"]
        targets = [v for n, _, v in samples if n == "cams_health_status_targets"]
        assert targets == [1 + 4 + 8]
        assert "Sender health" in page and "Possible solution" in page
        for labels in errors:
            assert labels["error_code"] in page
        assert set(sim.stats()["actions"]) >= {PHONE_NUMBERS_ACTION, HEALTH_ACTION}


def test_unknown_values_stay_visible_without_state_series(
    started: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    with running(SimulatorOptions(templates=1, static=True, **FAST)) as sim:
        number = sdk_numbers(sdk_client(sim))[1].phone_number
        override_number(sim, phone_number=number, QualityRating="PURPLE", MessagingLimitTier="T9")
        code = sim.templates()[0].code
        override_can_send(sim, node="template", template_code=code, language="en", can_send="MEH")
        instance = started(config_for(sim, "true"))
        with caplog.at_level(logging.WARNING, logger="cams_exporter.senders"):
            instance.poll()
            instance.poll()
        samples = instance.samples()
        (info,) = [
            labels
            for name, labels, _ in samples
            if name == "cams_phone_number_info" and labels["phone_number"] == number
        ]
        assert (info["quality_rating"], info["messaging_limit_tier"]) == ("PURPLE", "T9")
        states = {
            labels["rating"]: value
            for name, labels, value in samples
            if name == "cams_phone_number_quality_rating" and labels["phone_number"] == number
        }
        assert states == {"GREEN": 0, "YELLOW": 0, "RED": 0, "UNKNOWN": 0}
        assert not any(
            name == "cams_phone_number_messaging_limit" and labels["phone_number"] == number
            for name, labels, _ in samples
        )
        template = {
            labels["status"]: value
            for name, labels, value in samples
            if name == "cams_template_can_send" and labels["language"] == "en"
        }
        assert template == {"AVAILABLE": 0, "LIMITED": 0, "BLOCKED": 0}
        unknown = {
            (labels["field"], labels["value"]): value
            for name, labels, value in samples
            if name == "cams_sender_unknown_values"
        }
        assert unknown == {
            ("QualityRating", "PURPLE"): 1,
            ("MessagingLimitTier", "T9"): 1,
            ("CanSendMessage", "MEH"): 1,
        }
        lines = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
        assert len(lines) == 3, lines  # one per value, however often it is seen
        assert "PURPLE" in instance.page() and "MEH" in instance.page()


def test_vanished_numbers_and_failed_reads_keep_their_series(
    started: Callable[..., Running],
) -> None:
    with running(SimulatorOptions(templates=1, static=True, **FAST)) as sim:
        instance = started(config_for(sim, "true", retries=0))
        instance.poll()
        number = sdk_numbers(sdk_client(sim))[2].phone_number

        def listed() -> set[str]:
            return {
                labels["phone_number"]
                for name, labels, _ in instance.samples()
                if name == "cams_phone_number_info"
            }

        override_number(sim, phone_number=number, listed=False)
        instance.poll(health=False)
        assert number in listed(), "one listing without the number is not enough"
        instance.poll(health=False)
        assert number not in listed()
        override_number(sim, phone_number=number, listed=True)

        before = current(instance.samples(), "cams_template_can_send", "template_code")
        sim.set_faults("5xx=1")
        sender = instance.sender
        sender.refresh_numbers()
        assert sender.run_health_round(instance.stop, spread=False)
        instance.exporter.scheduler.publish()
        sim.set_faults("")
        samples = instance.samples()
        assert current(samples, "cams_template_can_send", "template_code") == before
        failed = [v for n, _, v in samples if n == "cams_health_status_failed_targets"]
        targets = [v for n, _, v in samples if n == "cams_health_status_targets"]
        assert failed == targets and failed[0] > 0
        page = instance.page()
        assert "the last read failed" in page
        assert "last listing error" in page


def test_error_series_are_capped_and_counted(started: Callable[..., Running]) -> None:
    with running(SimulatorOptions(templates=10, static=True, **FAST)) as sim:
        instance = started(config_for(sim, "{health_status: {max_error_series: 1}}"))
        instance.poll()
        samples = instance.samples()
        info = [labels for name, labels, _ in samples if name == "cams_health_status_error_info"]
        counted = sum(v for name, _, v in samples if name == "cams_health_status_errors")
        assert len(info) == 1 and counted >= 4  # 20 units: at least 4 LIMITED or BLOCKED


def test_turned_off_parts_make_no_calls(started: Callable[..., Running]) -> None:
    with running(SimulatorOptions(templates=2, static=True, **FAST)) as sim:
        off = "{health_status: false, phone_number_metrics: false}"
        instance = started(config_for(sim, off))
        instance.poll(health=False)
        assert not instance.sender.run_health_round(instance.stop, spread=False)
        assert HEALTH_ACTION not in sim.stats()["actions"]
        names = {name for name, _, _ in instance.samples()}
        assert "cams_phone_number_info" in names and "cams_template_can_send" not in names
        limiters = build_limiters(instance.exporter.config.accounts[0], Shard(0, 1))
        assert set(limiters) == {METRIC_ACTION, LIST_ACTION, PHONE_NUMBERS_ACTION}
        with_templates_off = config_for(sim, "{health_status: {templates: false}}")
        targets = started(with_templates_off).sender.targets()
        assert {t.node_type for t in targets} == {"waba"}  # numbers not listed yet


def test_shards_split_numbers_wabas_and_templates(started: Callable[..., Running]) -> None:
    with running(SimulatorOptions(templates=6, static=True, phone_numbers=8, **FAST)) as sim:
        replicas = [started(config_for(sim, "true", spaces=3), Shard(i, 2)) for i in range(2)]
        seen: list[set[tuple[str, str, str, str]]] = []
        for replica in replicas:
            replica.poll()
            seen.append(
                {
                    (t.node_type, t.space.label, t.phone_number, f"{t.template_code}{t.language}")
                    for t in replica.sender.targets()
                }
            )
        assert not seen[0] & seen[1]
        union = seen[0] | seen[1]
        assert sum(1 for t in union if t[0] == "waba") == 3
        assert sum(1 for t in union if t[0] == "phone") == 3 * 8
        assert sum(1 for t in union if t[0] == "template") == 3 * 12
        keys = [{n.key for n in replica.sender.phone_numbers()} for replica in replicas]
        assert not keys[0] & keys[1]
        assert len(keys[0] | keys[1]) == 24
        assert NumberKey("main", "cams-0", "6580010000") in keys[0] | keys[1]


def test_rounds_are_spread_and_match_the_plan(started: Callable[..., Running]) -> None:
    """Running threads: the spread round paces its calls over the interval (counted by the
    simulator), and a whole run makes the calls the plan says."""
    with running(SimulatorOptions(templates=2, static=True, phone_numbers=2, **FAST)) as sim:
        config = config_for(sim, "true")
        account = config.accounts[0]
        assert account.sender_health is not None
        quick = replace(
            account.sender_health,
            health_status=replace(account.sender_health.health_status, interval_s=3.0),
        )
        config = replace(config, accounts=(replace(account, sender_health=quick),))
        instance = started(config)
        sender = instance.sender
        instance.poll(health=False)
        targets = len(sender.targets())
        assert targets == 1 + 2 + 4
        sim.reset_stats()
        started_at = time.monotonic()
        assert sender.run_health_round(instance.stop, spread=True)
        took = time.monotonic() - started_at
        stats = sim.stats()["actions"][HEALTH_ACTION]
        assert stats["calls"] == targets
        assert stats["max_calls_in_1s"] <= 3, "7 calls spread over 3 s"
        assert 3.0 * (targets - 1) / targets <= took < 6.0

        planned = calls_per_hour(config.accounts[0], config.poll, units=4, numbers=2)
        assert planned[HEALTH_ACTION] == stats["calls"] * 3600 / 3.0  # one round per interval

        sim.reset_stats()
        sender.run_health_round(instance.stop, spread=False)
        assert sim.stats()["actions"][HEALTH_ACTION]["max_calls_in_1s"] == targets


def test_threads_publish_sender_health_and_stop(started: Callable[..., Running]) -> None:
    with running(SimulatorOptions(templates=2, static=True, **FAST)) as sim:
        instance = started(config_for(sim, "true"))
        instance.exporter.start()
        samples = wait_until(
            lambda: (
                (s := instance.samples())
                and any(n == "cams_health_status_last_round_timestamp_seconds" for n, _, _ in s)
                and s
            ),
            20,
            "a published health round",
            every=0.1,
        )
        names = {name for name, _, _ in samples}
        assert {"cams_phone_number_info", "cams_template_can_send", "cams_waba_can_send"} <= names
        threads = {t.name for t in threading.enumerate()}
        assert {"numbers-main", "health-main"} <= threads
        instance.exporter.stop()
        assert not {"numbers-main", "health-main"} & {t.name for t in threading.enumerate()}
