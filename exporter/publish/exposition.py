"""/metrics bodies: the snapshot rendered by client_python once per publish, the bytes kept.

At each publish `Exposition.prepare` renders the snapshot with client_python's own
`generate_latest` (text 0.0.4) and `openmetrics.exposition.generate_latest` over the collectors
of `collector.py`, and keeps both formats, plain and gzip, until the next publish: a scrape
only sends bytes. The accounts' status and sender health are rendered on every publish, the
live self-instruments appended at scrape time.

The per-template families are almost all of a big exposition, and a cycle changes one
account's series only (`Snapshot.parts`). So they are rendered per account and per family:
each family of an account is rendered by client_python on its own, its HELP and TYPE lines
(client_python's rendering of the family without samples) taken off, and the body is each
family's header followed by every account's sample lines. A publish renders only the
accounts whose series changed, and only one family of one account is alive in memory at a
time (at 100k series, client_python over the whole exposition at once took 2.6 s of CPU a
publish and the process's peak RSS from ~190 to ~430 MB: docs/benchmarks-exposition.md).
The bytes are exactly those of one `generate_latest` over all the series (tests/unit/publish/golden,
tests/test_collector.py).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.publish.collector import TemplateCollector, status_registry
from exporter.publish.render import GZIP_LEVEL, render_registry
from exporter.publish.snapshot import Snapshot
from exporter.templates.view import TemplateSeries

# Per template family: (text, OpenMetrics) bytes.
FamilyBytes = tuple[tuple[bytes, bytes], ...]


class _Built(Collector):
    """One family already built: rendered in both formats without building it twice."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        yield self._metric


def _render_family(metric: Metric) -> tuple[bytes, bytes]:
    """One family by client_python: (text, OpenMetrics without `# EOF`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Built(metric))
    return render_registry(registry, False), render_registry(registry, True)


# The HELP and TYPE lines of each template family: client_python's rendering of it without
# samples.
_HEADERS: FamilyBytes = tuple(_render_family(m) for m in TemplateCollector(()).collect())


def render_samples(part: Sequence[TemplateSeries]) -> FamilyBytes:
    """The sample lines of each template family over `part`, in each format: client_python's
    rendering of the family, less its header. Where both formats wrote the same lines (they
    do for these families), one bytes object serves both."""
    out = []
    families = TemplateCollector(part).collect()
    for (text_head, om_head), metric in zip(_HEADERS, families, strict=True):
        text, openmetrics = _render_family(metric)
        del metric  # let the family go before the next one is built
        if not (text.startswith(text_head) and openmetrics.startswith(om_head)):
            raise ValueError(f"client_python wrote {text[:80]!r} before the samples")
        text, openmetrics = text[len(text_head) :], openmetrics[len(om_head) :]
        out.append((text, text if openmetrics == text else openmetrics))
    return tuple(out)


def template_chunks(samples: Sequence[FamilyBytes], openmetrics: bool) -> list[bytes]:
    """The template families' body from each part's sample lines: each family's header, then
    its lines of every part, in order."""
    side = 1 if openmetrics else 0
    out = []
    for index, header in enumerate(_HEADERS):
        out.append(header[side])
        out.extend(part[index][side] for part in samples)
    return out


def render_template_families(snapshot: Snapshot, openmetrics: bool) -> str:
    """All template families of `snapshot` in one format, as one string."""
    samples = [render_samples(part) for part in snapshot.parts or (snapshot.series,)]
    return b"".join(template_chunks(samples, openmetrics)).decode()


def _gzip_chunks(chunks: Sequence[bytes]) -> bytes:
    """One gzip member of the chunks' concatenation, without building the concatenation."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header
    parts = [compressor.compress(chunk) for chunk in chunks]
    parts.append(compressor.flush())
    return b"".join(parts)


class Exposition:
    """/metrics bodies: the snapshot part rendered once per publish, the live part per scrape.

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
        self._samples: tuple[FamilyBytes, ...] = ()  # each part's, of `_rendered`
        # the sample lines of the parts rendered last (a part is reused while it is the same
        # tuple: an account that has not published since)
        self._parts: dict[int, tuple[Sequence[TemplateSeries], FamilyBytes]] = {}
        self._cache: dict[bool, tuple[tuple[bytes, ...], bytes]] = {}

    def _render_parts(self, parts: Sequence[Sequence[TemplateSeries]]) -> tuple[FamilyBytes, ...]:
        """Each part's sample lines, rendering only the parts not rendered last time."""
        kept: dict[int, tuple[Sequence[TemplateSeries], FamilyBytes]] = {}
        out = []
        for part in parts:
            cached = self._parts.get(id(part))
            samples = cached[1] if cached and cached[0] is part else render_samples(part)
            kept[id(part)] = (part, samples)
            out.append(samples)
        self._parts = kept
        return tuple(out)

    def prepare(self, snap: Snapshot) -> None:
        """Render `snap` in both formats now (the poller calls this when it publishes). The
        template families are rendered again only for the parts whose series changed (a
        snapshot that only brings new sender health keeps the previous one's series)."""
        with self._lock:
            if snap is self._rendered:
                return
            previous = self._rendered
            if previous is not None and snap.series is previous.series:
                samples = self._samples
            else:
                samples = self._render_parts(snap.parts or (snap.series,))
            accounts = status_registry(snap)
            cache: dict[bool, tuple[tuple[bytes, ...], bytes]] = {}
            for openmetrics in (False, True):
                chunks = template_chunks(samples, openmetrics)
                chunks.append(render_registry(accounts, openmetrics))
                cache[openmetrics] = (tuple(chunks), _gzip_chunks(chunks))
            self._cache, self._rendered, self._samples = cache, snap, samples

    def _static(self, openmetrics: bool) -> tuple[tuple[bytes, ...], bytes]:
        if not self._cache:
            self.prepare(self._snapshot())  # nothing rendered yet: the very first scrape
        return self._cache[openmetrics]

    def render(self, openmetrics: bool) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """(body chunks, gzipped chunks) for one scrape (the Content-Type is the web layer's:
        `exporter.web.negotiation`)."""
        chunks, zipped = self._static(openmetrics)
        live, live_zipped = self._live(openmetrics)
        return (*chunks, live), (zipped, live_zipped)
