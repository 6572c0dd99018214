"""Counter values as flat dicts, for the property tests: sent, delivered, read and each
(button type, button) click count as keys of one `Fields` mapping."""

from __future__ import annotations

from typing import Any

from exporter.cams.model import MetricRow, button_type_label

Fields = dict[Any, int]


def plus(a: Fields, b: Fields) -> Fields:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


def nonzero(f: Fields) -> Fields:
    return {k: v for k, v in f.items() if v}


def fields_of_row(row: MetricRow) -> Fields:
    out: Fields = {"sent": row.sent, "delivered": row.delivered, "read": row.read}
    for click in row.clicks:
        key = (button_type_label(click.button_type), click.content)
        out[key] = out.get(key, 0) + click.count
    return out
