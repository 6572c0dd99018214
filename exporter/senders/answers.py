"""The three sender-health answers -> value objects (`exporter.senders.model`).

A body that is not the documented shape raises ValueError (the client reports it as a
`MalformedResponse`): a list field that is not a list, an element that is not an object, a
GetWhatsappHealthStatus answer without `Data`, or `Success: false`. Values are kept verbatim
as strings; counts that are not counts read as 0, as for the template metrics (a missing
`ReadCount` of GetChatappPhoneNumberMetric stays None: the SDK's model has no such field).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.answers import count_value
from exporter.senders.model import (
    HealthEntity,
    HealthError,
    HealthStatus,
    PhoneNumber,
    PhoneNumberRow,
)


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    return "" if value is None else str(value).strip()


def _objects(body: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = body.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValueError(f"{key} is not a list")
    for item in items:
        if not isinstance(item, Mapping):
            raise ValueError(f"{key} element is not an object")
    return items


def _check_success(body: Mapping[str, Any]) -> None:
    if body.get("Success") is False:
        raise ValueError("Success is false")


def parse_phone_numbers(body: Mapping[str, Any]) -> tuple[PhoneNumber, ...]:
    """`PhoneNumbers` of a QueryChatappPhoneNumbers answer (elements without a number skipped,
    a number listed twice kept once)."""
    _check_success(body)
    out: dict[str, PhoneNumber] = {}
    for item in _objects(body, "PhoneNumbers"):
        number = _text(item, "PhoneNumber")
        if not number or number in out:
            continue
        out[number] = PhoneNumber(
            phone_number=number,
            verified_name=_text(item, "VerifiedName"),
            status=_text(item, "Status"),
            quality_rating=_text(item, "QualityRating"),
            messaging_limit_tier=_text(item, "MessagingLimitTier"),
            code_verification_status=_text(item, "CodeVerificationStatus"),
            name_status=_text(item, "NameStatus"),
        )
    return tuple(out.values())


def parse_phone_number_rows(body: Mapping[str, Any], number: str) -> tuple[PhoneNumberRow, ...]:
    """`Data` of a GetChatappPhoneNumberMetric answer."""
    return tuple(
        PhoneNumberRow(
            phone_number=_text(item, "PhoneNumber") or number,
            sent=count_value(item.get("SentCount")),
            delivered=count_value(item.get("DeliveredCount")),
            read=None if item.get("ReadCount") is None else count_value(item.get("ReadCount")),
            start_ms=count_value(item.get("Start")),
            end_ms=count_value(item.get("End")),
            granularity=_text(item, "Granularity"),
        )
        for item in _objects(body, "Data")
    )


def _errors(item: Mapping[str, Any]) -> tuple[HealthError, ...]:
    return tuple(
        HealthError(
            code=_text(error, "ErrorCode"),
            description=_text(error, "ErrorDescription"),
            solution=_text(error, "PossibleSolution"),
        )
        for error in _objects(item, "Errors")
    )


def parse_health_status(body: Mapping[str, Any]) -> HealthStatus:
    """`Data` of a GetWhatsappHealthStatus answer."""
    _check_success(body)
    data = body.get("Data")
    if not isinstance(data, Mapping):
        raise ValueError("Data is missing" if data is None else "Data is not an object")
    entities = tuple(
        HealthEntity(
            entity_type=_text(item, "EntityType"),
            can_send=_text(item, "CanSendMessage"),
            template_code=_text(item, "TemplateCode"),
            language=_text(item, "Language"),
            phone_number=_text(item, "PhoneNumber"),
            waba_id=_text(item, "WabaId"),
            business_id=_text(item, "BusinessId"),
            errors=_errors(item),
        )
        for item in _objects(data, "Entities")
    )
    return HealthStatus(can_send=_text(data, "CanSendMessage"), entities=entities)
