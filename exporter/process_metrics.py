"""The process's own metrics on /metrics: what every Prometheus exporter shows of itself.

`process_*` (CPU, memory, open and maximum file descriptors) are read fresh on every scrape.
The garbage collector's families (`python_gc_*`, `cams_exporter_gc_pause_seconds`) and
`python_info` change only when a collection runs, so their bytes are kept and rendered again
only after one ran: formatting them took about 0.65 ms a scrape, more than serving the whole
gzipped 100k-series exposition from memory (`python bench/run.py --only scrape-100k`).
"""

from __future__ import annotations

import gzip
import threading

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.memory import GcPauses

_OM_EOF = b"# EOF\n"


def _render(registry: CollectorRegistry, openmetrics: bool) -> bytes:
    """The registry's exposition without OpenMetrics' `# EOF` (the exposition ends it)."""
    if openmetrics:
        body: bytes = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
        return body.removesuffix(_OM_EOF)
    return generate_latest(registry)


class ProcessMetrics:
    """Renders the process metrics for one scrape: (body, gzipped body) per format."""

    def __init__(self, gc_pauses: GcPauses) -> None:
        self._fresh = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._fresh)
        self._gc = CollectorRegistry(auto_describe=False)
        GCCollector(registry=self._gc)
        PlatformCollector(registry=self._gc)
        self._gc.register(gc_pauses)
        self._pauses = gc_pauses
        self._lock = threading.Lock()
        # format -> (collections seen when rendered, body, gzipped body)
        self._kept: dict[bool, tuple[tuple[int, ...], bytes, bytes]] = {}

    def _gc_part(self, openmetrics: bool) -> tuple[bytes, bytes]:
        seen = self._pauses.collections  # read first: one that runs meanwhile renders again
        with self._lock:
            kept = self._kept.get(openmetrics)
        if kept is not None and kept[0] == seen:
            return kept[1], kept[2]
        body = _render(self._gc, openmetrics)
        zipped = gzip.compress(body, 6, mtime=0)
        with self._lock:
            self._kept[openmetrics] = (seen, body, zipped)
        return body, zipped

    def render(self, openmetrics: bool) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
        """((process body, its gzip member), (gc body, its gzip member)) for one scrape."""
        fresh = _render(self._fresh, openmetrics)
        return (fresh, gzip.compress(fresh, 6, mtime=0)), self._gc_part(openmetrics)
