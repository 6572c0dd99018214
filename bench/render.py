"""The "render on every scrape" baseline: client_python's generate_latest on the exporter's data.

`snapshot_from_exposition` rebuilds the exporter's `Snapshot` from the text it served (every
template series and account status), so that `generate_latest(snapshot_registry(snap))` renders
the very same data; `time_render` times that, plus gzip, in this process. The rebuilt render is
checked byte for byte against the snapshot part of what the exporter served.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.cams.model import UnitKey
from exporter.counting.state import Counts
from exporter.publish.snapshot import Snapshot
from exporter.templates.view import AccountStatus, TemplateSeries
from tests.kit.collectors import snapshot_registry

_KEY = ("account", "space", "template_code", "language", "template_type")


@dataclass
class _Unit:
    name: str = ""
    category: str = ""
    audit_status: str = ""
    sent: int = 0
    delivered: int = 0
    read: int = 0
    clicks: list[tuple[str, str, int]] = field(default_factory=list)
    last_success: float | None = None
    newest_data: float | None = None
    idle_interval: float | None = None


@dataclass
class _Account:
    up: bool = False
    last_poll_success: float | None = None
    last_poll_duration: float | None = None
    units: int = 0
    idle_units: int = 0
    reads: int = 0
    wakes: int | None = None
    mode: str = "per-language"
    discovered: list[tuple[str, int]] = field(default_factory=list)
    revisions: int = 0
    resets: int = 0
    changes: int = 0
    complete_since: float | None = None
    shape: str = "per-bucket"


def snapshot_from_exposition(text: str) -> Snapshot:
    """The Snapshot whose snapshot part renders as `text` does (self-metrics are ignored)."""
    units: dict[UnitKey, _Unit] = {}
    accounts: dict[str, _Account] = {}

    def unit(labels: dict[str, str]) -> _Unit:
        key = UnitKey(*(labels[k] for k in _KEY))
        return units.setdefault(key, _Unit())

    def account(labels: dict[str, str]) -> _Account:
        return accounts.setdefault(labels["account"], _Account())

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels, value, name = s.labels, s.value, s.name
            if name == "cams_template_messages_sent_total":
                unit(labels).sent = int(value)
            elif name == "cams_template_messages_delivered_total":
                unit(labels).delivered = int(value)
            elif name == "cams_template_messages_read_total":
                unit(labels).read = int(value)
            elif name == "cams_template_button_clicks_total":
                unit(labels).clicks.append((labels["button_type"], labels["button"], int(value)))
            elif name == "cams_template_info":
                u = unit(labels)
                u.name, u.category = labels["template_name"], labels["category"]
                u.audit_status = labels["audit_status"]
            elif name == "cams_template_last_success_timestamp_seconds":
                unit(labels).last_success = value
            elif name == "cams_template_newest_data_timestamp_seconds":
                unit(labels).newest_data = value
            elif name == "cams_template_idle_interval_seconds":
                unit(labels).idle_interval = value
            elif name == "cams_up":
                account(labels).up = value == 1
            elif name == "cams_poll_last_success_timestamp_seconds":
                account(labels).last_poll_success = value
            elif name == "cams_poll_duration_seconds":
                account(labels).last_poll_duration = value
            elif name == "cams_poll_units":  # one sample per activity (active, idle)
                account(labels).units += int(value)
                if labels["activity"] == "idle":
                    account(labels).idle_units = int(value)
                account(labels).mode = labels["mode"]
            elif name == "cams_poll_wakes_total":
                account(labels).wakes = int(value)
            elif name == "cams_poll_reads":
                account(labels).reads = int(value)
            elif name == "cams_templates_discovered":
                account(labels).discovered.append((labels["space"], int(value)))
            elif name == "cams_downward_revisions_held_total":
                account(labels).revisions = int(value)
            elif name == "cams_read_window_resets_total":
                account(labels).resets = int(value)
            elif name == "cams_settled_bucket_changes_total":
                account(labels).changes = int(value)
            elif name == "cams_read_counters_complete_since_timestamp_seconds":
                account(labels).complete_since = value
            elif name == "cams_metric_shape_info":
                account(labels).shape = labels["shape"]
    series = tuple(
        TemplateSeries(
            key=key,
            name=u.name,
            category=u.category,
            audit_status=u.audit_status,
            counts=Counts(u.sent, u.delivered, u.read, tuple(sorted(u.clicks))),
            last_success=u.last_success,
            newest_data=u.newest_data,
            idle_interval=u.idle_interval,
        )
        for key, u in sorted(units.items())
    )
    statuses = tuple(
        AccountStatus(
            name=name,
            endpoint="",
            spaces=tuple(space for space, _ in a.discovered),
            units=a.units,
            idle_units=a.idle_units,
            cycle_units=a.units,
            units_done=a.units,
            waking=a.wakes is not None,
            wakes=a.wakes or 0,
            reads=a.reads,
            mode=a.mode,
            first_cycle_complete=True,
            up=a.up,
            last_poll_success=a.last_poll_success,
            last_poll_duration=a.last_poll_duration,
            shape=a.shape,
            revisions_held=a.revisions,
            templates_discovered=tuple(a.discovered),
            read_window_resets=a.resets,
            settled_changes=a.changes,
            reads_complete_since=a.complete_since,
        )
        for name, a in accounts.items()
    )
    return Snapshot(generation=1, created=time.time(), accounts=statuses, series=series)


def render(snapshot: Snapshot) -> bytes:
    """What rendering on every scrape does: a registry over the snapshot, generate_latest."""
    body: bytes = generate_latest(snapshot_registry(snapshot))
    return body


def time_render(snapshot: Snapshot, runs: int) -> dict[str, list[float]]:
    """Seconds of `runs` renders (text format), and of the same render followed by gzip."""
    plain: list[float] = []
    zipped: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        body = render(snapshot)
        plain.append(time.perf_counter() - started)
        gzip.compress(body, 6, mtime=0)
        zipped.append(time.perf_counter() - started)
    return {"plain_s": plain, "gzip_s": zipped}


def same_bytes(rendered: bytes, served: Iterable[bytes]) -> bool:
    """Whether every served body starts with exactly the rendered snapshot part."""
    return all(body.startswith(rendered) for body in served)
