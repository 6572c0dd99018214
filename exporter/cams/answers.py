"""CAMS answers -> value objects; what cannot be vouched for raises `AnomalousAnswer`.

`parse_metric_answer` turns a GetChatappTemplateMetric body into `MetricRow` values and
`parse_templates` a ListChatappTemplate page into `Template` values. Both refuse what they cannot
vouch for with `AnomalousAnswer` (never a silent zero): `Success: false`, a missing or null
`Data`, a count that is not a non-negative integer (numeric strings and integral floats are
fine: `"10"`, `10.0`, `"10.0"`), a row whose `End` is not after its `Start`.

The rows are then checked against the query they answer by the counting layer
(`exporter.counting.checks`).

Every text that may become a label value goes through `safe_text`: lone UTF-16 surrogates,
control characters (C0, DEL, C1) and undecodable bytes become U+FFFD, so rendering can never fail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from exporter.cams.errors import AnomalousAnswer
from exporter.cams.model import ButtonCount, MetricRow, Template

REPLACEMENT = "\ufffd"
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def safe_text(value: Any) -> str:
    """`value` as text that is valid UTF-8 and free of control characters (U+FFFD instead)."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(REPLACEMENT, text)


def normal_language(language: str) -> str:
    """A language code compared loosely: case and `_`/`-` do not matter (pt_BR == pt-br)."""
    return language.strip().lower().replace("-", "_")


def count_value(value: Any, what: str = "count") -> int:
    """A non-negative integer count; absent or null is 0. AnomalousAnswer otherwise."""
    if value is None:
        return 0
    number: float
    if isinstance(value, bool):
        raise AnomalousAnswer("bad_count", f"expected {what} to be an integer, got {value!r}")
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip()) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            raise AnomalousAnswer(
                "bad_count", f"expected {what} to be an integer, got {safe_text(value)[:40]!r}"
            ) from None
    else:
        raise AnomalousAnswer(
            "bad_count", f"expected {what} to be an integer, got a {type(value).__name__}"
        )
    if not math.isfinite(number) or number != int(number) or number < 0:
        raise AnomalousAnswer(
            "bad_count", f"expected {what} to be a non-negative integer, got {value!r}"
        )
    return int(number)


def _success_and_data(body: Mapping[str, Any], action: str, key: str) -> list[Any]:
    if body.get("Success") is False:
        raise AnomalousAnswer(
            "success_false", f"{action} answered Code OK but Success false", action=action
        )
    if key not in body or body[key] is None:
        raise AnomalousAnswer(
            "missing_data",
            f"expected {key} in the answer, got {'null' if key in body else 'none'}",
            action=action,
        )
    data = body[key]
    if not isinstance(data, list):
        raise AnomalousAnswer(
            "missing_data",
            f"expected {key} to be a list, got a {type(data).__name__}",
            action=action,
        )
    return data


def _clicks(item: Mapping[str, Any]) -> tuple[ButtonCount, ...]:
    raw = item.get("Cliented")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise AnomalousAnswer(
            "bad_row", f"expected Cliented to be a list, got {type(raw).__name__}"
        )
    clicks = []
    for click in raw:
        if not isinstance(click, Mapping):
            raise AnomalousAnswer("bad_row", "expected each Cliented element to be an object")
        clicks.append(
            ButtonCount(
                button_type=safe_text(click.get("Type") or "unknown"),
                content=safe_text(click.get("ButtonContent") or ""),
                count=count_value(click.get("Count"), "Cliented.Count"),
            )
        )
    return tuple(clicks)


def _bounds(item: Mapping[str, Any]) -> tuple[int, int]:
    """A row's (Start, End) in ms: both present, integers, End after Start."""
    if item.get("Start") is None or item.get("End") is None:
        raise AnomalousAnswer("bad_bounds", "expected each row to carry Start and End")
    start = count_value(item["Start"], "Start")
    end = count_value(item["End"], "End")
    if end <= start:
        raise AnomalousAnswer(
            "bad_bounds", f"expected a row with End > Start, got Start {start} End {end}"
        )
    return start, end


def parse_metric_answer(
    body: Mapping[str, Any], code: str, language: str | None
) -> tuple[MetricRow, ...]:
    """`Data` of a GetChatappTemplateMetric answer as MetricRow values, or AnomalousAnswer.

    Rows without `TemplateCode` or `Language` belong to the queried template and language
    (`language` None: the query named none, and a row must name its own).
    """
    rows = []
    for item in _success_and_data(body, "GetChatappTemplateMetric", "Data"):
        if not isinstance(item, Mapping):
            raise AnomalousAnswer("bad_row", "expected each Data element to be an object")
        row_language = item.get("Language") or language
        if row_language is None:
            raise AnomalousAnswer(
                "missing_language", "expected each row to name its Language, got a row without"
            )
        start, end = _bounds(item)
        rows.append(
            MetricRow(
                template_code=safe_text(item.get("TemplateCode") or code),
                language=safe_text(row_language),
                sent=count_value(item.get("SentCount"), "SentCount"),
                delivered=count_value(item.get("DeliveredCount"), "DeliveredCount"),
                read=count_value(item.get("ReadCount"), "ReadCount"),
                clicks=_clicks(item),
                start_ms=start,
                end_ms=end,
            )
        )
    return tuple(rows)


def parse_templates(body: Mapping[str, Any]) -> tuple[Template, ...]:
    """`ListTemplate` of a ListChatappTemplate answer as Template values, or AnomalousAnswer."""
    out = []
    for item in _success_and_data(body, "ListChatappTemplate", "ListTemplate"):
        if not isinstance(item, Mapping) or not item.get("TemplateCode"):
            continue
        updated = item.get("LastUpdateTime")
        out.append(
            Template(
                code=safe_text(item["TemplateCode"]),
                name=safe_text(item.get("TemplateName") or ""),
                language=safe_text(item.get("Language") or ""),
                category=safe_text(item.get("Category") or ""),
                audit_status=safe_text(item.get("AuditStatus") or ""),
                template_type=safe_text(item.get("TemplateType") or "WHATSAPP"),
                last_update_ms=count_value(updated, "LastUpdateTime")
                if updated is not None
                else None,
            )
        )
    return tuple(out)
