"""Requests to responses: routing, the web config's request limit, auth and headers, and
the bodies of /metrics, /-/healthy, /-/ready, /-/reload and `/`.

Independent of sockets: `App.respond(method, target, headers)` is all the server calls, so
everything here is testable without a connection. In exporter-toolkit's order, a request is
first counted against `rate_limit` (429), then checked against `basic_auth_users` (401; 429 while
too many password checks are already queued), then routed. The web config's extra headers go on
every response. Credentials refused without a password check (a cached failure, a full check
queue) are marked `delayed`: the connection loop answers them a little later, without a thread.
Nothing here knows what the exporter exports: /metrics, /-/ready and `/` answer whatever the
`Handlers` they are given return (none of which may block on the CAMS API).
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from urllib.parse import urlsplit

from exporter.web.auth import BasicAuth, Verdict
from exporter.web.live import WebSettingsSource
from exporter.web.negotiation import accepts_gzip, wants_openmetrics
from exporter.web.protocol import RequestHeaders
from exporter.web.requestlimit import RequestLimiter

LOG = logging.getLogger("cams_exporter.web")

_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_GZIP_LEVEL = 6
_REALM_HEADER = ("WWW-Authenticate", 'Basic realm="cams-exporter"')


@dataclass(frozen=True)
class Payload:
    """One rendered /metrics body; `gzipped` is the same body precompressed, when available.

    Either may be given as a tuple of chunks, sent one after the other (a big cached part and
    a small live part need not be copied into one buffer for every scrape). Gzip chunks are
    whole gzip members, which together form one valid gzip stream.
    """

    content_type: str
    body: bytes | tuple[bytes, ...]
    gzipped: bytes | tuple[bytes, ...] | None = None


@dataclass(frozen=True)
class Handlers:
    """What the server calls back into; none of these may block on the CAMS API."""

    metrics: Callable[[bool], Payload]  # argument: True when the client asked for OpenMetrics
    ready: Callable[[], tuple[bool, str]]  # /-/ready: (ready, its one-line answer)
    landing: Callable[[str, bool], str]  # `/`: HTML, given the telemetry path and lifecycle flag
    reload: Callable[[], tuple[bool, str]] | None = None  # POST /-/reload, when enabled


@dataclass(frozen=True)
class Response:
    """What to answer: status, content type, body (one buffer or chunks), extra headers."""

    status: int
    content_type: str
    body: bytes | tuple[bytes, ...]
    headers: tuple[tuple[str, str], ...] = ()
    delayed: bool = False  # refused credentials: the loop answers them a little later

    @property
    def chunks(self) -> tuple[bytes, ...]:
        """The body as a tuple of buffers."""
        return self.body if isinstance(self.body, tuple) else (self.body,)

    @property
    def length(self) -> int:
        """Content-Length of the body."""
        return sum(len(chunk) for chunk in self.chunks)


def text_response(status: int, message: str, *headers: tuple[str, str]) -> Response:
    """A short text/plain response."""
    return Response(status, _TEXT, message.encode("utf-8"), headers)


def request_path(target: str) -> str | None:
    """The path of a request target (origin or absolute form), None when it does not parse."""
    try:
        return urlsplit(target).path
    except ValueError:
        return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


_Route = Callable[[RequestHeaders], Response]


class App:
    """Maps (method, target, headers) to a response."""

    def __init__(
        self,
        handlers: Handlers,
        telemetry_path: str,
        settings: WebSettingsSource,
        enable_lifecycle: bool = False,
    ) -> None:
        self._handlers = handlers
        self._telemetry_path = telemetry_path
        self._settings = settings
        self._lifecycle = enable_lifecycle and handlers.reload is not None
        get = frozenset({"GET", "HEAD"})
        routes: dict[str, tuple[frozenset[str], _Route]] = {
            "/": (get, self._landing),
            "/-/healthy": (get, self._healthy),
            "/-/ready": (get, self._ready),
            "/-/reload": (frozenset({"POST", "PUT"}), self._reload),
            telemetry_path: (get, self._metrics),
        }
        self._routes: Mapping[str, tuple[frozenset[str], _Route]] = MappingProxyType(routes)

    def admit(self, headers: RequestHeaders) -> Response | None:
        """The cheap checks, which the connection loop runs before a request gets a thread:
        the request limit, and auth when its verdict needs no bcrypt check. A response when the
        request is answered here (429, 401), None when it goes on to `respond`."""
        settings = self._settings.current()
        response = self._admit(settings.limiter, settings.auth, headers)
        return None if response is None else self._decorate(response, settings.headers)

    def respond(
        self, method: str, target: str, headers: RequestHeaders, admitted: bool = False
    ) -> Response:
        """The response to one request (never raises); `admitted`: `admit` already let it in."""
        settings = self._settings.current()
        response = None if admitted else self._admit(settings.limiter, settings.auth, headers)
        if response is None:
            response = self._respond(settings.auth, method, target, headers)
        return self._decorate(response, settings.headers)

    @staticmethod
    def _decorate(response: Response, headers: tuple[tuple[str, str], ...]) -> Response:
        if not headers:
            return response
        return Response(
            response.status,
            response.content_type,
            response.body,
            response.headers + headers,
            response.delayed,
        )

    @staticmethod
    def _verdict_response(verdict: Verdict, delayed: bool = False) -> Response | None:
        if verdict is Verdict.BUSY:
            busy = text_response(429, "Too many password checks in progress", ("Retry-After", "1"))
            return replace(busy, delayed=delayed)
        if verdict is Verdict.DENIED:
            return replace(text_response(401, "Unauthorized", _REALM_HEADER), delayed=delayed)
        return None

    def _admit(
        self, limiter: RequestLimiter | None, auth: BasicAuth | None, headers: RequestHeaders
    ) -> Response | None:
        if limiter is not None and not limiter.allow():
            return text_response(429, "Too Many Requests")
        if auth is not None:
            verdict = auth.quick_check(headers.get("Authorization"))
            if verdict is not None:
                return self._verdict_response(verdict, delayed=True)
        return None

    def _respond(
        self, auth: BasicAuth | None, method: str, target: str, headers: RequestHeaders
    ) -> Response:
        if auth is not None:
            refused = self._verdict_response(auth.check(headers.get("Authorization")))
            if refused is not None:
                return refused
        path = request_path(target)
        if path is None:
            return text_response(400, "Bad request target")
        route = self._routes.get(path)
        if route is None:
            return text_response(404, "Not found")
        methods, handler = route
        if method not in methods:
            return text_response(405, "Method not allowed", ("Allow", ", ".join(sorted(methods))))
        try:
            return handler(headers)
        except Exception as exc:
            LOG.error("%s %s failed: %s: %s", method, path, type(exc).__name__, exc, exc_info=True)
            return text_response(
                500, f"Internal server error while serving {path} ({type(exc).__name__})"
            )

    def _metrics(self, headers: RequestHeaders) -> Response:
        payload = self._handlers.metrics(wants_openmetrics(headers.joined("Accept")))
        extra: tuple[tuple[str, str], ...] = (("Vary", "Accept, Accept-Encoding"),)
        body = payload.body
        if accepts_gzip(headers.joined("Accept-Encoding")):
            if payload.gzipped is not None:
                body = payload.gzipped
            else:
                plain = body if isinstance(body, bytes) else b"".join(body)
                body = gzip.compress(plain, _GZIP_LEVEL, mtime=0)
            extra += (("Content-Encoding", "gzip"),)
        return Response(200, payload.content_type, body, extra)

    def _healthy(self, headers: RequestHeaders) -> Response:
        return text_response(200, "Healthy")

    def _ready(self, headers: RequestHeaders) -> Response:
        ready, message = self._handlers.ready()
        return text_response(200 if ready else 503, message)

    def _reload(self, headers: RequestHeaders) -> Response:
        if not self._lifecycle or self._handlers.reload is None:
            return text_response(403, "Lifecycle API is not enabled.")
        ok, message = self._handlers.reload()
        if ok:
            return text_response(200, "ok")
        return text_response(400, _one_line(message) or "reload failed")

    def _landing(self, headers: RequestHeaders) -> Response:
        page = self._handlers.landing(self._telemetry_path, self._lifecycle)
        return Response(200, _HTML, page.encode("utf-8"))
