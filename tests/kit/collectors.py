"""Reference collectors: the per-template families built with client_python's own classes.

The exporter renders these families with its own faster writer
(`exporter.publish.exposition`); tests and benchmarks compare that writer's bytes with
`generate_latest` over these collectors, which are built from the same family table
(`exporter.publish.families`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.publish.collector import AccountCollector
from exporter.publish.families import (
    COUNTER_FAMILIES,
    INFO_FAMILIES,
    LABELS,
    TemplateFamily,
    label_values,
)
from exporter.publish.snapshot import Snapshot


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
    """The template counters, from one snapshot.

    # HELP cams_template_messages_sent_total Template messages sent, as reported by …
    # TYPE cams_template_messages_sent_total counter
    cams_template_messages_sent_total{account="main",language="en",space="cams-1",
        template_code="744c…",template_type="WHATSAPP"} 1234.0
    (likewise _delivered_total and _read_total)
    # TYPE cams_template_button_clicks_total counter
    cams_template_button_clicks_total{…,button="Shop now",button_type="url",…} 56.0
    """

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot, COUNTER_FAMILIES)


class TemplateInfoCollector(_FamiliesCollector):
    """Template metadata and freshness, from one snapshot.

    # HELP cams_template_info Template metadata from ListChatappTemplate; the value is always 1.
    # TYPE cams_template_info gauge
    cams_template_info{…,template_name="spring_sale",category="MARKETING",audit_status="pass"} 1.0
    # TYPE cams_template_last_success_timestamp_seconds gauge
    cams_template_last_success_timestamp_seconds{…} 1.7640288e+09
    # TYPE cams_template_newest_data_timestamp_seconds gauge
    cams_template_newest_data_timestamp_seconds{…} 1.7639712e+09
    """

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
