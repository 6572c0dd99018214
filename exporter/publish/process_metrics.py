"""The process's own metrics on /metrics: what every Prometheus exporter shows of itself.

`process_*` (CPU, memory, open and maximum file descriptors) are read fresh on every scrape.
The garbage collector's families (`python_gc_*`, `cams_exporter_gc_pause_seconds`) and
`python_info` change only when a collection runs, so their bytes are kept and rendered again
only after one ran: formatting them took about 0.65 ms a scrape, more than serving the whole
gzipped 100k-series exposition from memory (`python bench/run.py --only scrape-100k`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from exporter.publish.memory import GcPauses
from exporter.publish.render import KeptRendering, gzip_member, render_registry


class ProcessMetrics:
    """Renders the process metrics for one scrape: (body, gzipped body) per format."""

    def __init__(self, gc_pauses: GcPauses) -> None:
        self._fresh = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._fresh)
        gc_families = CollectorRegistry(auto_describe=False)
        GCCollector(registry=gc_families)
        PlatformCollector(registry=gc_families)
        gc_families.register(gc_pauses)
        self._gc = KeptRendering(gc_families, lambda: gc_pauses.collections)

    def render(self, openmetrics: bool) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
        """((process body, its gzip member), (gc body, its gzip member)) for one scrape."""
        fresh = render_registry(self._fresh, openmetrics)
        return (fresh, gzip_member(fresh)), self._gc.render(openmetrics)
