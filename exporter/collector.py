"""Snapshot -> Prometheus metric families, and the cached exposition of /metrics.

Following client_python's custom-collector pattern, each collector's `collect()` yields metric
families built from one immutable `Snapshot`; nothing here calls the API or waits on polling.
`Exposition` renders the snapshot's families once per snapshot (text and OpenMetrics, plain and
gzip) and appends the live self-instruments at scrape time. The per-template families, which
are almost all of a big exposition, go through `render_template_families`, a faster writer of
exactly the bytes client_python's `generate_latest` produces for them.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

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
from prometheus_client.utils import floatToGoString as _go_float

from exporter.snapshot import Snapshot, TemplateSeries

LABELS = ("account", "space", "template_code", "language", "template_type")
_GZIP_LEVEL = 6

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
)
TEMPLATE_FAMILIES = COUNTER_FAMILIES + INFO_FAMILIES


def _labels(series: TemplateSeries) -> tuple[str, ...]:
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
                labels = _labels(series)
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


def _format_value(value: float) -> str:
    if type(value) is int and -(10**15) < value < 10**6:
        return f"{value}.0"  # what Go-style formatting gives (1e+06 and up turn exponential)
    text: str = _go_float(value)  # type: ignore[no-untyped-call]
    return text


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


@dataclass(frozen=True, slots=True)
class FamilyChunk:
    """One rendered template family: its header in each format and its sample lines.

    The sample lines are the same bytes in the text format and in OpenMetrics, so they are
    rendered and kept once.
    """

    text_header: bytes
    openmetrics_header: bytes
    samples: bytes


def render_template_chunks(snapshot: Snapshot) -> tuple[FamilyChunk, ...]:
    """The template families of `snapshot`, exactly as client_python would render them.

    Joined per format (`render_template_families`), the same bytes as `generate_latest` over
    `TemplateCollector` and `TemplateInfoCollector` (tests compare them), several times faster:
    the label set of each series is escaped and joined once and shared by every family without
    extra labels, the label order of each family is worked out once, and sample lines are
    rendered once for both formats.
    """
    common = [tuple(_escape_value(v) for v in _labels(s)) for s in snapshot.series]
    plain_order = sorted(range(len(LABELS)), key=lambda i: LABELS[i])
    plain = ['",'.join(f'{LABELS[i]}="{labels[i]}' for i in plain_order) for labels in common]
    chunks = []
    for family in TEMPLATE_FAMILIES:
        names = (*LABELS, *family.extra)
        order = sorted(range(len(names)), key=lambda i: names[i])
        heads = [f'{names[i]}="' for i in order]
        sample = family.name + "_total" if family.kind == "counter" else family.name
        text_help = family.help.replace("\\", r"\\").replace("\n", r"\n")
        om_help = _escape_value(family.help)
        lines: list[str] = []
        for index, series in enumerate(snapshot.series):
            for extra, value in family.samples(series):
                if extra:
                    values = (*common[index], *(_escape_value(v) for v in extra))
                    body = '",'.join(head + values[i] for head, i in zip(heads, order, strict=True))
                else:
                    body = plain[index]
                lines.append(f'{sample}{{{body}"}} {_format_value(value)}\n')
        chunks.append(
            FamilyChunk(
                f"# HELP {sample} {text_help}\n# TYPE {sample} {family.kind}\n".encode(),
                f"# HELP {family.name} {om_help}\n# TYPE {family.name} {family.kind}\n".encode(),
                "".join(lines).encode("utf-8"),
            )
        )
    return tuple(chunks)


def _format_chunks(chunks: tuple[FamilyChunk, ...], openmetrics: bool) -> list[bytes]:
    out = []
    for chunk in chunks:
        out.append(chunk.openmetrics_header if openmetrics else chunk.text_header)
        out.append(chunk.samples)
    return out


def render_template_families(snapshot: Snapshot, openmetrics: bool) -> str:
    """All template families of `snapshot` in one format, as one string."""
    return b"".join(_format_chunks(render_template_chunks(snapshot), openmetrics)).decode()


def _gzip_chunks(chunks: list[bytes]) -> bytes:
    """One gzip member of the chunks' concatenation, without building the concatenation."""
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header
    parts = [compressor.compress(chunk) for chunk in chunks]
    parts.append(compressor.flush())
    return b"".join(parts)


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


def snapshot_registry(snapshot: Snapshot, templates: bool = True) -> CollectorRegistry:
    """A registry holding the snapshot-derived collectors for `snapshot`."""
    registry = CollectorRegistry(auto_describe=False)
    if templates:
        registry.register(TemplateCollector(snapshot))
        registry.register(TemplateInfoCollector(snapshot))
    registry.register(AccountCollector(snapshot))
    return registry


_OM_EOF = b"# EOF\n"


def _openmetrics(registry: CollectorRegistry) -> bytes:
    body: bytes = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
    return body


class Exposition:
    """/metrics bodies: the snapshot part rendered once per snapshot, the live part per scrape.

    Bodies are sent as chunks (template families, account status, live self-metrics) and never
    copied into one buffer; the gzip form is one gzip member per part, and concatenated members
    are one valid gzip stream (RFC 1952). `live(openmetrics)` gives the live self-metrics
    (body, gzipped body).
    """

    def __init__(
        self, snapshot: Callable[[], Snapshot], live: Callable[[bool], tuple[bytes, bytes]]
    ) -> None:
        self._snapshot = snapshot
        self._live = live
        self._lock = threading.Lock()
        self._rendered: Snapshot | None = None
        self._cache: dict[bool, tuple[tuple[bytes, ...], bytes]] = {}

    def prepare(self, snap: Snapshot) -> None:
        """Render `snap` in both formats now (the poller calls this when it publishes)."""
        with self._lock:
            if snap is self._rendered:
                return
            families = render_template_chunks(snap)
            accounts = snapshot_registry(snap, templates=False)
            cache = {}
            for openmetrics in (False, True):
                chunks = _format_chunks(families, openmetrics)
                if openmetrics:
                    chunks.append(_openmetrics(accounts).removesuffix(_OM_EOF))
                else:
                    chunks.append(generate_text(accounts))
                cache[openmetrics] = (tuple(chunks), _gzip_chunks(chunks))
            self._cache, self._rendered = cache, snap

    def _static(self, openmetrics: bool) -> tuple[tuple[bytes, ...], bytes]:
        if not self._cache:
            self.prepare(self._snapshot())  # nothing rendered yet: the very first scrape
        return self._cache[openmetrics]

    def render(self, openmetrics: bool) -> tuple[str, tuple[bytes, ...], tuple[bytes, ...]]:
        """(content type, body chunks, gzipped chunks) for one scrape."""
        chunks, zipped = self._static(openmetrics)
        live, live_zipped = self._live(openmetrics)
        content_type = OM_CONTENT_TYPE if openmetrics else CONTENT_TYPE_LATEST
        return content_type, (*chunks, live), (zipped, live_zipped)
