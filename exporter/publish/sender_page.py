"""The "Sender health" section of the status page, from one frozen `Snapshot`.

`render_sender_section(snapshot)` returns an HTML fragment (empty when no account opted in)
that the landing page puts under its own tables: per account, the rounds' freshness, one row
per phone number (status, rating, tier, can-send) and one row per error GetWhatsappHealthStatus
reports (code, description and the possible solution), plus the values the exporter does not
know. Everything is escaped; nothing here calls the API.
"""

from __future__ import annotations

import math

from exporter.cams.sender_model import NODE_PHONE, NODE_TEMPLATE, NODE_WABA
from exporter.publish.markup import escape, iso, row, table
from exporter.publish.snapshot import Snapshot
from exporter.senders.view import EntityHealth, SenderStatus

_MAX_ROWS = 200
_NUMBER_COLUMNS = (
    "Account",
    "Space",
    "Phone number",
    "Verified name",
    "Status",
    "Quality rating",
    "Messaging limit tier",
    "Conversations / 24 h",
    "Can send",
)
_ERROR_COLUMNS = (
    "Account",
    "Space",
    "Node",
    "Entity",
    "Can send",
    "Error code",
    "Description",
    "Possible solution",
)


def _limit(value: float | None) -> str:
    if value is None:
        return "unknown"
    return "unlimited" if math.isinf(value) else f"{value:,.0f}"


def _entity_name(entity: EntityHealth) -> str:
    if entity.node_type == NODE_TEMPLATE:
        return f"{entity.template_code} ({entity.language})"
    if entity.node_type == NODE_PHONE:
        return entity.phone_number
    return entity.waba_id or "(WABA)"


def _summary(status: SenderStatus) -> str:
    listed = ", ".join(
        f"{space or '(none)'} at {iso(when)}" for space, when in status.numbers_listed
    )
    parts = [f"Phone numbers listed: {listed or 'not yet'}"]
    if status.numbers_error:
        parts.append(f"last listing error: {status.numbers_error}")
    if status.health_enabled:
        if status.health_round_finished is None:
            parts.append("health status: first round running")
        else:
            parts.append(
                f"health status: last round ended {iso(status.health_round_finished)}, "
                f"{status.health_targets} nodes, {status.health_failed} failed, "
                f"every {status.health_interval_s:.0f}s"
            )
    else:
        parts.append("health status: off")
    for field, value, count in status.unknown_values:
        parts.append(f"unknown {field} {value!r} ({count})")
    return f"<p>{escape(status.account)}: " + "; ".join(escape(p) for p in parts) + ".</p>"


def render_sender_section(snapshot: Snapshot) -> str:
    """The section's HTML, or "" when no account has sender health."""
    if not snapshot.senders:
        return ""
    number_rows: list[str] = []
    error_rows: list[str] = []
    for status in snapshot.senders:
        phones = {e.phone_number: e for e in status.health if e.node_type == NODE_PHONE}
        for view in status.numbers:
            n = view.number
            health = phones.get(n.phone_number)
            number_rows.append(
                row(
                    (
                        status.account,
                        view.space or "(none)",
                        n.phone_number,
                        n.verified_name,
                        n.status,
                        n.quality_rating,
                        n.messaging_limit_tier,
                        _limit(view.messaging_limit),
                        health.can_send if health is not None else "not read yet",
                    )
                )
            )
        order = {NODE_WABA: 0, NODE_PHONE: 1, NODE_TEMPLATE: 2}
        for entity in sorted(status.health, key=lambda e: order.get(e.node_type, 3)):
            problems = [(e.code, e.description, e.solution) for e in entity.errors]
            if entity.last_error:
                problems.append((entity.last_error, "the last read failed; values kept", ""))
            for code, description, solution in problems:
                where = (status.account, entity.space or "(none)", entity.node_type)
                what = (_entity_name(entity), entity.can_send, code, description, solution)
                error_rows.append(row(where + what))
    parts = [
        "<h2>Sender health</h2>",
        *(_summary(status) for status in snapshot.senders),
        f"<h3>Phone numbers ({len(number_rows)})</h3>",
        table(_NUMBER_COLUMNS, number_rows, _MAX_ROWS),
        f"<h3>Health status errors ({len(error_rows)})</h3>",
        table(_ERROR_COLUMNS, error_rows, _MAX_ROWS),
    ]
    return "\n".join(parts)
