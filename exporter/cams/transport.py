"""HTTP for the CAMS client: pooled connections that say when a request has been written, so the
rate limiter counts each call from the moment the server can see it.

`requests` decides how to reach an origin, once per origin: the environment's proxies
(HTTP(S)_PROXY, NO_PROXY), CA bundle and client certificate, the proxy's credentials, the TLS
settings of the pool. Each call then goes straight to that urllib3 pool, as requests' adapter
sends it but without rebuilding a request object, merging session settings and parsing the URL
again on every call: that cost 0.5 of the 1.26 ms of CPU a signed call took through a requests
session (`python bench/client_cpu.py`), all of it held under the GIL that the scrape threads
wait for.

Every urllib3 pool the adapter makes (direct, through an HTTP(S) proxy with or without CONNECT,
or through SOCKS) gets a connection class that calls the thread's `on_written` callback as soon
as the request's bytes are on the socket. Should a future urllib3 bypass that hook, the
callback runs when the answer arrives instead (later than the write, so the limiter's count
stays on the safe side) and one warning says so.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import ProxyError as _ProxyError
from urllib3.exceptions import SSLError as _SSLError

log = logging.getLogger("cams_exporter.client")

OnWritten = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, body (decoded from any Content-Encoding) and headers (their
    names case-insensitive)."""

    status: int
    body: bytes
    headers: Mapping[str, str]


class TransportError(Exception):
    """No answer: the request could not be sent or its answer not read. `kind` is the name
    requests gives the same failure (`ConnectionError`, `SSLError`, `ProxyError`, ...)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class TransportTimeout(TransportError):
    """No answer within the timeout (connecting or reading)."""


def _failure(error: HTTPError | OSError | http.client.HTTPException) -> TransportError:
    """The exception requests' adapter would raise for urllib3's `error`, as ours (requests'
    own, raised while choosing an origin's pool, keeps its name: `InvalidSchema` for a SOCKS
    proxy without PySocks, `InvalidURL`...)."""
    if isinstance(error, requests.RequestException):
        return TransportError(type(error).__name__)
    if isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError):
        return TransportTimeout("ConnectTimeout")
    if isinstance(error, ReadTimeoutError):
        return TransportTimeout("ReadTimeout")
    if isinstance(error, _ProxyError):
        return TransportError("ProxyError")
    if isinstance(error, _SSLError):
        return TransportError("SSLError")
    return TransportError("ConnectionError")


@dataclass(frozen=True, slots=True)
class _Route:
    """How calls to one origin go: the pool, and the URL prefix the pool expects (the origin
    itself through a plain HTTP proxy, nothing when the pool speaks to the origin)."""

    pool: urllib3.HTTPConnectionPool
    prefix: str


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
    """POSTs over pooled connections (thread-safe), reporting when each request is written."""

    def __init__(self, *, pool_size: int, user_agent: str) -> None:
        self._local = threading.local()
        self._adapter = _NotifyingAdapter(
            self._local, pool_connections=1, pool_maxsize=pool_size, max_retries=0
        )
        # requests' own defaults (Accept-Encoding, Connection), with ours.
        self._headers = dict(requests.utils.default_headers())
        self._headers |= {"User-Agent": user_agent, "Accept": "application/json"}
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()
        self._hook_warned = False

    def _route(self, origin: str) -> _Route:
        """The pool for `origin`, chosen once as requests would: the environment's proxies, CA
        bundle and client certificate (a session that trusts the environment reads them)."""
        route = self._routes.get(origin)
        if route is not None and route.pool.pool is not None:
            return route
        with self._lock:
            route = self._routes.get(origin)
            if route is None or route.pool.pool is None:  # none yet, or closed (evicted)
                with requests.Session() as reader:
                    env = reader.merge_environment_settings(origin, {}, None, None, None)
                probe = requests.Request("POST", origin + "/").prepare()
                pool = self._adapter.get_connection_with_tls_context(
                    probe, env["verify"], proxies=env["proxies"], cert=env["cert"]
                )
                # Checks the CA bundle and client certificate paths, as requests does per call.
                self._adapter.cert_verify(pool, origin, env["verify"], env["cert"])  # type: ignore[no-untyped-call]
                assert isinstance(pool, urllib3.HTTPConnectionPool)
                full = self._adapter.request_url(probe, env["proxies"]) != probe.path_url
                route = _Route(pool, origin if full else "")
                self._routes[origin] = route
        return route

    def post(
        self,
        origin: str,
        target: str,
        headers: Mapping[str, str],
        timeout: float,
        on_written: OnWritten | None = None,
    ) -> Answer:
        """POST `target` (path and query) to `origin` (scheme://host[:port]) with an empty
        body; `on_written` runs once the request is on the wire.

        Raises TransportError (TransportTimeout for a timeout); then `on_written` has run only
        if the request was written before the failure.
        """
        self._local.on_written = on_written
        try:
            route = self._route(origin)
            response = route.pool.urlopen(
                "POST",
                route.prefix + target,
                body=None,
                headers={**self._headers, **headers, "Content-Length": "0"},
                redirect=False,
                assert_same_host=False,
                retries=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                preload_content=True,
                decode_content=True,
            )
        except (HTTPError, OSError, http.client.HTTPException) as error:
            raise _failure(error) from None
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
        return Answer(response.status, response.data, response.headers)

    def close(self) -> None:
        """Release the pooled connections."""
        self._adapter.close()
