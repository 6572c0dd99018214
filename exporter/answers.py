"""CAMS answers -> value objects: the `Data` rows of GetChatappTemplateMetric and the
`ListTemplate` rows of ListChatappTemplate, as frozen dataclasses (`exporter.model`).

A body that is not the documented shape raises ValueError; the client reports it as a
`MalformedResponse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.model import ButtonCount, MetricRow, Template


def count_value(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def parse_metric_rows(body: Mapping[str, Any], code: str, language: str) -> tuple[MetricRow, ...]:
    """`Data` of a GetChatappTemplateMetric answer as MetricRow values."""
    data = body.get("Data") or []
    if not isinstance(data, list):
        raise ValueError("Data is not a list")
    rows = []
    for item in data:
        if not isinstance(item, Mapping):
            raise ValueError("Data element is not an object")
        clicks = []
        for click in item.get("Cliented") or []:
            if isinstance(click, Mapping):
                clicks.append(
                    ButtonCount(
                        button_type=str(click.get("Type") or "unknown"),
                        content=str(click.get("ButtonContent") or ""),
                        count=count_value(click.get("Count")),
                    )
                )
        rows.append(
            MetricRow(
                template_code=str(item.get("TemplateCode") or code),
                language=str(item.get("Language") or language),
                sent=count_value(item.get("SentCount")),
                delivered=count_value(item.get("DeliveredCount")),
                read=count_value(item.get("ReadCount")),
                clicks=tuple(clicks),
                start_ms=count_value(item.get("Start")),
                end_ms=count_value(item.get("End")),
            )
        )
    return tuple(rows)


def parse_templates(body: Mapping[str, Any]) -> tuple[Template, ...]:
    """`ListTemplate` of a ListChatappTemplate answer as Template values."""
    items = body.get("ListTemplate") or []
    if not isinstance(items, list):
        raise ValueError("ListTemplate is not a list")
    out = []
    for item in items:
        if not isinstance(item, Mapping) or not item.get("TemplateCode"):
            continue
        updated = item.get("LastUpdateTime")
        out.append(
            Template(
                code=str(item["TemplateCode"]),
                name=str(item.get("TemplateName") or ""),
                language=str(item.get("Language") or ""),
                category=str(item.get("Category") or ""),
                audit_status=str(item.get("AuditStatus") or ""),
                template_type=str(item.get("TemplateType") or "WHATSAPP"),
                last_update_ms=count_value(updated) if updated is not None else None,
            )
        )
    return tuple(out)
