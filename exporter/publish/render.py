"""A client_python registry as /metrics bytes: one format switch for every registry the
exporter renders itself (account status, live instruments, process metrics), and the bytes kept
while the registry has not changed.

Each of these registries is one chunk of the exposition. Only the last chunk may end with
OpenMetrics' `# EOF`, so `render_registry` leaves it off unless asked.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Hashable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

OM_EOF = b"# EOF\n"
GZIP_LEVEL = 6


def render_registry(registry: CollectorRegistry, openmetrics: bool, *, eof: bool = False) -> bytes:
    """The registry in text 0.0.4 or OpenMetrics; the `# EOF` only with `eof`."""
    if not openmetrics:
        return generate_text(registry)
    body: bytes = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
    return body if eof else body.removesuffix(OM_EOF)


def gzip_member(body: bytes) -> bytes:
    """`body` as one gzip member (members concatenate into one valid gzip stream)."""
    return gzip.compress(body, GZIP_LEVEL, mtime=0)


class KeptRendering:
    """(body, gzipped body) of one registry per format, rendered again only after `version()`
    changed; thread-safe. `version` is read before rendering, so a change while a render runs
    makes the next call render again."""

    def __init__(
        self,
        registry: CollectorRegistry,
        version: Callable[[], Hashable],
        *,
        eof: bool = False,
    ) -> None:
        self._registry = registry
        self._version = version
        self._eof = eof
        self._lock = threading.Lock()
        self._kept: dict[bool, tuple[Hashable, bytes, bytes]] = {}  # format -> version, bytes

    def render(self, openmetrics: bool) -> tuple[bytes, bytes]:
        """(body, gzipped body) in the format asked for."""
        version = self._version()
        with self._lock:
            kept = self._kept.get(openmetrics)
        if kept is not None and kept[0] == version:
            return kept[1], kept[2]
        body = render_registry(self._registry, openmetrics, eof=self._eof)
        zipped = gzip_member(body)
        with self._lock:
            self._kept[openmetrics] = (version, body, zipped)
        return body, zipped
