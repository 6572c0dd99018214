"""Snapshot -> Prometheus metric families (client_python collectors): the per-template
families and the accounts' polling status.

Following client_python's custom-collector pattern, each collector's `collect()` yields metric
families built from one immutable `Snapshot` (or its series); nothing here calls the API or
waits on polling. `exporter.publish.exposition` renders them with client_python's own
`generate_latest`, once per publish.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.publish.sender_collector import sender_collectors
from exporter.publish.snapshot import Snapshot
from exporter.templates.view import TemplateSeries

LABELS = ("account", "space", "template_code", "language", "template_type")


class TemplateCollector(Collector):
    """Every per-template family of `series`, in one pass over them.

    # HELP cams_template_messages_sent_total Template messages sent, as reported by …
    # TYPE cams_template_messages_sent_total counter
    cams_template_messages_sent_total{account="main",language="en",space="cams-1",
        template_code="744c…",template_type="WHATSAPP"} 1234.0
    (likewise _delivered_total and _read_total)
    # TYPE cams_template_button_clicks_total counter
    cams_template_button_clicks_total{…,button="Shop now",button_type="url",…} 56.0
    # TYPE cams_template_info gauge
    cams_template_info{…,template_name="spring_sale",category="MARKETING",audit_status="pass"} 1.0
    # TYPE cams_template_last_success_timestamp_seconds gauge
    cams_template_last_success_timestamp_seconds{…} 1.7640288e+09
    # TYPE cams_template_newest_data_timestamp_seconds gauge
    cams_template_newest_data_timestamp_seconds{…} 1.7639712e+09
    """

    def __init__(self, series: Sequence[TemplateSeries]) -> None:
        self._series = series

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        labels = list(LABELS)
        sent = CounterMetricFamily(
            "cams_template_messages_sent",
            "Template messages sent, as reported by GetChatappTemplateMetric, since the origin.",
            labels=labels,
        )
        delivered = CounterMetricFamily(
            "cams_template_messages_delivered",
            "Template messages delivered to the recipient's device, since the origin.",
            labels=labels,
        )
        read = CounterMetricFamily(
            "cams_template_messages_read",
            "Template messages read by the recipient, since the origin.",
            labels=labels,
        )
        clicks = CounterMetricFamily(
            "cams_template_button_clicks",
            "Clicks on a template's buttons, by button type and button text, since the origin.",
            labels=[*labels, "button_type", "button"],
        )
        info = GaugeMetricFamily(
            "cams_template_info",
            "Template metadata from ListChatappTemplate; the value is always 1.",
            labels=[*labels, "template_name", "category", "audit_status"],
        )
        last_success = GaugeMetricFamily(
            "cams_template_last_success_timestamp_seconds",
            "When this template and language were last read successfully (unix seconds).",
            labels=labels,
        )
        newest_data = GaugeMetricFamily(
            "cams_template_newest_data_timestamp_seconds",
            "Start of the newest bucket with any activity for this template and language.",
            labels=labels,
        )
        for one in self._series:
            k = one.key
            values = [k.account, k.space, k.template_code, k.language, k.template_type]
            counts = one.counts
            sent.add_metric(values, counts.sent)
            delivered.add_metric(values, counts.delivered)
            read.add_metric(values, counts.read)
            for kind, button, count in counts.clicks:
                clicks.add_metric([*values, kind, button], count)
            info.add_metric([*values, one.name, one.category, one.audit_status], 1)
            if one.last_success is not None:
                last_success.add_metric(values, one.last_success)
            if one.newest_data is not None:
                newest_data.add_metric(values, one.newest_data)
        yield from (sent, delivered, read, clicks, info, last_success, newest_data)


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
        "Template-language units the account polls each cycle, by read mode "
        "(per-language: one call per unit; per-template: one call per template).",
        ["account", "mode"],
    ),
    "reads": (
        GaugeMetricFamily,
        "cams_poll_reads",
        "GetChatappTemplateMetric reads per poll cycle (before splitting long ranges).",
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
    # TYPE cams_downward_revisions_held_total counter
    cams_downward_revisions_held_total{account="main"} 0.0
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
            f["units"].add_metric([account.name, account.mode], account.units)
            f["reads"].add_metric(name, account.reads)
            for space, count in account.templates_discovered:
                f["discovered"].add_metric([account.name, space], count)
            f["revisions"].add_metric(name, account.revisions_held)
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
