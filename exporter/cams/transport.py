"""HTTP for the CAMS client: pooled POSTs through urllib3's public `PoolManager` /
`ProxyManager`, reached the way requests would reach the origin.

How to reach an origin is decided once per origin, by requests' public helpers over the
environment: its proxies (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY: `Session.merge_environment_settings`
and `requests.utils.select_proxy`), CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else
certifi's) and client certificate, the proxy's credentials (from its URL, sent as
Proxy-Authorization). From that decision comes one urllib3 manager: a `PoolManager` (direct),
a `ProxyManager` (HTTPS tunnelled with CONNECT, plain HTTP in absolute form) or, for a socks://
proxy, urllib3's `SOCKSProxyManager` (with PySocks), and the manager's pool for the origin
(`connection_from_url`, taken once). Each call is then one `urlopen` on that pool (the absolute
URL through a plain HTTP proxy, which the pool gives the proxy's credentials), without
rebuilding a requests request object, merging session settings and parsing the URL on every
call as `Session.request` does (`python bench/client_cpu.py` compares the two).

Only public APIs are used: the transport cannot know when a request's bytes are written, only
when a call starts and ends. The rate limiter counts each call from its grant until its end
(`exporter.cams.ratelimit`), which keeps its guarantee without that knowledge.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_auth_from_url, select_proxy
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import ProxyError as _ProxyError
from urllib3.exceptions import SSLError as _SSLError


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
    """The exception requests' adapter would raise for urllib3's `error`, as ours."""
    if isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError):
        return TransportTimeout("ConnectTimeout")
    if isinstance(error, ReadTimeoutError):
        return TransportTimeout("ReadTimeout")
    if isinstance(error, _ProxyError):
        return TransportError("ProxyError")
    if isinstance(error, _SSLError):
        return TransportError("SSLError")
    return TransportError("ConnectionError")


def _tls_settings(verify: bool | str, cert: str | tuple[str, str] | None) -> dict[str, Any]:
    """The urllib3 pool settings of requests' `verify` and `cert` (as requests' adapter sets
    them); OSError when a file they name does not exist, as requests raises it."""
    settings: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE"}
    if verify:
        bundle = DEFAULT_CA_BUNDLE_PATH if verify is True else verify
        if not os.path.exists(bundle):
            raise OSError(f"no TLS CA certificate bundle at {bundle}")
        settings["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
    if cert:
        cert_file, key_file = (cert, None) if isinstance(cert, str) else cert
        for path in (cert_file, key_file):
            if path and not os.path.exists(path):
                raise OSError(f"no TLS client certificate or key at {path}")
        settings["cert_file"] = cert_file
        settings["key_file"] = key_file
    return settings


def _manager(origin: str, pool_size: int) -> urllib3.PoolManager:
    """The urllib3 manager for calls to `origin`, chosen as requests would choose it from the
    environment (raises OSError for a missing CA bundle, TransportError for a SOCKS proxy
    without PySocks)."""
    with requests.Session() as reader:  # trust_env: reads the environment as requests does
        env = reader.merge_environment_settings(origin, {}, None, None, None)
    settings: dict[str, Any] = {"num_pools": 1, "maxsize": pool_size, "block": False}
    if origin.lower().startswith("https:"):
        verify = env["verify"]
        settings |= _tls_settings(True if verify is None else verify, env["cert"])
    proxy = select_proxy(origin + "/", env["proxies"])
    if not proxy:
        return urllib3.PoolManager(**settings)
    if "://" not in proxy:
        proxy = f"http://{proxy}"  # a proxy given as host:port is an HTTP proxy
    username, password = get_auth_from_url(proxy)
    if proxy.lower().startswith("socks"):
        try:
            from urllib3.contrib.socks import SOCKSProxyManager
        except ImportError:  # PySocks missing: requests raises InvalidSchema
            raise TransportError("InvalidSchema") from None
        return SOCKSProxyManager(
            proxy, username=username or None, password=password or None, **settings
        )
    headers = (
        urllib3.util.make_headers(proxy_basic_auth=f"{username}:{password}") if username else {}
    )
    return urllib3.ProxyManager(proxy, proxy_headers=headers, **settings)


@dataclass(frozen=True, slots=True)
class _Route:
    """How calls to one origin go: its manager, the manager's pool for the origin, and the URL
    prefix that pool expects (the origin itself through a plain HTTP proxy, which is sent the
    absolute URL; nothing when the pool speaks to the origin or tunnels to it)."""

    manager: urllib3.PoolManager
    pool: urllib3.HTTPConnectionPool
    prefix: str


def _route(origin: str, pool_size: int) -> _Route:
    manager = _manager(origin, pool_size)
    absolute = isinstance(manager, urllib3.ProxyManager) and origin.lower().startswith("http:")
    return _Route(manager, manager.connection_from_url(origin), origin if absolute else "")


class Transport:
    """POSTs over pooled connections, one urllib3 manager per origin (thread-safe)."""

    def __init__(self, *, pool_size: int, user_agent: str) -> None:
        self._pool_size = pool_size
        # requests' own defaults (Accept-Encoding, Connection), with ours.
        self._headers = dict(requests.utils.default_headers())
        self._headers |= {"User-Agent": user_agent, "Accept": "application/json"}
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()

    def _route(self, origin: str) -> _Route:
        route = self._routes.get(origin)
        if route is None:
            with self._lock:
                route = self._routes.get(origin)
                if route is None:
                    route = self._routes[origin] = _route(origin, self._pool_size)
        return route

    def post(self, origin: str, target: str, headers: Mapping[str, str], timeout: float) -> Answer:
        """POST `target` (path and query) to `origin` (scheme://host[:port]) with an empty
        body. Raises TransportError (TransportTimeout for a timeout)."""
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
        return Answer(response.status, response.data, response.headers)

    def close(self) -> None:
        """Release the pooled connections (a later call opens new ones)."""
        with self._lock:
            routes, self._routes = list(self._routes.values()), {}
        for route in routes:
            route.manager.clear()
