"""The simulator's sender-health actions read by Alibaba's official SDK over real HTTP:
QueryChatappPhoneNumbers, GetChatappPhoneNumberMetric and GetWhatsappHealthStatus, with their
cycles over time, daily buckets with late reads, shapes, overrides, signing, throttling and
faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException

from cams_simulator import Simulator
from cams_simulator.senders import ALIBABA_TIERS, META_TIERS
from exporter.cams.actions import HEALTH_ACTION, PHONE_METRIC_ACTION, PHONE_NUMBERS_ACTION
from exporter.cams.model import DAY_MS, HALF_HOUR_MS
from tests.kit.oracle import sdk_client
from tests.kit.senders import (
    override_can_send,
    override_number,
    sdk_health,
    sdk_number_rows,
    sdk_numbers,
    sdk_raw,
    signed_call,
)
from tests.kit.sim import SimFactory, day_floor, simulators

PERIOD_S = 60.0
FAST = {"qps_limit": 1000, "numbers_qps_limit": 1000, "health_qps_limit": 1000}
FAST |= {"number_metric_qps_limit": 1000}


@pytest.fixture
def make_sim() -> Iterator[SimFactory]:
    with simulators(**FAST) as make:
        yield make


def periods(sim: Simulator, count: int) -> Iterator[int]:
    """Step a static simulator through `count` sender periods (its clock moves by one period
    each time, within the 15-minute signature window); yields each period."""
    try:
        for step in range(count):
            sim.set_clock_offset(step * PERIOD_S)
            yield sim.sender_period()
    finally:
        sim.set_clock_offset(0)


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize("v1", [False, True], ids=["v3", "v1"])
def test_sdk_reads_phone_numbers_metrics_and_health(make_sim: SimFactory, v1: bool) -> None:
    sim = make_sim(static=True, phone_numbers=5, templates=3)
    client = sdk_client(sim, v2=v1)
    numbers = sdk_numbers(client)
    assert [n.phone_number for n in numbers] == [f"658001{i:04d}" for i in range(5)]
    for number in numbers:
        assert number.verified_name.startswith("Demo ")
        assert number.quality_rating in ("GREEN", "YELLOW", "RED", "UNKNOWN")
        assert number.messaging_limit_tier in ALIBABA_TIERS + META_TIERS
        assert number.status in ("CONNECTED", "FLAGGED", "RATE_LIMITED", "PENDING")
        assert number.code_verification_status == "VERIFIED"
    assert (numbers[0].quality_rating, numbers[0].status) == ("GREEN", "CONNECTED")
    assert (numbers[4].quality_rating, numbers[4].status) == ("UNKNOWN", "PENDING")
    pending = sdk_numbers(client, status="PENDING")
    assert [n.phone_number for n in pending] == [numbers[4].phone_number]

    end = now_ms()
    start = day_floor(end) - 2 * DAY_MS
    rows = sdk_number_rows(client, numbers[1].phone_number, start, end)
    assert [r.start for r in rows] == [start, start + DAY_MS, start + 2 * DAY_MS]
    for row in rows:
        assert row.end - row.start == DAY_MS and row.granularity == "DAILY"
        assert row.phone_number == numbers[1].phone_number
        assert row.sent_count >= row.delivered_count >= 0
    query = {"PhoneNumber": numbers[1].phone_number, "Start": str(start), "End": str(end)}
    raw = sdk_raw(client, PHONE_METRIC_ACTION, query)["Data"]
    assert [r["SentCount"] for r in raw] == [r.sent_count for r in rows]
    assert all(r["DeliveredCount"] >= r["ReadCount"] >= 0 for r in raw)
    assert sum(r["SentCount"] for r in raw) > 0

    waba = sdk_health(client, "waba")
    assert waba.entities[0].entity_type == "WABA" and waba.entities[0].waba_id
    phone = sdk_health(client, "phone", phone_number=numbers[0].phone_number)
    assert phone.can_send_message in ("AVAILABLE", "LIMITED")
    assert phone.entities[0].entity_type == "PHONE_NUMBER"
    assert phone.entities[0].phone_number == numbers[0].phone_number
    template = sim.templates()[0]
    health = sdk_health(client, "template", template_code=template.code, language="en")
    entity = health.entities[0]
    assert (entity.entity_type, entity.template_code, entity.language) == (
        "MESSAGE_TEMPLATE",
        template.code,
        "en",
    )
    assert {e.entity_type for e in health.entities} == {"MESSAGE_TEMPLATE", "WABA", "BUSINESS"}


def test_numbers_walk_their_cycle(make_sim: SimFactory) -> None:
    """Ratings go GREEN, GREEN, YELLOW, RED (FLAGGED or RATE_LIMITED), YELLOW and GREEN with the
    tier one step lower, then back; numbers 1 and 2 are half a cycle apart."""
    sim = make_sim(static=True, phone_numbers=3, sender_period_s=PERIOD_S)
    client = sdk_client(sim)
    seen: dict[str, list[tuple[str, str, str]]] = {}
    for _ in periods(sim, 12):
        states = {}
        for n in sdk_numbers(client):
            states[n.phone_number] = (n.quality_rating, n.status, n.messaging_limit_tier)
            seen.setdefault(n.phone_number, []).append(states[n.phone_number])
        first, second = list(states.values())[1:]
        assert "YELLOW" in (first[0], second[0]) or "RED" in (first[0], second[0])
    steady, odd, even = seen.values()
    assert set(steady) == {("GREEN", "CONNECTED", "UNLIMITED")}
    for walk, bad, tiers in ((odd, "FLAGGED", ALIBABA_TIERS), (even, "RATE_LIMITED", META_TIERS)):
        assert walk[:6] == walk[6:], "the cycle repeats every six periods"
        red = next(i for i, s in enumerate(walk) if s[0] == "RED")
        cycle = [walk[(red - 3 + i) % 12] for i in range(6)]
        assert [s[0] for s in cycle] == ["GREEN", "GREEN", "YELLOW", "RED", "YELLOW", "GREEN"]
        assert [s[1] for s in cycle] == ["CONNECTED"] * 3 + [bad] + ["CONNECTED"] * 2
        base, lowered = tiers.index(cycle[0][2]), tiers.index(cycle[4][2])
        assert lowered == base - 1 and cycle[5][2] == cycle[4][2]
        assert cycle[3][2] == cycle[0][2]


def test_health_follows_the_numbers_and_templates_go_limited_and_blocked(
    make_sim: SimFactory,
) -> None:
    sim = make_sim(static=True, phone_numbers=3, templates=5, sender_period_s=PERIOD_S)
    client = sdk_client(sim)
    template_states: set[str] = set()
    waba_states: set[str] = set()
    for period in periods(sim, 8):
        for number in sdk_numbers(client):
            data = sdk_health(client, "phone", phone_number=number.phone_number)
            entity = data.entities[0]
            expected = "AVAILABLE" if number.status == "CONNECTED" else "LIMITED"
            assert entity.can_send_message == expected, number.status
            assert bool(entity.errors) == (expected != "AVAILABLE")
            for error in entity.errors:
                assert error.error_code and error.error_description and error.possible_solution
        waba = sdk_health(client, "waba").entities[0]
        waba_states.add(waba.can_send_message)
        assert (period % 8 == 7) == (waba.can_send_message == "LIMITED")
        for template in sim.templates():
            data = sdk_health(
                client, "template", template_code=template.code, language=template.language
            )
            entity = data.entities[0]
            template_states.add(entity.can_send_message)
            assert bool(entity.errors) == (entity.can_send_message != "AVAILABLE")
            order = {"AVAILABLE": 0, "LIMITED": 1, "BLOCKED": 2}
            worst = max((e.can_send_message for e in data.entities), key=order.__getitem__)
            assert data.can_send_message == worst
    assert template_states == {"AVAILABLE", "LIMITED", "BLOCKED"}
    assert waba_states == {"AVAILABLE", "LIMITED"}


def test_number_buckets_shapes_and_half_hours(make_sim: SimFactory) -> None:
    sims = {
        shape: make_sim(static=True, shape=shape)
        for shape in ("per-bucket", "aggregate", "utc8", "sparse")
    }
    end = now_ms()
    start = day_floor(end) - 9 * DAY_MS
    number = sdk_numbers(sdk_client(sims["per-bucket"]))[2].phone_number

    def raw(sim: Simulator, granularity: str = "DAILY") -> list[dict[str, Any]]:
        query = {"PhoneNumber": number, "Start": str(start), "End": str(end)}
        query["Granularity"] = granularity
        return list(sdk_raw(sdk_client(sim), PHONE_METRIC_ACTION, query)["Data"])

    days = raw(sims["per-bucket"])
    assert len(days) == 10 and all(r["Start"] % DAY_MS == 0 for r in days)
    (total,) = raw(sims["aggregate"])
    assert (total["Start"], total["End"]) == (start, end)
    for field in ("SentCount", "DeliveredCount", "ReadCount"):
        assert total[field] == sum(r[field] for r in days)
    assert all(r["Start"] % DAY_MS == 16 * 3_600_000 for r in raw(sims["utc8"]))
    assert raw(sims["sparse"]) == [r for r in days if r["SentCount"] or r["DeliveredCount"]]
    halves = raw(sims["per-bucket"], "HALF_HOUR")
    assert all(r["End"] - r["Start"] == HALF_HOUR_MS for r in halves)
    for day in days[:-1]:  # today's half hours after `end` are not asked for
        inside = [r for r in halves if day["Start"] <= r["Start"] < day["End"]]
        assert sum(r["SentCount"] for r in inside) == day["SentCount"]


def test_live_number_buckets_grow_with_late_reads(make_sim: SimFactory) -> None:
    sim = make_sim()
    client = sdk_client(sim)
    number = sdk_numbers(client)[1].phone_number
    today = day_floor(now_ms())
    query = {"PhoneNumber": number, "Start": str(today - 3 * DAY_MS), "End": str(today + DAY_MS)}
    before: dict[int, dict[str, Any]] = {}
    grew = False
    for hours in (0, 6, 30, 80):
        sim.set_clock_offset(hours * 3600)
        body = signed_call(sim, PHONE_METRIC_ACTION, query, offset_s=hours * 3600)
        rows = {r["Start"]: r for r in body["Data"]}
        for start, row in rows.items():
            old = before.get(start)
            if old is not None:
                for field in ("SentCount", "DeliveredCount", "ReadCount"):
                    assert row[field] >= old[field], (hours, start, field)
                grew |= row["ReadCount"] > old["ReadCount"] and start < today
        before = rows
    assert grew, "a finished day kept getting reads"
    sim.set_clock_offset(0)


def test_overrides_play_unknown_values_and_vanishing_numbers(make_sim: SimFactory) -> None:
    sim = make_sim(static=True, templates=2)
    client = sdk_client(sim)
    first, second, _ = (n.phone_number for n in sdk_numbers(client))
    override_number(sim, phone_number=first, QualityRating="PURPLE", MessagingLimitTier="TIER_7")
    override_number(sim, phone_number=second, listed=False)
    numbers = {n.phone_number: n for n in sdk_numbers(client)}
    assert second not in numbers
    assert (numbers[first].quality_rating, numbers[first].messaging_limit_tier) == (
        "PURPLE",
        "TIER_7",
    )
    template = sim.templates()[0]
    override_can_send(
        sim, node="template", template_code=template.code, language="en", can_send="RESTRICTED"
    )
    data = sdk_health(client, "template", template_code=template.code, language="en")
    assert data.entities[0].can_send_message == "RESTRICTED"
    override_can_send(sim, node="waba", can_send="BLOCKED")
    assert sdk_health(client, "waba").can_send_message == "BLOCKED"
    override_number(sim, phone_number=second, reset=True)
    override_number(sim, phone_number=first, reset=True)
    assert len(sdk_numbers(client)) == 3
    assert sdk_numbers(client)[0].quality_rating == "GREEN"


def test_parameter_checks(make_sim: SimFactory) -> None:
    sim = make_sim(static=True)
    client = sdk_client(sim)
    with pytest.raises(ClientException) as no_number:
        sdk_number_rows(client, "", now_ms() - DAY_MS, now_ms())
    assert no_number.value.code == "MissingParameter"
    with pytest.raises(ClientException) as too_long:
        sdk_number_rows(client, "6580010001", now_ms() - 40 * DAY_MS, now_ms())
    assert too_long.value.code == "InvalidParameter"
    assert sdk_number_rows(client, "123", now_ms() - DAY_MS, now_ms()) == []
    with pytest.raises(ClientException) as no_node:
        sdk_raw(client, HEALTH_ACTION, {"CustSpaceId": "cams-demo"})
    assert no_node.value.code == "MissingParameter"
    with pytest.raises(ClientException) as bad_node:
        sdk_health(client, "planet")
    assert bad_node.value.code == "InvalidParameter"
    with pytest.raises(ClientException) as no_template:
        sdk_health(client, "template", template_code="nope", language="en")
    assert no_template.value.code == "InvalidParameter"


def test_sender_actions_are_signed_and_throttled_per_action(make_sim: SimFactory) -> None:
    sim = make_sim(static=True, health_qps_limit=2, numbers_qps_limit=3)
    with pytest.raises(ClientException) as wrong:
        sdk_numbers(sdk_client(sim, secret="wrong"))
    assert wrong.value.code == "SignatureDoesNotMatch"
    client = sdk_client(sim)
    sim.reset_stats()
    outcomes = []
    for _ in range(5):
        try:
            sdk_health(client, "waba")
            outcomes.append("OK")
        except ClientException as exc:
            outcomes.append(exc.code)
    assert outcomes[:2] == ["OK", "OK"] and "System.LimitControl" in outcomes[2:]
    assert len(sdk_numbers(client)) == 3, "another action's limit is its own"
    stats = sim.stats()["actions"]
    assert stats[HEALTH_ACTION]["max_ok_in_1s"] == 2
    assert stats[HEALTH_ACTION]["throttled"] == outcomes.count("System.LimitControl")
    assert stats[PHONE_NUMBERS_ACTION]["ok"] == 1


def test_faults_reach_the_sender_actions(make_sim: SimFactory) -> None:
    sim = make_sim(static=True, faults="5xx=1,seed=3")
    client = sdk_client(sim)
    for read in (
        lambda: sdk_numbers(client),
        lambda: sdk_number_rows(client, "6580010001", now_ms() - DAY_MS, now_ms()),
        lambda: sdk_health(client, "waba"),
    ):
        with pytest.raises(ServerException) as failed:
            read()
        assert failed.value.code in ("ServiceUnavailable", "InternalError")
    actions = sim.stats()["actions"]
    assert all(actions[a]["errors"] == 1 for a in (PHONE_NUMBERS_ACTION, PHONE_METRIC_ACTION))
