"""Parsing the sender-health answers: what is refused as an anomaly (and under which action and
kind), what is kept verbatim, and which entity stands for the node that was asked about."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.cams.errors import AnomalousAnswer
from exporter.cams.sender_answers import (
    parse_health_status,
    parse_phone_number_rows,
    parse_phone_numbers,
)
from exporter.cams.sender_model import HealthEntity, HealthStatus, messaging_limit


@pytest.mark.parametrize(
    ("parse", "body", "action", "kind"),
    [
        (parse_phone_numbers, {"Success": False, "PhoneNumbers": []}, "Query", "success_false"),
        (parse_phone_numbers, {}, "Query", "missing_data"),
        (parse_phone_numbers, {"PhoneNumbers": "x"}, "Query", "missing_data"),
        (parse_phone_numbers, {"PhoneNumbers": [3]}, "Query", "bad_row"),
        (lambda b: parse_phone_number_rows(b, "1"), {"Data": None}, "GetChatapp", "missing_data"),
        (
            lambda b: parse_phone_number_rows(b, "1"),
            {"Data": [{"Start": 5, "End": 5, "SentCount": 1}]},
            "GetChatapp",
            "bad_bounds",
        ),
        (
            lambda b: parse_phone_number_rows(b, "1"),
            {"Data": [{"Start": 1, "End": 5, "SentCount": -2}]},
            "GetChatapp",
            "bad_count",
        ),
        (parse_health_status, {"Data": []}, "GetWhatsapp", "missing_data"),
        (parse_health_status, {"Success": False, "Data": {}}, "GetWhatsapp", "success_false"),
        (parse_health_status, {"Data": {"Entities": [1]}}, "GetWhatsapp", "bad_row"),
    ],
)
def test_what_cannot_be_vouched_for_is_an_anomaly(
    parse: Any, body: dict[str, Any], action: str, kind: str
) -> None:
    with pytest.raises(AnomalousAnswer) as info:
        parse(body)
    assert info.value.action.startswith(action) and info.value.kind == kind
    assert info.value.code == f"AnomalousAnswer.{kind}"


def test_values_are_kept_verbatim_and_made_safe() -> None:
    (number,) = parse_phone_numbers(
        {
            "PhoneNumbers": [
                {"PhoneNumber": "658", "QualityRating": "PURPLE", "VerifiedName": "a\x00b"},
                {"PhoneNumber": "658", "QualityRating": "GREEN"},  # listed twice: the first
                {"VerifiedName": "no number"},
            ]
        }
    )
    assert (number.quality_rating, number.verified_name) == ("PURPLE", "a\ufffdb")
    rows = parse_phone_number_rows(
        {"Data": [{"Start": "1", "End": 2, "SentCount": "3", "DeliveredCount": 2.0}]}, "658"
    )
    assert rows[0].phone_number == "658" and (rows[0].sent, rows[0].delivered) == (3, 2)
    assert rows[0].read is None, "no ReadCount: unknown, not zero"
    assert messaging_limit("tier_1000") == 100_000 and messaging_limit("TIER_7") is None


def test_the_entity_that_stands_for_the_node() -> None:
    body = {
        "Data": {
            "CanSendMessage": "LIMITED",
            "Entities": [
                {"EntityType": "WABA", "CanSendMessage": "AVAILABLE", "WabaId": "9"},
                {
                    "EntityType": "PHONE_NUMBER",
                    "CanSendMessage": "LIMITED",
                    "PhoneNumber": "658",
                    "Errors": [
                        {"ErrorCode": "1", "ErrorDescription": "d", "PossibleSolution": "s"}
                    ],
                },
            ],
        }
    }
    status = parse_health_status(body)
    phone = status.entity_for("phone")
    assert phone is not None and phone.errors[0].solution == "s"
    waba = status.entity_for("waba")
    assert waba is not None and waba.waba_id == "9"
    assert status.entity_for("template") is None
    untyped = HealthStatus("AVAILABLE", (HealthEntity("", "BLOCKED", template_code="t"),))
    found = untyped.entity_for("template")
    assert found is not None and found.can_send == "BLOCKED"
