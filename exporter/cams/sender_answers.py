"""The three sender-health answers -> value objects (`exporter.cams.sender_model`), checked first.

Like the template answers (`exporter.cams.answers`), what the exporter cannot vouch for is refused
with `AnomalousAnswer` (counted in `cams_api_answer_anomalies_total` by kind, never applied):
`Success: false`, a missing or null `PhoneNumbers` / `Data`, a list field that is not a list, an
element that is not an object, a count that is not a non-negative integer, a metric row whose
`End` is not after its `Start`. Every text that may become a label value goes through
`safe_text`. A missing `ReadCount` of GetChatappPhoneNumberMetric stays None: the SDK's model
has no such field, so the real API may not send it.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from exporter.cams.actions import HEALTH_ACTION, PHONE_METRIC_ACTION, PHONE_NUMBERS_ACTION
from exporter.cams.answers import count_value, safe_text
from exporter.cams.errors import AnomalousAnswer
from exporter.cams.sender_model import (
    HealthEntity,
    HealthError,
    HealthStatus,
    PhoneNumber,
    PhoneNumberRow,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    return "" if value is None else safe_text(value).strip()


def _verbatim(
    item: Mapping[str, Any], record: type[DataclassInstance], given: Container[str] = ()
) -> dict[str, str]:
    """The item's text for each field of `record` but those `given`, under the CamelCase of the
    field's name (`verified_name` from `VerifiedName`)."""
    return {
        f.name: _text(item, "".join(part.capitalize() for part in f.name.split("_")))
        for f in fields(record)
        if f.name not in given
    }


def _success(body: Mapping[str, Any], action: str) -> None:
    if body.get("Success") is False:
        raise AnomalousAnswer(
            "success_false", f"{action} answered Code OK but Success false", action=action
        )


def _present(body: Mapping[str, Any], key: str, action: str) -> Any:
    if key not in body or body[key] is None:
        raise AnomalousAnswer(
            "missing_data",
            f"expected {key} in the answer, got {'null' if key in body else 'none'}",
            action=action,
        )
    return body[key]


def _objects(value: Any, key: str, action: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise AnomalousAnswer(
            "missing_data" if key in ("PhoneNumbers", "Data") else "bad_row",
            f"expected {key} to be a list, got a {type(value).__name__}",
            action=action,
        )
    for item in value:
        if not isinstance(item, Mapping):
            raise AnomalousAnswer(
                "bad_row", f"expected each {key} element to be an object", action=action
            )
    return value


def _count(item: Mapping[str, Any], key: str, action: str) -> int:
    try:
        return count_value(item.get(key), key)
    except AnomalousAnswer as exc:  # the same check, named for this action
        raise AnomalousAnswer(exc.kind, exc.detail, action=action) from None


def parse_phone_numbers(body: Mapping[str, Any]) -> tuple[PhoneNumber, ...]:
    """`PhoneNumbers` of a QueryChatappPhoneNumbers answer (elements without a number skipped,
    a number listed twice kept once), or AnomalousAnswer."""
    _success(body, PHONE_NUMBERS_ACTION)
    items = _objects(
        _present(body, "PhoneNumbers", PHONE_NUMBERS_ACTION), "PhoneNumbers", PHONE_NUMBERS_ACTION
    )
    out: dict[str, PhoneNumber] = {}
    for item in items:
        number = _text(item, "PhoneNumber")
        if not number or number in out:
            continue
        out[number] = PhoneNumber(**_verbatim(item, PhoneNumber))
    return tuple(out.values())


def parse_phone_number_rows(body: Mapping[str, Any], number: str) -> tuple[PhoneNumberRow, ...]:
    """`Data` of a GetChatappPhoneNumberMetric answer, or AnomalousAnswer."""
    action = PHONE_METRIC_ACTION
    _success(body, action)
    rows = []
    for item in _objects(_present(body, "Data", action), "Data", action):
        if item.get("Start") is None or item.get("End") is None:
            raise AnomalousAnswer(
                "bad_bounds", "expected each row to carry Start and End", action=action
            )
        start, end = _count(item, "Start", action), _count(item, "End", action)
        if end <= start:
            raise AnomalousAnswer(
                "bad_bounds",
                f"expected a row with End > Start, got Start {start} End {end}",
                action=action,
            )
        rows.append(
            PhoneNumberRow(
                phone_number=_text(item, "PhoneNumber") or number,
                sent=_count(item, "SentCount", action),
                delivered=_count(item, "DeliveredCount", action),
                read=None if item.get("ReadCount") is None else _count(item, "ReadCount", action),
                start_ms=start,
                end_ms=end,
                granularity=_text(item, "Granularity"),
            )
        )
    return tuple(rows)


def _errors(item: Mapping[str, Any]) -> tuple[HealthError, ...]:
    raw = item.get("Errors")
    if raw is None:
        return ()
    return tuple(
        HealthError(
            code=_text(error, "ErrorCode"),
            description=_text(error, "ErrorDescription"),
            solution=_text(error, "PossibleSolution"),
        )
        for error in _objects(raw, "Errors", HEALTH_ACTION)
    )


def parse_health_status(body: Mapping[str, Any]) -> HealthStatus:
    """`Data` of a GetWhatsappHealthStatus answer, or AnomalousAnswer."""
    _success(body, HEALTH_ACTION)
    data = _present(body, "Data", HEALTH_ACTION)
    if not isinstance(data, Mapping):
        raise AnomalousAnswer(
            "missing_data",
            f"expected Data to be an object, got a {type(data).__name__}",
            action=HEALTH_ACTION,
        )
    raw = data.get("Entities")
    entities = tuple(
        HealthEntity(
            **_verbatim(item, HealthEntity, given=("can_send", "errors")),
            can_send=_text(item, "CanSendMessage"),
            errors=_errors(item),
        )
        for item in (_objects(raw, "Entities", HEALTH_ACTION) if raw is not None else [])
    )
    return HealthStatus(can_send=_text(data, "CanSendMessage"), entities=entities)
