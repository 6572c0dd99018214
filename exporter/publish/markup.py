"""The few HTML pieces the status pages share: escaped cells, rows, tables, UTC times."""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime


def escape(value: object) -> str:
    """`value` as text safe inside HTML (quotes included)."""
    return html.escape(str(value), quote=True)


def iso(timestamp: float | None) -> str:
    """A Unix time as `YYYY-MM-DDTHH:MM:SSZ`, or "never"."""
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def row(cells: Iterable[object]) -> str:
    """One table row of escaped cells."""
    return "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in cells) + "</tr>"


def table(columns: Iterable[str], rows: list[str], limit: int | None = None) -> str:
    """A table with a header; beyond `limit` rows, a line says how many more there are."""
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    shown = rows if limit is None else rows[:limit]
    more = ""
    if limit is not None and len(rows) > limit:
        more = f"\n<p>&hellip; and {len(rows) - limit} more.</p>"
    body = "\n".join(shown)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>{more}"
