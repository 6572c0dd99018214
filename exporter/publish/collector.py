"""Snapshot -> Prometheus metric families (client_python collectors): the per-template
families and the accounts' polling status.

Following client_python's custom-collector pattern, each collector's `collect()` yields metric
families built from one immutable `Snapshot` (or its series); nothing here calls the API or
waits on polling. `exporter.publish.exposition` renders them with client_python's own
`generate_latest`, once per publish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.publish.sender_collector import sender_collectors
from exporter.publish.snapshot import Snapshot
from exporter.templates.activity import ACTIVE, IDLE
from exporter.templates.view import TemplateSeries

LABELS = ("account", "space", "template_code", "language", "template_type")

SampleValues = Iterable[tuple[tuple[str, ...], float]]


@dataclass(frozen=True, slots=True)
class TemplateFamily:
    """One per-template metric family: its name, type, help, extra labels and samples."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    extra: tuple[str, ...]
    samples: Callable[[TemplateSeries], SampleValues]


def _one(value: float | None) -> SampleValues:
    return () if value is None else (((), value),)


TEMPLATE_FAMILIES = (
    TemplateFamily(
        "cams_template_messages_sent",
        "counter",
        "Template messages sent, as reported by GetChatappTemplateMetric, since the origin.",
        (),
        lambda s: (((), s.counts.sent),),
    ),
    TemplateFamily(
        "cams_template_messages_delivered",
        "counter",
        "Template messages delivered to the recipient's device, since the origin.",
        (),
        lambda s: (((), s.counts.delivered),),
    ),
    TemplateFamily(
        "cams_template_messages_read",
        "counter",
        "Template messages read by the recipient, since the origin.",
        (),
        lambda s: (((), s.counts.read),),
    ),
    TemplateFamily(
        "cams_template_button_clicks",
        "counter",
        "Clicks on a template's buttons, by button type and button text, since the origin.",
        ("button_type", "button"),
        lambda s: (((kind, button), count) for kind, button, count in s.counts.clicks),
    ),
    TemplateFamily(
        "cams_template_info",
        "gauge",
        "Template metadata from ListChatappTemplate; the value is always 1.",
        ("template_name", "category", "audit_status"),
        lambda s: (((s.name, s.category, s.audit_status), 1),),
    ),
    TemplateFamily(
        "cams_template_last_success_timestamp_seconds",
        "gauge",
        "When this template and language were last read successfully (unix seconds).",
        (),
        lambda s: _one(s.last_success),
    ),
    TemplateFamily(
        "cams_template_newest_data_timestamp_seconds",
        "gauge",
        "Start of the newest bucket with any activity for this template and language.",
        (),
        lambda s: _one(s.newest_data),
    ),
    TemplateFamily(
        "cams_template_idle_interval_seconds",
        "gauge",
        "Present while this template and language is idle (no change in its counts for "
        "poll.idle_after): it is read once per this many seconds (poll.idle_interval) instead "
        "of every poll.interval.",
        (),
        lambda s: _one(s.idle_interval),
    ),
)


class TemplateCollector(Collector):
    """The per-template families of `series`, each built only when the one before was taken
    (so a renderer that lets go of each family holds one family's samples at a time).

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
    # TYPE cams_template_idle_interval_seconds gauge
    cams_template_idle_interval_seconds{…} 3600.0   (only while the unit is idle)
    """

    def __init__(self, series: Sequence[TemplateSeries]) -> None:
        self._series = series

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        common = [
            [k.account, k.space, k.template_code, k.language, k.template_type]
            for k in (one.key for one in self._series)
        ]
        for family in TEMPLATE_FAMILIES:
            kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            metric = kind(family.name, family.help, labels=[*LABELS, *family.extra])
            for values, one in zip(common, self._series, strict=True):
                for extra, value in family.samples(one):
                    metric.add_metric([*values, *extra] if extra else values, value)
            yield metric
            del metric  # not kept alive while the next family is built


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
