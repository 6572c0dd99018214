"""Reference collectors: the per-template families built with client_python's own classes from a
table of this kit's own (`TEMPLATE_FAMILIES`: names, types, help texts, labels, samples).

The exporter renders its families with `exporter.publish.collector.TemplateCollector`; tests
compare its exposition with `generate_latest` over these, written separately, so that a family
renamed, relabelled, re-helped, reordered or given other values in the exporter shows as a
difference (the table was the exporter's own `families.py` until its writer went, issue 25).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.publish.collector import AccountCollector
from exporter.publish.snapshot import Snapshot
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


COUNTER_FAMILIES = (
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
)
INFO_FAMILIES = (
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
TEMPLATE_FAMILIES = COUNTER_FAMILIES + INFO_FAMILIES


def label_values(series: TemplateSeries) -> tuple[str, ...]:
    """The common label values of a unit's series, in the order of `LABELS`."""
    k = series.key
    return (k.account, k.space, k.template_code, k.language, k.template_type)


class _FamiliesCollector(Collector):
    def __init__(self, snapshot: Snapshot, families: tuple[TemplateFamily, ...]) -> None:
        self._snapshot = snapshot
        self._families = families

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            metric = kind(family.name, family.help, labels=[*LABELS, *family.extra])
            for series in self._snapshot.series:
                labels = label_values(series)
                for extra, value in family.samples(series):
                    metric.add_metric([*labels, *extra], value)
            yield metric


class TemplateCollector(_FamiliesCollector):
    """The template counters (sent, delivered, read, button clicks), from one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot, COUNTER_FAMILIES)


class TemplateInfoCollector(_FamiliesCollector):
    """Template metadata and freshness (info, last success, newest data), from one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot, INFO_FAMILIES)


def snapshot_registry(snapshot: Snapshot, templates: bool = True) -> CollectorRegistry:
    """A registry holding every snapshot-derived collector for `snapshot`."""
    registry = CollectorRegistry(auto_describe=False)
    if templates:
        registry.register(TemplateCollector(snapshot))
        registry.register(TemplateInfoCollector(snapshot))
    registry.register(AccountCollector(snapshot))
    return registry
