"""HTTP for the CAMS client: one pooled `requests` session whose connections say when a request
has been written, so the rate limiter counts each call from the moment the server can see it.

Every urllib3 pool the session uses (direct, through an HTTP(S) proxy with or without CONNECT,
or through SOCKS) gets a connection class that calls the thread's `on_written` callback as soon
as the request's bytes are on the socket. Should a future urllib3 bypass that hook, the
callback runs when the answer arrives instead (later than the write, so the limiter's count
stays on the safe side) and one warning says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger("cams_exporter.client")

OnWritten = Callable[[], None]


class _NotifyingConnection:
    """Connection mixin: calls the thread's pending `on_written` once the request is sent."""

    _cams_local: threading.local

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)  # type: ignore[misc]
        callback = getattr(self._cams_local, "on_written", None)
        if callback is not None:
            self._cams_local.on_written = None
            callback()


def _notifying_pools(pools: Mapping[str, Any], local: threading.local) -> dict[str, Any]:
    """The same pool classes, each with a connection class that reports its writes."""
    out = {}
    for scheme, pool in pools.items():
        connection = pool.ConnectionCls
        if issubclass(connection, _NotifyingConnection):
            out[scheme] = pool
            continue
        notifying = type(
            f"Notifying{connection.__name__}",
            (_NotifyingConnection, connection),
            {"_cams_local": local},
        )
        out[scheme] = type(f"Notifying{pool.__name__}", (pool,), {"ConnectionCls": notifying})
    return out


class _NotifyingAdapter(HTTPAdapter):
    """An HTTPAdapter whose every pool manager, proxy managers included, reports writes."""

    def __init__(self, local: threading.local, **kwargs: Any) -> None:
        self._cams_local = local
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        manager = self.poolmanager
        manager.pool_classes_by_scheme = _notifying_pools(
            manager.pool_classes_by_scheme, self._cams_local
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _notifying_pools(
            manager.pool_classes_by_scheme, self._cams_local
        )
        return manager


class Transport:
    """POSTs over one pooled session (thread-safe), reporting when each request is written."""

    def __init__(self, *, pool_size: int, user_agent: str) -> None:
        self._local = threading.local()
        self._session = requests.Session()
        adapter = _NotifyingAdapter(
            self._local, pool_connections=1, pool_maxsize=pool_size, max_retries=0
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
        # The environment (HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE) is read once per
        # origin instead of on every call: requests would scan os.environ and read ~/.netrc
        # each time, about a seventh of a call's CPU in the poll threads (py-spy, 100k series).
        self._session.trust_env = False
        self._environment: dict[str, dict[str, Any]] = {}
        self._hook_warned = False

    def _settings(self, url: str) -> dict[str, Any]:
        """Proxies, CA bundle and client certificate for `url`, from the environment as requests
        reads them (a throwaway session that trusts it), once per scheme and host."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        settings = self._environment.get(origin)
        if settings is None:
            with requests.Session() as reader:
                merged = reader.merge_environment_settings(origin, {}, None, None, None)
            settings = dict(merged)
            self._environment[origin] = settings
        return settings

    def post(
        self,
        url: str,
        headers: Mapping[str, str],
        timeout: float,
        on_written: OnWritten | None = None,
    ) -> requests.Response:
        """POST with an empty body; `on_written` runs once the request is on the wire.

        Raises what `requests` raises; then `on_written` has run only if the request was
        written before the failure.
        """
        self._local.on_written = on_written
        try:
            env = self._settings(url)
            response = self._session.post(
                url,
                headers=dict(headers),
                timeout=timeout,
                proxies=env["proxies"],
                verify=env["verify"],
                cert=env["cert"],
            )
        finally:
            unsent = self._local.on_written
            self._local.on_written = None
        if unsent is not None:  # answered, yet the hook never saw the write
            if not self._hook_warned:
                self._hook_warned = True
                log.warning(
                    "the HTTP stack did not report when a request was written; the rate "
                    "limiter counts calls when they are answered instead (slower, still safe)"
                )
            unsent()
        return response

    def close(self) -> None:
        """Release the pooled connections."""
        self._session.close()
