"""The exporter's HTTP server: /metrics, /-/healthy, /-/ready, /-/reload and the landing page.

Built on the standard library's `ThreadingHTTPServer` (one daemon thread per connection, HTTP/1.1
keep-alive with Content-Length on every response). It never talks to the CAMS API: every page is
rendered from the frozen `Snapshot` the poller last published, and /metrics from whatever the
`Handlers.metrics` callable returns.

Optional hardening comes from an exporter-toolkit style web config file (`--web.config.file`):
TLS (`tls_server_config`), HTTP basic auth with bcrypt hashes (`basic_auth_users`) and extra
response headers (`http_server_config.headers`). `load_web_config` validates such a file and
reports the first problem as one line naming its key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import hashlib
import hmac
import html
import ipaddress
import logging
import os
import re
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import urlsplit

import bcrypt
import yaml
from cachetools import LRUCache

from exporter.senders.page import render_sender_section
from exporter.snapshot import AccountStatus, Snapshot, TemplateSeries

__all__ = [
    "Handlers",
    "Payload",
    "WebConfig",
    "WebConfigError",
    "WebServer",
    "load_web_config",
    "parse_listen_address",
    "render_landing_page",
    "validate_web_config",
]

LOG = logging.getLogger("cams_exporter.web")

_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_REALM_HEADER = ("WWW-Authenticate", 'Basic realm="cams-exporter"')
_MAX_TEMPLATE_ROWS = 500
_MAX_DISCARDED_BODY = 1 << 20  # request bodies up to 1 MiB are read and dropped; larger close
# Seconds a keep-alive connection may sit idle: longer than any sensible scrape interval.
_IDLE_TIMEOUT = 300.0
_HANDSHAKE_TIMEOUT = 10.0
_AUTH_CACHE_SIZE = 256
_GZIP_LEVEL = 6

_TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType(
    {
        "TLS10": ssl.TLSVersion.TLSv1,
        "TLS11": ssl.TLSVersion.TLSv1_1,
        "TLS12": ssl.TLSVersion.TLSv1_2,
        "TLS13": ssl.TLSVersion.TLSv1_3,
    }
)
_CLIENT_AUTH: Mapping[str, ssl.VerifyMode] = MappingProxyType(
    {
        "NoClientCert": ssl.CERT_NONE,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }
)
# exporter-toolkit modes that take an unverified client certificate, which Python's ssl cannot do.
_UNSUPPORTED_CLIENT_AUTH = frozenset(
    {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}
)
# The headers exporter-toolkit lets a web config add, with their allowed values (empty: any value).
_ALLOWED_HEADERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Strict-Transport-Security": (),
        "X-Content-Type-Options": ("nosniff",),
        "X-Frame-Options": ("deny", "sameorigin"),
        "X-XSS-Protection": (),
        "Content-Security-Policy": (),
    }
)
_BCRYPT_HASH = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")

_TOP_KEYS = frozenset({"tls_server_config", "basic_auth_users", "http_server_config"})
_TLS_KEYS = frozenset(
    {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}
)
_TLS_IGNORED_KEYS = frozenset({"prefer_server_cipher_suites"})
_TLS_UNSUPPORTED_KEYS = frozenset(
    {"cert", "key", "client_ca", "cipher_suites", "curve_preferences", "client_allowed_sans"}
)
_HTTP_KEYS = frozenset({"headers"})
_HTTP_IGNORED_KEYS = frozenset({"http2"})
_TOP_UNSUPPORTED_KEYS = frozenset({"rate_limit"})


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


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


class WebConfigError(Exception):
    """A web config file that cannot be used; the message is one line naming the key."""


@dataclass(frozen=True)
class WebConfig:
    """The parsed web config: TLS, basic auth users (user -> bcrypt hash), extra headers.

    Paths are already resolved (relative ones against the directory of the config file).
    TLS is on when both `cert_file` and `key_file` are set. `min_version` defaults to TLS12.
    """

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=_empty_mapping)
    headers: Mapping[str, str] = field(default_factory=_empty_mapping)
    max_version: str | None = None

    def __post_init__(self) -> None:
        # Copy into read-only views so that the caller's dicts cannot change a frozen config.
        object.__setattr__(self, "basic_auth_users", MappingProxyType(dict(self.basic_auth_users)))
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    @property
    def tls_enabled(self) -> bool:
        """True when the server speaks HTTPS."""
        return bool(self.cert_file and self.key_file)


@dataclass(frozen=True)
class Handlers:
    """What the server calls back into; none of these may block on the CAMS API."""

    metrics: Callable[[bool], Payload]  # argument: True when the client asked for OpenMetrics
    snapshot: Callable[[], Snapshot]  # for /-/ready and the landing page
    reload: Callable[[], tuple[bool, str]] | None = None  # POST /-/reload; None: 404
    version: str = ""


# --------------------------------------------------------------------------------------------
# Web config file


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(key: str, message: str) -> WebConfigError:
    return WebConfigError(_one_line(f"web config {key}: {message}"))


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check_keys(
    section: Mapping[Any, Any],
    prefix: str,
    known: frozenset[str],
    ignored: frozenset[str] = frozenset(),
    unsupported: frozenset[str] = frozenset(),
) -> None:
    for key in section:
        name = f"{prefix}{key}"
        if key in unsupported:
            raise _fail(name, "not supported by cams-exporter")
        if key not in known and key not in ignored:
            raise _fail(name, "unknown key")


def _mapping(value: object, key: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(key, f"must be a mapping, got {_type_name(value)}")
    return value


def _optional_str(section: Mapping[Any, Any], name: str, key: str) -> str | None:
    value = section.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _fail(key, f"must be a string, got {_type_name(value)}")
    return value


def _check_bool(section: Mapping[Any, Any], name: str, key: str) -> None:
    value = section.get(name)
    if value is not None and not isinstance(value, bool):
        raise _fail(key, f"must be true or false, got {_type_name(value)}")


def _resolve_path(base_dir: str, path: str | None) -> str | None:
    if path is None or os.path.isabs(path):
        return path
    return os.path.join(base_dir, path)


def _string_map(value: object, key: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, item in _mapping(value, key).items():
        if isinstance(name, bool) or not isinstance(name, str | int):
            raise _fail(key, f"keys must be strings, got {_type_name(name)}")
        if not isinstance(item, str):
            raise _fail(f"{key}.{name}", f"must be a string, got {_type_name(item)}")
        result[str(name)] = item
    return result


def load_web_config(path: str) -> WebConfig:
    """Read and validate an exporter-toolkit web config file.

    Raises WebConfigError (one line naming the key or the file) when the file cannot be read, is
    not YAML, has unknown keys or wrong values, or names certificates that do not load.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise WebConfigError(
            _one_line(f"web config {path}: cannot read: {exc.strerror or exc}")
        ) from None
    except UnicodeDecodeError as exc:
        raise WebConfigError(
            _one_line(f"web config {path}: not UTF-8 text: {exc.reason}")
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise WebConfigError(
            _one_line(f"web config {path}: invalid YAML{where}: {problem}")
        ) from None

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise WebConfigError(
            f"web config {path}: the top level must be a mapping, got {_type_name(data)}"
        )
    _check_keys(data, "", _TOP_KEYS, unsupported=_TOP_UNSUPPORTED_KEYS)

    base_dir = os.path.dirname(os.path.abspath(path))
    tls = _mapping(data.get("tls_server_config"), "tls_server_config")
    _check_keys(tls, "tls_server_config.", _TLS_KEYS, _TLS_IGNORED_KEYS, _TLS_UNSUPPORTED_KEYS)
    _check_bool(tls, "prefer_server_cipher_suites", "tls_server_config.prefer_server_cipher_suites")
    http_cfg = _mapping(data.get("http_server_config"), "http_server_config")
    _check_keys(http_cfg, "http_server_config.", _HTTP_KEYS, _HTTP_IGNORED_KEYS)
    _check_bool(http_cfg, "http2", "http_server_config.http2")

    def tls_str(name: str) -> str | None:
        return _optional_str(tls, name, f"tls_server_config.{name}")

    config = WebConfig(
        cert_file=_resolve_path(base_dir, tls_str("cert_file")),
        key_file=_resolve_path(base_dir, tls_str("key_file")),
        client_ca_file=_resolve_path(base_dir, tls_str("client_ca_file")),
        client_auth_type=tls_str("client_auth_type") or "NoClientCert",
        min_version=tls_str("min_version"),
        max_version=tls_str("max_version"),
        basic_auth_users=_string_map(data.get("basic_auth_users"), "basic_auth_users"),
        headers=_string_map(http_cfg.get("headers"), "http_server_config.headers"),
    )
    validate_web_config(config)
    _ssl_context(config)  # loads the certificates now, so that a bad file fails at startup
    return config


def validate_web_config(config: WebConfig) -> None:
    """Check a WebConfig's values (not its files); raises WebConfigError naming the key."""
    tls = "tls_server_config"
    if config.client_auth_type in _UNSUPPORTED_CLIENT_AUTH:
        raise _fail(
            f"{tls}.client_auth_type",
            f"{config.client_auth_type} is not supported by cams-exporter "
            "(use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)",
        )
    if config.client_auth_type not in _CLIENT_AUTH:
        raise _fail(
            f"{tls}.client_auth_type",
            f"unknown value {config.client_auth_type!r} (expected one of "
            f"{', '.join(_CLIENT_AUTH)})",
        )
    for name, value in (("min_version", config.min_version), ("max_version", config.max_version)):
        if value is not None and value not in _TLS_VERSIONS:
            raise _fail(
                f"{tls}.{name}",
                f"unknown TLS version {value!r} (expected one of {', '.join(_TLS_VERSIONS)})",
            )
    if (
        config.min_version is not None
        and config.max_version is not None
        and _TLS_VERSIONS[config.min_version] > _TLS_VERSIONS[config.max_version]
    ):
        raise _fail(f"{tls}.min_version", "is higher than max_version")
    tls_wanted = (
        config.cert_file
        or config.key_file
        or config.client_ca_file
        or config.client_auth_type != "NoClientCert"
    )
    if tls_wanted and not config.cert_file:
        raise _fail(f"{tls}.cert_file", "required when tls_server_config is used")
    if tls_wanted and not config.key_file:
        raise _fail(f"{tls}.key_file", "required when tls_server_config is used")
    if config.client_ca_file and config.client_auth_type == "NoClientCert":
        raise _fail(
            f"{tls}.client_auth_type",
            "client_ca_file is set but client_auth_type is NoClientCert",
        )
    if config.client_auth_type != "NoClientCert" and not config.client_ca_file:
        raise _fail(
            f"{tls}.client_ca_file", f"required when client_auth_type is {config.client_auth_type}"
        )

    for user, hashed in config.basic_auth_users.items():
        key = f"basic_auth_users.{user}"
        if not user:
            raise _fail("basic_auth_users", "a user name is empty")
        if ":" in user:
            raise _fail(key, "a user name cannot contain ':' in HTTP basic auth")
        match = _BCRYPT_HASH.fullmatch(hashed)
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise _fail(key, "not a bcrypt hash")

    for name, value in config.headers.items():
        key = f"http_server_config.headers.{name}"
        if name not in _ALLOWED_HEADERS:
            raise _fail(
                key,
                f"this header cannot be configured (allowed: {', '.join(_ALLOWED_HEADERS)})",
            )
        allowed = _ALLOWED_HEADERS[name]
        if allowed and value not in allowed:
            raise _fail(key, f"must be one of {', '.join(allowed)}, got {value!r}")
        if "\r" in value or "\n" in value:
            raise _fail(key, "must not contain a line break")


def _check_readable(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise _fail(key, f"cannot read {path}: {exc.strerror or exc}") from None


def _no_password() -> bytes:
    # Without this, OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    return b""


def _ssl_context(config: WebConfig) -> ssl.SSLContext | None:
    """The server-side TLS context of a validated config, or None when TLS is off."""
    if not config.tls_enabled:
        return None
    assert config.cert_file is not None and config.key_file is not None
    tls = "tls_server_config"
    cert = _check_readable(config.cert_file, f"{tls}.cert_file")
    key = _check_readable(config.key_file, f"{tls}.key_file")
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise _fail(f"{tls}.cert_file", f"no PEM certificate in {config.cert_file}")
    if b"PRIVATE KEY-----" not in key:
        raise _fail(f"{tls}.key_file", f"no PEM private key in {config.key_file}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version = _TLS_VERSIONS[config.min_version or "TLS12"]
        if config.max_version is not None:
            context.maximum_version = _TLS_VERSIONS[config.max_version]
    except (ValueError, ssl.SSLError) as exc:
        raise _fail(f"{tls}.min_version", f"not usable with this OpenSSL: {exc}") from None
    try:
        context.load_cert_chain(config.cert_file, config.key_file, password=_no_password)
    except (OSError, ValueError) as exc:
        raise _fail(f"{tls}.key_file", f"cannot load the key pair with cert_file: {exc}") from None
    if config.client_ca_file:
        _check_readable(config.client_ca_file, f"{tls}.client_ca_file")
        try:
            context.load_verify_locations(cafile=config.client_ca_file)
        except (OSError, ValueError) as exc:
            raise _fail(f"{tls}.client_ca_file", f"cannot load CA certificates: {exc}") from None
    context.verify_mode = _CLIENT_AUTH[config.client_auth_type]
    return context


# --------------------------------------------------------------------------------------------
# Listen address


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split "HOST:PORT", ":PORT" or "[IPV6]:PORT" into (host, port); host "" is every interface.

    Raises ValueError with one line on anything else.
    """
    expected = "expected HOST:PORT, :PORT or [IPV6]:PORT"
    prefix = f"invalid listen address {address!r}"
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f"{prefix}: missing ']' ({expected})")
        host, rest = address[1:end], address[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{prefix}: {host!r} is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise ValueError(f"{prefix}: missing port ({expected})")
        port_text = rest[1:]
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep:
            raise ValueError(f"{prefix}: missing port ({expected})")
        if ":" in host:
            raise ValueError(f"{prefix}: an IPv6 address must be in brackets, e.g. [::1]:10731")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"{prefix}: port {port_text!r} is not a number ({expected})")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{prefix}: port {port} is out of range (0-65535)")
    return host, port


# --------------------------------------------------------------------------------------------
# Basic auth


class _BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes, caching successes."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = tuple((u.encode("utf-8"), h.encode("ascii")) for u, h in users.items())
        # A decoy hash of the same cost, checked for unknown users so that timing does not tell
        # which user names exist.
        cost = max(int(h[4:6]) for _, h in self._users)
        self._decoy = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(rounds=cost))
        self._cache: LRUCache[bytes, bool] = LRUCache(maxsize=_AUTH_CACHE_SIZE)
        self._cache_lock = threading.Lock()
        # bcrypt is CPU-bound by design: one check at a time keeps a flood of bad passwords from
        # starving the scrapes, which are served from the cache.
        self._bcrypt_lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        cache_key = hashlib.sha256(user + b":" + password).digest()
        with self._cache_lock:
            if self._cache.get(cache_key):
                return True
        matched: bytes | None = None
        for name, hashed in self._users:
            if hmac.compare_digest(name, user):
                matched = hashed
        with self._bcrypt_lock:
            try:
                valid = bcrypt.checkpw(password, matched if matched is not None else self._decoy)
            except ValueError:  # e.g. a password longer than bcrypt's 72 bytes
                valid = False
        if not valid or matched is None:
            return False
        with self._cache_lock:
            self._cache[cache_key] = True
        return True


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, param = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(param.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user, password


# --------------------------------------------------------------------------------------------
# Request routing (independent of the socket layer)


@dataclass(frozen=True)
class _Response:
    status: int
    content_type: str
    body: bytes | tuple[bytes, ...]
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def chunks(self) -> tuple[bytes, ...]:
        return self.body if isinstance(self.body, tuple) else (self.body,)

    @property
    def length(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)


def _text(status: int, message: str, *headers: tuple[str, str]) -> _Response:
    return _Response(status, _TEXT, message.encode("utf-8"), headers)


def _header_items(value: str) -> Iterator[tuple[str, float]]:
    """(lower-cased token, q) of each element of an Accept or Accept-Encoding header."""
    for element in value.split(","):
        token, *params = element.split(";")
        quality = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(number.strip())
                except ValueError:
                    quality = 0.0
        token = token.strip().lower()
        if token:
            yield token, quality


def _wants_openmetrics(accept: str) -> bool:
    return any(
        token == "application/openmetrics-text" and q > 0 for token, q in _header_items(accept)
    )


def _accepts_gzip(accept_encoding: str) -> bool:
    return any(token in ("gzip", "x-gzip") and q > 0 for token, q in _header_items(accept_encoding))


def _all_values(headers: Message, name: str) -> str:
    return ", ".join(headers.get_all(name) or [])


def _request_path(target: str) -> str | None:
    """The path of a request target (origin or absolute form), None when it does not parse."""
    try:
        return urlsplit(target).path
    except ValueError:
        return None


def _readiness(snapshot: Snapshot) -> tuple[bool, str]:
    if snapshot.ready:
        return True, "Ready"
    done, total = snapshot.progress
    percent = done * 100 // total if total else 0
    return False, f"Not ready: {done}/{total} units polled ({percent}%)"


_Route = Callable[[Message], _Response]


class _App:
    """Maps (method, path, headers) to a response; the part of the server worth unit-testing."""

    def __init__(self, handlers: Handlers, telemetry_path: str, config: WebConfig) -> None:
        self._handlers = handlers
        self._telemetry_path = telemetry_path
        self._auth = _BasicAuth(config.basic_auth_users) if config.basic_auth_users else None
        self.extra_headers = tuple(config.headers.items())
        routes: dict[str, tuple[frozenset[str], _Route]] = {
            "/": (frozenset({"GET", "HEAD"}), self._landing),
            "/-/healthy": (frozenset({"GET", "HEAD"}), self._healthy),
            "/-/ready": (frozenset({"GET", "HEAD"}), self._ready),
        }
        if handlers.reload is not None:
            routes["/-/reload"] = (frozenset({"POST"}), self._reload)
        routes[telemetry_path] = (frozenset({"GET", "HEAD"}), self._metrics)
        self._routes: Mapping[str, tuple[frozenset[str], _Route]] = MappingProxyType(routes)

    def respond(self, method: str, target: str, headers: Message) -> _Response:
        if self._auth is not None and not self._auth.check(headers.get("Authorization")):
            return _text(401, "Unauthorized", _REALM_HEADER)
        path = _request_path(target)
        if path is None:
            return _text(400, "Bad request target")
        route = self._routes.get(path)
        if route is None:
            return _text(404, "Not found")
        methods, handler = route
        if method not in methods:
            return _text(405, "Method not allowed", ("Allow", ", ".join(sorted(methods))))
        try:
            return handler(headers)
        except Exception as exc:
            LOG.error("%s %s failed: %s: %s", method, path, type(exc).__name__, exc, exc_info=True)
            return _text(500, f"Internal server error while serving {path} ({type(exc).__name__})")

    def _metrics(self, headers: Message) -> _Response:
        payload = self._handlers.metrics(_wants_openmetrics(_all_values(headers, "Accept")))
        extra: tuple[tuple[str, str], ...] = (("Vary", "Accept-Encoding"),)
        body = payload.body
        if _accepts_gzip(_all_values(headers, "Accept-Encoding")):
            if payload.gzipped is not None:
                body = payload.gzipped
            else:
                plain = body if isinstance(body, bytes) else b"".join(body)
                body = gzip.compress(plain, compresslevel=_GZIP_LEVEL, mtime=0)
            extra += (("Content-Encoding", "gzip"),)
        return _Response(200, payload.content_type, body, extra)

    def _healthy(self, headers: Message) -> _Response:
        return _text(200, "Healthy")

    def _ready(self, headers: Message) -> _Response:
        ready, message = _readiness(self._handlers.snapshot())
        return _text(200 if ready else 503, message)

    def _reload(self, headers: Message) -> _Response:
        assert self._handlers.reload is not None
        ok, message = self._handlers.reload()
        if ok:
            return _text(200, "ok")
        return _text(400, _one_line(message) or "reload failed")

    def _landing(self, headers: Message) -> _Response:
        page = render_landing_page(
            self._handlers.snapshot(),
            self._handlers.version,
            self._telemetry_path,
            self._handlers.reload is not None,
        )
        return _Response(200, _HTML, page.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Landing page


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _endpoint_host(endpoint: str) -> str:
    """HOST[:PORT] of an endpoint URL, never its user info, path or query."""
    try:
        parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port is not None else host


def _space(space: str) -> str:
    return space if space else "(none)"


def _account_row(account: AccountStatus) -> str:
    units = (
        str(account.units)
        if account.first_cycle_complete
        else f"{account.units_done}/{account.units}"
    )
    duration = "" if account.last_poll_duration is None else f"{account.last_poll_duration:.1f}s"
    discovered = ", ".join(
        f"{_space(space)}: {count}" for space, count in account.templates_discovered
    )
    cells = (
        account.name,
        _endpoint_host(account.endpoint),
        ", ".join(_space(s) for s in account.spaces),
        units,
        "yes" if account.up else "no",
        _iso(account.last_poll_success),
        duration,
        account.last_error_code or "",
        account.shape,
        discovered,
    )
    return "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in cells) + "</tr>"


def _template_row(series: TemplateSeries) -> str:
    key, counts = series.key, series.counts
    cells = (
        key.account,
        _space(key.space),
        key.template_code,
        key.language,
        key.template_type,
        series.name,
        series.category,
        series.audit_status,
        counts.sent,
        counts.delivered,
        counts.read,
        _iso(series.last_success),
        series.last_error or "",
    )
    return "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in cells) + "</tr>"


_ACCOUNT_COLUMNS = (
    "Account",
    "Endpoint",
    "Spaces",
    "Units",
    "Up",
    "Last poll",
    "Poll duration",
    "Last error",
    "Shape",
    "Templates discovered",
)
_TEMPLATE_COLUMNS = (
    "Account",
    "Space",
    "Template code",
    "Language",
    "Type",
    "Name",
    "Category",
    "Audit status",
    "Sent",
    "Delivered",
    "Read",
    "Last success",
    "Last error",
)
_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:90%}"
    "th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left}th{background:#eee}"
)


def _table(columns: tuple[str, ...], rows: list[str]) -> str:
    head = "".join(f"<th>{_e(column)}</th>" for column in columns)
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )


def render_landing_page(
    snapshot: Snapshot, version: str, telemetry_path: str, reload_enabled: bool = False
) -> str:
    """The HTML of `/`: links, readiness, one row per account and up to 500 template rows."""
    ready, readiness = _readiness(snapshot)
    shown = snapshot.series[:_MAX_TEMPLATE_ROWS]
    hidden = len(snapshot.series) - len(shown)
    links = [
        f'<li><a href="{_e(telemetry_path)}">{_e(telemetry_path)}</a> (metrics)</li>',
        '<li><a href="/-/healthy">/-/healthy</a></li>',
        '<li><a href="/-/ready">/-/ready</a></li>',
    ]
    if reload_enabled:
        links.append("<li>POST /-/reload reloads the configuration</li>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>CAMS Exporter</title>',
        f"<style>{_STYLE}</style></head>",
        "<body>",
        "<h1>CAMS Exporter</h1>",
        "<p>Prometheus exporter for Alibaba Cloud ChatApp Message Service template metrics.</p>",
        f"<p>Version: {_e(version or 'unknown')}</p>",
        "<ul>",
        *links,
        "</ul>",
        f'<p>Status: <strong class="{"ready" if ready else "not-ready"}">{_e(readiness)}'
        "</strong></p>",
        f"<p>Snapshot {_e(snapshot.generation)} built {_e(_iso(snapshot.created or None))}.</p>",
        f"<h2>Accounts ({len(snapshot.accounts)})</h2>",
        _table(_ACCOUNT_COLUMNS, [_account_row(a) for a in snapshot.accounts]),
        f"<h2>Templates ({len(snapshot.series)} template-language units)</h2>",
        _table(_TEMPLATE_COLUMNS, [_template_row(s) for s in shown]),
    ]
    if hidden:
        parts.append(f"<p>&hellip; and {hidden} more (see {_e(telemetry_path)}).</p>")
    if section := render_sender_section(snapshot):  # "" when no account has sender health
        parts.append(section)
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Socket layer


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return "cams-exporter"

    def _dispatch(self) -> None:
        started = time.monotonic()
        server = cast(_Server, self.server)
        self._discard_body()
        response = server.app.respond(self.command, self.path, self.headers)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(response.length))
        for name, value in response.headers + server.app.extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            for chunk in response.chunks:
                self.wfile.write(chunk)
        LOG.debug(
            "%s %s %s -> %d, %d bytes in %.3fs",
            self.client_address[0],
            self.command,
            _request_path(self.path) or "?",
            response.status,
            response.length,
            time.monotonic() - started,
        )

    def _discard_body(self) -> None:
        """Read and drop a request body so that the connection can be reused."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_DISCARDED_BODY:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                self.close_connection = True
                return
            length -= len(chunk)

    do_GET = _dispatch
    do_HEAD = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_DELETE = _dispatch
    do_PATCH = _dispatch
    do_OPTIONS = _dispatch
    do_TRACE = _dispatch
    do_CONNECT = _dispatch

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged once, by _dispatch, after the body is written."""

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s: %s", self.client_address[0], format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # connections are closed explicitly by close_connections()

    def __init__(
        self,
        family: int,
        sockaddr: tuple[Any, ...],
        app: _App,
        context: ssl.SSLContext | None,
    ) -> None:
        self.address_family = family
        self.app = app
        self._context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(sockaddr, _RequestHandler, bind_and_activate=False)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            every = self.server_address[0] == "::"
            # "::" means every interface, IPv4 included, as Go's listener does.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(not every))
        socketserver.TCPServer.server_bind(self)
        # HTTPServer.server_bind would do a (possibly slow) reverse DNS lookup here.
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def server_activate(self) -> None:
        super().server_activate()
        if self._context is not None:
            # Handshakes happen in each connection's thread (finish_request), never in accept().
            self.socket = self._context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            if isinstance(request, ssl.SSLSocket):
                request.settimeout(_HANDSHAKE_TIMEOUT)
                try:
                    request.do_handshake()
                except (OSError, ValueError) as exc:
                    LOG.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                    return
            super().finish_request(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.debug("connection from %s ended with an error", client_address[0], exc_info=True)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def _bind(address: str, app: _App, context: ssl.SSLContext | None) -> _Server:
    host, port = parse_listen_address(address)
    candidates: list[tuple[int, tuple[Any, ...]]] = []
    if host == "":
        if socket.has_ipv6:
            candidates.append((socket.AF_INET6, ("::", port)))
        candidates.append((socket.AF_INET, ("0.0.0.0", port)))
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise ValueError(
                f"invalid listen address {address!r}: cannot resolve {host!r}: {exc.strerror}"
            ) from None
        candidates = [(info[0], info[4]) for info in infos[:1]]
    error: OSError | None = None
    for family, sockaddr in candidates:
        try:
            return _Server(family, sockaddr, app, context)
        except OSError as exc:
            error = exc
    assert error is not None
    raise OSError(error.errno, _one_line(f"cannot listen on {address}: {error.strerror or error}"))


class WebServer:
    """The exporter's HTTP(S) server; `start()` serves in a background daemon thread."""

    def __init__(
        self,
        listen_address: str,
        handlers: Handlers,
        telemetry_path: str = "/metrics",
        web_config: WebConfig | None = None,
    ) -> None:
        if not telemetry_path.startswith("/") or telemetry_path.startswith("/-/"):
            raise ValueError(
                f"invalid telemetry path {telemetry_path!r}: must start with '/' and not with '/-/'"
            )
        config = web_config if web_config is not None else WebConfig()
        validate_web_config(config)
        context = _ssl_context(config)
        self._listen_address = listen_address
        self._tls = context is not None
        self._server = _bind(listen_address, _App(handlers, telemetry_path, config), context)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def port(self) -> int:
        """The bound port (the real one when the address asked for port 0)."""
        return int(self._server.server_address[1])

    @property
    def tls(self) -> bool:
        """True when the server speaks HTTPS."""
        return self._tls

    def start(self) -> None:
        """Serve in a background daemon thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("web server already shut down")
            if self._thread is not None:
                raise RuntimeError("web server already started")
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="cams-exporter-web",
                daemon=True,
            )
            self._thread.start()
        LOG.info(
            "Listening on %s (port %d, %s)",
            self._listen_address,
            self.port,
            "TLS" if self._tls else "plain HTTP",
        )

    def shutdown(self) -> None:
        """Stop accepting, close open connections and release the port; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._server.shutdown()
            thread.join(timeout=5)
        self._server.close_connections()
        self._server.server_close()
