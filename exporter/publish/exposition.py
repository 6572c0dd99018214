"""/metrics bodies: the snapshot's families rendered once per snapshot, the live part per scrape.

The per-template families, which are almost all of a big exposition, go through
`render_template_chunks`, a writer of exactly the bytes client_python's `generate_latest`
produces for them (the tests compare it with reference collectors built from the same family
table), several times faster. The account status comes from `collector.status_registry`
through client_python itself. `Exposition` keeps both formats (text and OpenMetrics), plain and
gzip, and appends the live self-instruments at scrape time.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OM_CONTENT_TYPE
from prometheus_client.utils import floatToGoString as _go_float

from exporter.publish.collector import status_registry
from exporter.publish.families import LABELS, TEMPLATE_FAMILIES, TemplateFamily, label_values
from exporter.publish.render import GZIP_LEVEL, render_registry
from exporter.publish.snapshot import Snapshot
from exporter.templates.view import TemplateSeries


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
    rendered and kept once; they come in parts (one per account: `Snapshot.parts`), so that a
    publish renders again only the accounts whose series changed.
    """

    text_header: bytes
    openmetrics_header: bytes
    samples: tuple[bytes, ...]


def _sample_name(family: TemplateFamily) -> str:
    return family.name + "_total" if family.kind == "counter" else family.name


def _headers() -> tuple[tuple[bytes, bytes], ...]:
    """(text, OpenMetrics) HELP and TYPE lines of each template family."""
    out = []
    for family in TEMPLATE_FAMILIES:
        sample = _sample_name(family)
        text_help = family.help.replace("\\", r"\\").replace("\n", r"\n")
        om_help = _escape_value(family.help)
        out.append(
            (
                f"# HELP {sample} {text_help}\n# TYPE {sample} {family.kind}\n".encode(),
                f"# HELP {family.name} {om_help}\n# TYPE {family.name} {family.kind}\n".encode(),
            )
        )
    return tuple(out)


_HEADERS = _headers()


def render_samples(series: Sequence[TemplateSeries]) -> tuple[bytes, ...]:
    """The sample lines of `series` in each template family (one bytes per family), exactly as
    client_python renders them: the label set of each series is escaped and joined once and
    shared by every family without extra labels, and the label order of each family is worked
    out once."""
    common = [tuple(_escape_value(v) for v in label_values(s)) for s in series]
    plain_order = sorted(range(len(LABELS)), key=lambda i: LABELS[i])
    plain = ['",'.join(f'{LABELS[i]}="{labels[i]}' for i in plain_order) for labels in common]
    out = []
    for family in TEMPLATE_FAMILIES:
        names = (*LABELS, *family.extra)
        order = sorted(range(len(names)), key=lambda i: names[i])
        heads = [f'{names[i]}="' for i in order]
        sample = _sample_name(family)
        lines: list[str] = []
        for index, one in enumerate(series):
            for extra, value in family.samples(one):
                if extra:
                    values = (*common[index], *(_escape_value(v) for v in extra))
                    body = '",'.join(head + values[i] for head, i in zip(heads, order, strict=True))
                else:
                    body = plain[index]
                lines.append(f'{sample}{{{body}"}} {_format_value(value)}\n')
        out.append("".join(lines).encode("utf-8"))
    return tuple(out)


def render_template_chunks(
    parts: Sequence[Sequence[TemplateSeries]],
    rendered: Callable[[Sequence[TemplateSeries]], tuple[bytes, ...]] = render_samples,
) -> tuple[FamilyChunk, ...]:
    """The template families of the series in `parts` (in that order), each part's sample lines
    from `rendered` (a cache may stand in for `render_samples`)."""
    samples = [rendered(part) for part in parts if part]
    return tuple(
        FamilyChunk(text, om, tuple(part[index] for part in samples))
        for index, (text, om) in enumerate(_HEADERS)
    )


def _format_chunks(chunks: tuple[FamilyChunk, ...], openmetrics: bool) -> list[bytes]:
    out = []
    for chunk in chunks:
        out.append(chunk.openmetrics_header if openmetrics else chunk.text_header)
        out.extend(chunk.samples)
    return out


def render_template_families(snapshot: Snapshot, openmetrics: bool) -> str:
    """All template families of `snapshot` in one format, as one string (the same bytes as
    `generate_latest` over `TemplateCollector` and `TemplateInfoCollector`: tests compare them)."""
    chunks = render_template_chunks(snapshot.parts or (snapshot.series,))
    return b"".join(_format_chunks(chunks, openmetrics)).decode()


def _gzip_chunks(chunks: list[bytes]) -> bytes:
    """One gzip member of the chunks' concatenation, without building the concatenation."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header
    parts = [compressor.compress(chunk) for chunk in chunks]
    parts.append(compressor.flush())
    return b"".join(parts)


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
        self._families: tuple[FamilyChunk, ...] = ()
        self._cache: dict[bool, tuple[tuple[bytes, ...], bytes]] = {}
        # the sample lines of the parts rendered last (a part is reused while it is the same
        # tuple: an account that has not published since)
        self._parts: dict[int, tuple[Sequence[TemplateSeries], tuple[bytes, ...]]] = {}

    def _render_parts(self, parts: Sequence[Sequence[TemplateSeries]]) -> tuple[FamilyChunk, ...]:
        """The template families, rendering only the parts not rendered last time."""
        kept: dict[int, tuple[Sequence[TemplateSeries], tuple[bytes, ...]]] = {}

        def samples_of(part: Sequence[TemplateSeries]) -> tuple[bytes, ...]:
            cached = self._parts.get(id(part))
            samples = cached[1] if cached and cached[0] is part else render_samples(part)
            kept[id(part)] = (part, samples)
            return samples

        families = render_template_chunks(parts, samples_of)
        self._parts = kept
        return families

    def prepare(self, snap: Snapshot) -> None:
        """Render `snap` in both formats now (the poller calls this when it publishes). The
        template families are rendered again only when the series changed (a snapshot that
        only brings new sender health keeps the previous one's series)."""
        with self._lock:
            if snap is self._rendered:
                return
            previous = self._rendered
            if previous is not None and snap.series is previous.series:
                families = self._families
            else:
                families = self._render_parts(snap.parts or (snap.series,))
            accounts = status_registry(snap)
            cache = {}
            for openmetrics in (False, True):
                chunks = _format_chunks(families, openmetrics)
                chunks.append(render_registry(accounts, openmetrics))
                cache[openmetrics] = (tuple(chunks), _gzip_chunks(chunks))
            self._cache, self._rendered, self._families = cache, snap, families

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
