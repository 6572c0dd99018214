"""/metrics bodies: the snapshot rendered by client_python once per publish, the bytes kept.

At each publish `Exposition.prepare` renders the snapshot with client_python's own
`generate_latest` (text 0.0.4) and `openmetrics.exposition.generate_latest` over the collectors
of `collector.py`, and keeps both formats, plain and gzip, until the next publish: a scrape
only sends bytes. The per-template families (almost all of a big exposition) are rendered again
only when the series changed (a publish that only brings new sender health reuses them); the
accounts' status and sender health on every publish; the live self-instruments are appended
at scrape time.
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


class _Built(Collector):
    """One family already built: rendered in both formats without building it twice."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        yield self._metric


def render_templates(series: Sequence[TemplateSeries]) -> dict[bool, tuple[bytes, ...]]:
    """The per-template families of `series` by client_python, one chunk per family, in each
    format (text: False, OpenMetrics: True; without `# EOF`: other chunks follow).

    Family by family, so that one family's samples and lines are alive at a time, not the
    whole exposition's (at 100k series the peak RSS is about 200 MB lower); a family's
    chunks are exactly its part of a `generate_latest` over every family, because each
    family is written on its own there too (tests/golden and tests/test_collector.py)."""
    chunks: dict[bool, list[bytes]] = {False: [], True: []}
    for metric in TemplateCollector(series).collect():
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Built(metric))
        for openmetrics in (False, True):
            chunks[openmetrics].append(render_registry(registry, openmetrics))
        del registry, metric  # let the family go before the next one is built
    return {openmetrics: tuple(out) for openmetrics, out in chunks.items()}


def render_template_families(snapshot: Snapshot, openmetrics: bool) -> str:
    """All template families of `snapshot` in one format, as one string."""
    return b"".join(render_templates(snapshot.series)[openmetrics]).decode()


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
        # format -> the template families' chunks of `_rendered.series`
        self._templates: dict[bool, tuple[bytes, ...]] = {}
        self._cache: dict[bool, tuple[tuple[bytes, ...], bytes]] = {}

    def prepare(self, snap: Snapshot) -> None:
        """Render `snap` in both formats now (the poller calls this when it publishes). The
        template families are rendered again only when the series changed (a snapshot that
        only brings new sender health keeps the previous one's series)."""
        with self._lock:
            if snap is self._rendered:
                return
            previous = self._rendered
            templates = self._templates
            if previous is None or snap.series is not previous.series:
                templates = render_templates(snap.series)
            accounts = status_registry(snap)
            cache: dict[bool, tuple[tuple[bytes, ...], bytes]] = {}
            for openmetrics in (False, True):
                chunks = (*templates[openmetrics], render_registry(accounts, openmetrics))
                cache[openmetrics] = (chunks, _gzip_chunks(chunks))
            self._cache, self._rendered, self._templates = cache, snap, templates

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
