"""The exporter's HTTP(S) server as the rest of the exporter sees it: `WebServer`.

It binds the listen address (see `exporter.web.listen`), routes requests through
`exporter.web.routes.App` and serves connections with `exporter.web.connections`, in one
background thread. The connection cap is checked against the open-files limit at start: a cap
the limit cannot hold (with room kept for polling the CAMS API and the state file) is lowered,
with a warning, so that accepting never starves the poller of file descriptors.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from exporter.web.config import WebConfig
from exporter.web.connection import Timeouts
from exporter.web.connections import ConnectionLoop
from exporter.web.listen import DEFAULT_MAX_CONNECTIONS, bind
from exporter.web.live import FixedWebConfig, WebSettingsSource
from exporter.web.routes import App, Handlers

LOG = logging.getLogger("cams_exporter.web")

# File descriptors kept for everything but HTTP connections (API connection pools, state file,
# logs, the selector...).
_FD_RESERVE = 128


def open_files_limit() -> int | None:
    """The soft limit on open files of this process, None when the platform has none."""
    try:
        import resource
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def connection_cap(requested: int, fd_limit: int | None) -> int:
    """`requested`, lowered (with a warning) to what `fd_limit` open files leave room for."""
    if requested < 1:
        raise ValueError(f"max connections must be at least 1, got {requested}")
    if fd_limit is None:
        return requested
    room = max(16, fd_limit - _FD_RESERVE)
    if requested <= room:
        return requested
    LOG.warning(
        "--web.max-connections %d is more than the open-files limit (%d) leaves room for: "
        "serving at most %d connections",
        requested,
        fd_limit,
        room,
    )
    return room


class WebServer:
    """The exporter's HTTP(S) server; `start()` serves in a background daemon thread."""

    def __init__(
        self,
        listen_address: str,
        handlers: Handlers,
        telemetry_path: str = "/metrics",
        web_config: WebConfig | WebSettingsSource | None = None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        enable_lifecycle: bool = False,
        timeouts: Timeouts | None = None,
    ) -> None:
        if not telemetry_path.startswith("/") or telemetry_path.startswith("/-/"):
            raise ValueError(
                f"invalid telemetry path {telemetry_path!r}: must start with '/' and not with '/-/'"
            )
        source: WebSettingsSource
        if web_config is None or isinstance(web_config, WebConfig):
            source = FixedWebConfig(web_config)
        else:
            source = web_config
        self.tls: Final = source.current().config.tls_enabled  # True when it speaks HTTPS
        cap = connection_cap(max_connections, open_files_limit())
        self._listen_address = listen_address
        listener = bind(listen_address)
        # The bound port (the real one when the address asked for port 0).
        self.port: Final = int(listener.getsockname()[1])
        app = App(handlers, telemetry_path, source, enable_lifecycle)
        self._loop = ConnectionLoop(listener, app, source, self.tls, cap, timeouts or Timeouts())
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def open_connections(self) -> int:
        """How many connections are open now (an estimate, read without locking)."""
        return self._loop.open_connections

    def start(self) -> None:
        """Serve in a background daemon thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("web server already shut down")
            if self._thread is not None:
                raise RuntimeError("web server already started")
            self._thread = threading.Thread(
                target=self._loop.run, name="cams-exporter-web", daemon=True
            )
            self._thread.start()
        LOG.info(
            "Listening on %s (port %d, %s)",
            self._listen_address,
            self.port,
            "TLS" if self.tls else "plain HTTP",
        )

    def shutdown(self) -> None:
        """Stop accepting, close open connections and release the port; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._loop.stop()
        if thread is not None:
            thread.join(timeout=10)
        else:
            self._loop.close()  # never started: just release the port
