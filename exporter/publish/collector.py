"""Snapshot -> Prometheus metric families for the exporter's status (client_python collectors).

Following client_python's custom-collector pattern, each collector's `collect()` yields metric
families built from one immutable `Snapshot`; nothing here calls the API or waits on polling.
The per-template families are rendered by `exporter.publish.exposition` from
`exporter.publish.families`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.publish.sender_collector import sender_collectors
from exporter.publish.snapshot import Snapshot
from exporter.templates.activity import ACTIVE, IDLE

_Kind = type[GaugeMetricFamily] | type[CounterMetricFamily]
# key -> (family class, name, help, labels), in exposition order.
_ACCOUNT_FAMILIES: dict[str, tuple[_Kind, str, str, list[str]]] = {
    "up": (
        GaugeMetricFamily,
        "cams_up",
        "Whether the last poll cycle of the account read every template (1) or not (0).",
        ["account"],
    ),
    "last": (
        GaugeMetricFamily,
        "cams_poll_last_success_timestamp_seconds",
        "When the account's last fully successful poll cycle ended (unix seconds).",
        ["account"],
    ),
    "duration": (
        GaugeMetricFamily,
        "cams_poll_duration_seconds",
        "How long the account's last poll cycle took.",
        ["account"],
    ),
    "units": (
        GaugeMetricFamily,
        "cams_poll_units",
        "Template-language units the account polls, by read mode (per-language: one call per "
        "unit; per-template: one call per template) and activity (active: read every "
        "poll.interval; idle: no change for poll.idle_after, read once per poll.idle_interval).",
        ["account", "mode", "activity"],
    ),
    "reads": (
        GaugeMetricFamily,
        "cams_poll_reads",
        "GetChatappTemplateMetric reads per poll cycle (before splitting long ranges).",
        ["account"],
    ),
    "wakes": (
        CounterMetricFamily,
        "cams_poll_wakes",
        "Times a space's idle templates were read at once because its phone numbers sent more "
        "than its active templates (sender health's per-number counters).",
        ["account"],
    ),
    "discovered": (
        GaugeMetricFamily,
        "cams_templates_discovered",
        "Template-language rows the last ListChatappTemplate discovery returned.",
        ["account", "space"],
    ),
    "revisions": (
        CounterMetricFamily,
        "cams_downward_revisions_held",
        "Times the API reported lower counts than before; the higher values were kept.",
        ["account"],
    ),
    "resets": (
        CounterMetricFamily,
        "cams_read_window_resets",
        "Buckets past Meta's 7-day read window whose reads or clicks fell while sent and "
        "delivered stayed (the documented reset); the values read before were kept.",
        ["account"],
    ),
    "changes": (
        CounterMetricFamily,
        "cams_settled_bucket_changes",
        "Settled days the API answered differently when re-read after folding (poll.lookback "
        "too short for the API); the counters kept the settled values.",
        ["account"],
    ),
    "complete": (
        GaugeMetricFamily,
        "cams_read_counters_complete_since_timestamp_seconds",
        "From when the account's read and click counters hold every read and click the API "
        "showed (their origin, unless days past the read window were first read after a reset).",
        ["account"],
    ),
    "shape": (
        GaugeMetricFamily,
        "cams_metric_shape_info",
        "How GetChatappTemplateMetric answers (per-bucket rows or one aggregate row).",
        ["account", "shape"],
    ),
}


class AccountCollector(Collector):
    """Per-account polling status, from one snapshot.

    # HELP cams_up Whether the last poll cycle of the account read every template (1) or not (0).
    # TYPE cams_up gauge
    cams_up{account="main"} 1.0
    # TYPE cams_poll_last_success_timestamp_seconds gauge
    cams_poll_last_success_timestamp_seconds{account="main"} 1.764028800e+09
    # TYPE cams_poll_units gauge
    cams_poll_units{account="main",activity="active",mode="per-language"} 40.0
    cams_poll_units{account="main",activity="idle",mode="per-language"} 960.0
    # TYPE cams_downward_revisions_held_total counter
    cams_downward_revisions_held_total{account="main"} 0.0
    # TYPE cams_read_window_resets_total counter
    cams_read_window_resets_total{account="main"} 0.0
    # TYPE cams_settled_bucket_changes_total counter
    cams_settled_bucket_changes_total{account="main"} 0.0
    # TYPE cams_read_counters_complete_since_timestamp_seconds gauge
    cams_read_counters_complete_since_timestamp_seconds{account="main"} 1.7640288e+09
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        f = {
            key: kind(name, text, labels=labels)
            for key, (kind, name, text, labels) in _ACCOUNT_FAMILIES.items()
        }
        for account in self._snapshot.accounts:
            name = [account.name]
            f["up"].add_metric(name, 1 if account.up else 0)
            if account.last_poll_success is not None:
                f["last"].add_metric(name, account.last_poll_success)
            if account.last_poll_duration is not None:
                f["duration"].add_metric(name, account.last_poll_duration)
            idle = account.idle_units
            f["units"].add_metric([account.name, account.mode, ACTIVE], account.units - idle)
            f["units"].add_metric([account.name, account.mode, IDLE], idle)
            f["reads"].add_metric(name, account.reads)
            if account.waking:
                f["wakes"].add_metric(name, account.wakes)
            for space, count in account.templates_discovered:
                f["discovered"].add_metric([account.name, space], count)
            f["revisions"].add_metric(name, account.revisions_held)
            f["resets"].add_metric(name, account.read_window_resets)
            f["changes"].add_metric(name, account.settled_changes)
            if account.reads_complete_since is not None:
                f["complete"].add_metric(name, account.reads_complete_since)
            f["shape"].add_metric([account.name, account.shape], 1)
        yield from f.values()


def status_registry(snapshot: Snapshot) -> CollectorRegistry:
    """A registry holding the status collectors for `snapshot` (and the sender-health ones of
    `exporter.publish.sender_collector` when an account opted in)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AccountCollector(snapshot))
    for collector in sender_collectors(snapshot):
        registry.register(collector)
    return registry
