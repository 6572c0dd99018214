"""Snapshot -> Prometheus metric families, and the cached exposition of /metrics.

Following client_python's custom-collector pattern, each collector's `collect()` yields metric
families built from one immutable `Snapshot`; nothing here calls the API or waits on polling.
`Exposition` renders the snapshot's families once per snapshot (text and OpenMetrics, plain and
gzip) and appends the live self-instruments at scrape time.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OM_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from exporter.snapshot import Snapshot, TemplateSeries

LABELS = ["account", "space", "template_code", "language", "template_type"]
_GZIP_LEVEL = 6


def _labels(series: TemplateSeries) -> list[str]:
    k = series.key
    return [k.account, k.space, k.template_code, k.language, k.template_type]


class TemplateCollector(Collector):
    """The template counters, from one snapshot.

    # HELP cams_template_messages_sent_total Template messages sent, summed from the origin.
    # TYPE cams_template_messages_sent_total counter
    cams_template_messages_sent_total{account="main",space="cams-1",template_code="744c…",
        language="en",template_type="WHATSAPP"} 1234.0
    (likewise _delivered_total and _read_total)
    # TYPE cams_template_button_clicks_total counter
    cams_template_button_clicks_total{…,button_type="url",button="Shop now"} 56.0
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "cams_template_messages_sent",
            "Template messages sent, as reported by GetChatappTemplateMetric, since the origin.",
            labels=LABELS,
        )
        delivered = CounterMetricFamily(
            "cams_template_messages_delivered",
            "Template messages delivered to the recipient's device, since the origin.",
            labels=LABELS,
        )
        read = CounterMetricFamily(
            "cams_template_messages_read",
            "Template messages read by the recipient, since the origin.",
            labels=LABELS,
        )
        clicks = CounterMetricFamily(
            "cams_template_button_clicks",
            "Clicks on a template's buttons, by button type and button text, since the origin.",
            labels=[*LABELS, "button_type", "button"],
        )
        for series in self._snapshot.series:
            labels = _labels(series)
            counts = series.counts
            sent.add_metric(labels, counts.sent)
            delivered.add_metric(labels, counts.delivered)
            read.add_metric(labels, counts.read)
            for button_type, button, count in counts.clicks:
                clicks.add_metric([*labels, button_type, button], count)
        yield from (sent, delivered, read, clicks)


class TemplateInfoCollector(Collector):
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
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "cams_template_info",
            "Template metadata from ListChatappTemplate; the value is always 1.",
            labels=[*LABELS, "template_name", "category", "audit_status"],
        )
        success = GaugeMetricFamily(
            "cams_template_last_success_timestamp_seconds",
            "When this template and language were last read successfully (unix seconds).",
            labels=LABELS,
        )
        newest = GaugeMetricFamily(
            "cams_template_newest_data_timestamp_seconds",
            "Start of the newest bucket with any activity for this template and language.",
            labels=LABELS,
        )
        for series in self._snapshot.series:
            labels = _labels(series)
            info.add_metric([*labels, series.name, series.category, series.audit_status], 1)
            if series.last_success is not None:
                success.add_metric(labels, series.last_success)
            if series.newest_data is not None:
                newest.add_metric(labels, series.newest_data)
        yield from (info, success, newest)


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
        up = GaugeMetricFamily(
            "cams_up",
            "Whether the last poll cycle of the account read every template (1) or not (0).",
            labels=["account"],
        )
        last = GaugeMetricFamily(
            "cams_poll_last_success_timestamp_seconds",
            "When the account's last fully successful poll cycle ended (unix seconds).",
            labels=["account"],
        )
        duration = GaugeMetricFamily(
            "cams_poll_duration_seconds",
            "How long the account's last poll cycle took.",
            labels=["account"],
        )
        units = GaugeMetricFamily(
            "cams_poll_units",
            "Template-language units the account polls each cycle.",
            labels=["account"],
        )
        discovered = GaugeMetricFamily(
            "cams_templates_discovered",
            "Template-language rows the last ListChatappTemplate discovery returned.",
            labels=["account", "space"],
        )
        revisions = CounterMetricFamily(
            "cams_downward_revisions_held",
            "Times the API reported lower counts than before; the higher values were kept.",
            labels=["account"],
        )
        shape = GaugeMetricFamily(
            "cams_metric_shape_info",
            "How GetChatappTemplateMetric answers (per-bucket rows or one aggregate row).",
            labels=["account", "shape"],
        )
        for account in self._snapshot.accounts:
            name = [account.name]
            up.add_metric(name, 1 if account.up else 0)
            if account.last_poll_success is not None:
                last.add_metric(name, account.last_poll_success)
            if account.last_poll_duration is not None:
                duration.add_metric(name, account.last_poll_duration)
            units.add_metric(name, account.units)
            for space, count in account.templates_discovered:
                discovered.add_metric([account.name, space], count)
            revisions.add_metric(name, account.revisions_held)
            shape.add_metric([account.name, account.shape], 1)
        yield from (up, last, duration, units, discovered, revisions, shape)


def snapshot_registry(snapshot: Snapshot) -> CollectorRegistry:
    """A registry holding every snapshot-derived collector for `snapshot`."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in (
        TemplateCollector(snapshot),
        TemplateInfoCollector(snapshot),
        AccountCollector(snapshot),
    ):
        registry.register(collector)
    return registry


_OM_EOF = b"# EOF\n"


def _openmetrics(registry: CollectorRegistry) -> bytes:
    body: bytes = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
    return body


class Exposition:
    """/metrics bodies: snapshot part rendered once per snapshot, live part at every scrape.

    The gzip form is two gzip members (snapshot part compressed once, live part per scrape);
    concatenated members are one valid gzip stream (RFC 1952).
    """

    def __init__(self, snapshot: Callable[[], Snapshot], live: CollectorRegistry) -> None:
        self._snapshot = snapshot
        self._live = live
        self._lock = threading.Lock()
        self._rendered: Snapshot | None = None
        self._cache: dict[bool, tuple[bytes, bytes]] = {}

    def prepare(self, snap: Snapshot) -> None:
        """Render `snap` in both formats now (the poller calls this when it publishes)."""
        with self._lock:
            if snap is self._rendered:
                return
            registry = snapshot_registry(snap)
            cache = {}
            for openmetrics in (False, True):
                if openmetrics:
                    body = _openmetrics(registry).removesuffix(_OM_EOF)
                else:
                    body = generate_text(registry)
                cache[openmetrics] = (body, gzip.compress(body, _GZIP_LEVEL, mtime=0))
            self._cache, self._rendered = cache, snap

    def _static(self, openmetrics: bool) -> tuple[bytes, bytes]:
        if not self._cache:
            self.prepare(self._snapshot())  # nothing rendered yet: the very first scrape
        return self._cache[openmetrics]

    def render(self, openmetrics: bool) -> tuple[str, bytes, bytes]:
        """(content type, body, gzipped body) for one scrape."""
        body, zipped = self._static(openmetrics)
        if openmetrics:
            live = _openmetrics(self._live)
            content_type = OM_CONTENT_TYPE
        else:
            live = generate_text(self._live)
            content_type = CONTENT_TYPE_LATEST
        return content_type, body + live, zipped + gzip.compress(live, _GZIP_LEVEL, mtime=0)
