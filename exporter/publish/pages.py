"""The landing page (`/`): links, readiness, the state of each account and template.

Rendered from the frozen `Snapshot` the poller last published; every dynamic value is
HTML-escaped and an account's endpoint shows only its host and port (never user info, path or
query, which may hold secrets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from exporter.config.durations import format_duration
from exporter.counting.anomalies import AnomalyRecord
from exporter.counting.readwindow import SettledChangeRecord
from exporter.publish.markup import escape, iso, row, table
from exporter.publish.sender_page import render_sender_section
from exporter.publish.snapshot import Snapshot
from exporter.templates.view import AccountStatus, TemplateSeries

_MAX_TEMPLATE_ROWS = 500


def readiness(snapshot: Snapshot) -> tuple[bool, str]:
    """(ready, the one-line answer of /-/ready): ready once every account finished a poll."""
    if snapshot.ready:
        return True, "Ready"
    done, total = snapshot.progress
    percent = done * 100 // total if total else 0
    return False, f"Not ready: {done}/{total} units polled ({percent}%)"


def _endpoint_host(endpoint: str) -> str:
    """HOST[:PORT] of an endpoint URL, never its user info, path or query."""
    try:
        parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port is not None else host


def _space(space: str) -> str:
    return space if space else "(none)"


def _activity(account: AccountStatus) -> str:
    """Active and idle units, how often idle ones are read, and the spaces woken last."""
    if account.idle_interval is None:
        return f"{account.units} active (idle polling off)"
    idle = account.idle_units
    text = (
        f"{account.units - idle} active, {idle} idle (read every "
        f"{format_duration(account.idle_interval)}); this cycle reads {account.cycle_units}"
    )
    if account.waking:
        woken = ", ".join(_space(s) for s in account.woken)
        text += f"; woken: {woken}" if woken else "; waking on"
    return text


def _account_row(account: AccountStatus) -> str:
    units = (
        str(account.units)
        if account.first_cycle_complete
        else f"{account.units_done}/{account.cycle_units}"
    )
    duration = "" if account.last_poll_duration is None else f"{account.last_poll_duration:.1f}s"
    discovered = ", ".join(
        f"{_space(space)}: {count}" for space, count in account.templates_discovered
    )
    cells = (
        account.name,
        _endpoint_host(account.endpoint),
        ", ".join(_space(s) for s in account.spaces),
        units,
        "yes" if account.up else "no",
        iso(account.last_poll_success),
        duration,
        account.last_error_code or "",
        account.shape,
        account.mode,
        _activity(account),
        discovered,
        account.read_window_resets,
        account.settled_changes,
        "" if account.reads_complete_since is None else iso(account.reads_complete_since),
    )
    return row(cells)


def _template_row(series: TemplateSeries) -> str:
    key, counts = series.key, series.counts
    cells = (
        key.account,
        _space(key.space),
        key.template_code,
        key.language,
        key.template_type,
        series.name,
        series.category,
        series.audit_status,
        counts.sent,
        counts.delivered,
        counts.read,
        "active" if series.idle_interval is None else "idle",
        iso(series.last_success),
        series.last_error or "",
    )
    return row(cells)


_ACCOUNT_COLUMNS = (
    "Account",
    "Endpoint",
    "Spaces",
    "Units",
    "Up",
    "Last poll",
    "Poll duration",
    "Last error",
    "Shape",
    "Read mode",
    "Activity",
    "Templates discovered",
    "Read-window resets held",
    "Settled days changed",
    "Reads complete since",
)
_SETTLED_COLUMNS = (
    "Seen",
    "Account",
    "Space",
    "Template",
    "Language",
    "Day",
    "Settled at age",
    "Changed by age",
    "Read before / now",
    "Clicks before / now",
    "Sent before / now",
    "Lookback that catches it",
)
_ANOMALY_COLUMNS = (
    "Last seen",
    "Times",
    "Account",
    "Action",
    "Kind",
    "Space",
    "Template",
    "Language",
    "Expected / got",
)
_TEMPLATE_COLUMNS = (
    "Account",
    "Space",
    "Template code",
    "Language",
    "Type",
    "Name",
    "Category",
    "Audit status",
    "Sent",
    "Delivered",
    "Read",
    "Activity",
    "Last success",
    "Last error",
)
_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:90%}"
    "th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left}th{background:#eee}"
)


def _anomaly_row(record: AnomalyRecord) -> str:
    cells = (
        iso(record.at),
        record.count,
        record.account,
        record.action,
        record.kind,
        _space(record.space) if record.template or record.space else "",
        record.template,
        record.language,
        record.detail,
    )
    return row(cells)


def _settled_row(record: SettledChangeRecord) -> str:
    before, after = record.before, record.after
    cells = (
        iso(record.at),
        record.account,
        _space(record.space),
        record.template,
        record.language,
        iso(record.day)[:10],
        f"{record.folded_age_s / 86400:.1f} d",
        f"{record.age_s / 86400:.1f} d",
        f"{before[2]} / {after[2]}",
        f"{before[3]} / {after[3]}",
        f"{before[0]} / {after[0]}",
        f"{record.lookback_days}d",
    )
    return row(cells)


def render_landing_page(
    snapshot: Snapshot, version: str, telemetry_path: str, reload_enabled: bool = False
) -> str:
    """The HTML of `/`: links, readiness, one row per account and up to 500 template rows."""
    ready, status = readiness(snapshot)
    shown = snapshot.series[:_MAX_TEMPLATE_ROWS]
    hidden = len(snapshot.series) - len(shown)
    links = [
        f'<li><a href="{escape(telemetry_path)}">{escape(telemetry_path)}</a> (metrics)</li>',
        '<li><a href="/-/healthy">/-/healthy</a></li>',
        '<li><a href="/-/ready">/-/ready</a></li>',
    ]
    if reload_enabled:
        links.append("<li>POST /-/reload reloads the configuration</li>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>CAMS Exporter</title>',
        f"<style>{_STYLE}</style></head>",
        "<body>",
        "<h1>CAMS Exporter</h1>",
        "<p>Prometheus exporter for Alibaba Cloud ChatApp Message Service template metrics.</p>",
        f"<p>Version: {escape(version or 'unknown')}</p>",
        "<ul>",
        *links,
        "</ul>",
        f'<p>Status: <strong class="{"ready" if ready else "not-ready"}">'
        f"{escape(status)}</strong></p>",
        f"<p>Snapshot {escape(snapshot.generation)} built "
        f"{escape(iso(snapshot.created or None))}.</p>",
        f"<h2>Accounts ({len(snapshot.accounts)})</h2>",
        table(_ACCOUNT_COLUMNS, [_account_row(a) for a in snapshot.accounts]),
        f"<h2>Templates ({len(snapshot.series)} template-language units)</h2>",
        table(_TEMPLATE_COLUMNS, [_template_row(s) for s in shown]),
    ]
    if hidden:
        parts.append(f"<p>&hellip; and {hidden} more (see {escape(telemetry_path)}).</p>")
    if snapshot.anomalies:
        parts += [
            f"<h2>Answers not applied ({len(snapshot.anomalies)})</h2>",
            "<p>The API answered something the exporter could not vouch for; the templates "
            "keep their last good counts (cams_api_answer_anomalies_total).</p>",
            table(_ANOMALY_COLUMNS, [_anomaly_row(a) for a in snapshot.anomalies]),
        ]
    if snapshot.settled_changes:
        parts += [
            f"<h2>Settled days that changed ({len(snapshot.settled_changes)})</h2>",
            "<p>Days the API answered differently when they were read again after they were "
            "settled: poll.lookback is too short for this API (reads and clicks arrive for 7 "
            "days; see docs/read-window.md). The counters keep the settled values "
            "(cams_settled_bucket_changes_total).</p>",
            table(_SETTLED_COLUMNS, [_settled_row(r) for r in snapshot.settled_changes]),
        ]
    if section := render_sender_section(snapshot):  # "" when no account has sender health
        parts.append(section)
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


@dataclass(frozen=True)
class StatusPages:
    """/-/ready and `/` over whatever snapshot `source` returns, as the web server's handlers."""

    source: Callable[[], Snapshot]
    version: str

    def ready(self) -> tuple[bool, str]:
        """The answer of /-/ready."""
        return readiness(self.source())

    def landing(self, telemetry_path: str, reload_enabled: bool) -> str:
        """The HTML of `/`."""
        return render_landing_page(self.source(), self.version, telemetry_path, reload_enabled)
