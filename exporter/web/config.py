"""The web config file (`--web.config.file`): exporter-toolkit's format, parsed and checked.

Every key of exporter-toolkit's docs/web-configuration.md is understood: `tls_server_config`
(files or inline PEM, client certificate policies, allowed SANs, TLS versions, Go cipher suite
and curve names), `http_server_config` (`http2`, extra `headers`), `basic_auth_users` (bcrypt
hashes) and `rate_limit`. A key we cannot honour as exporter-toolkit does is refused, never
ignored: `http2: true` (this server speaks HTTP/1.1), and what Python's `ssl` module cannot do
(`refusals_of_python_ssl`): the client auth types that take a certificate without verifying it,
and a `curve_preferences` list of more than one curve. Unknown keys are refused too, as
exporter-toolkit's strict YAML decoding does.

`load_web_config` reads and checks a file; `parse_web_config` checks an already-read document.
Both raise `WebConfigError` with one line naming the key. Certificates and keys are loaded (and
so checked) by `exporter.web.tls`, not here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

TLS_VERSIONS = ("TLS10", "TLS11", "TLS12", "TLS13")
CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",  # exporter-toolkit's old name of RequireAnyClientCert
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
# The client auth types under which a client always presents a certificate.
CERT_REQUIRED_TYPES = frozenset(
    {"RequireAnyClientCert", "RequireClientCert", "RequireAndVerifyClientCert"}
)
# The client auth types that take a certificate without verifying it: Python's ssl verifies
# every certificate a client presents (it has no verify callback), so these are refused.
UNVERIFIED_CLIENT_AUTH_TYPES = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# Go's crypto/tls secure cipher suites (tls.CipherSuites()), the only names exporter-toolkit
# accepts. The TLS 1.3 ones are accepted and, as in Go, have no effect (TLS 1.3 suites are not
# configurable).
TLS13_CIPHER_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)
CIPHER_SUITES = frozenset(
    {
        *TLS13_CIPHER_SUITES,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
    }
)
# What Go's HTTP/2 server insists on among cipher_suites (unless only TLS 1.3 is allowed).
HTTP2_REQUIRED_SUITES = frozenset(
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}
)
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519", "X25519MLKEM768")
# The headers exporter-toolkit lets a web config add, with their allowed values (empty: any value).
ALLOWED_HEADERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Strict-Transport-Security": (),
        "X-Content-Type-Options": ("nosniff",),
        "X-Frame-Options": ("deny", "sameorigin"),
        "X-XSS-Protection": (),
        "Content-Security-Policy": (),
    }
)
_BCRYPT_HASH = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0}
_GO_UNITS.update({"m": 60.0, "h": 3600.0})

_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "": frozenset(
            {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
        ),
        "tls_server_config": frozenset(
            {
                "cert",
                "key",
                "client_ca",
                "cert_file",
                "key_file",
                "client_auth_type",
                "client_ca_file",
                "client_allowed_sans",
                "min_version",
                "max_version",
                "cipher_suites",
                "prefer_server_cipher_suites",
                "curve_preferences",
            }
        ),
        "http_server_config": frozenset({"http2", "headers"}),
        "rate_limit": frozenset({"interval", "burst"}),
    }
)


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


class WebConfigError(Exception):
    """A web config that cannot be used; the message is one line naming the key."""


@dataclass(frozen=True)
class WebConfig:
    """A checked web config. Paths are absolute (relative ones resolved against the file's
    directory). `None` means "not set" where exporter-toolkit tells unset from a value."""

    cert_file: str | None = None
    key_file: str | None = None
    cert: str | None = None  # inline PEM
    key: str | None = field(default=None, repr=False)  # inline PEM: a secret
    client_ca_file: str | None = None
    client_ca: str | None = None
    client_auth_type: str | None = None  # None: NoClientCert, and does not turn TLS on
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: str | None = None  # None: TLS12
    max_version: str | None = None  # None: TLS13
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()
    http2: bool | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=_empty_mapping, repr=False)
    headers: Mapping[str, str] = field(default_factory=_empty_mapping)
    rate_limit_interval_s: float = 0.0  # 0: no rate limit
    rate_limit_burst: int = 0

    def __post_init__(self) -> None:
        # Copy into read-only views so that the caller's dicts cannot change a frozen config.
        object.__setattr__(self, "basic_auth_users", MappingProxyType(dict(self.basic_auth_users)))
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    @property
    def tls_enabled(self) -> bool:
        """True when the server speaks HTTPS (any TLS setting given, as exporter-toolkit)."""
        return any(
            value
            for value in (
                self.cert_file,
                self.key_file,
                self.cert,
                self.key,
                self.client_ca_file,
                self.client_ca,
                self.client_auth_type,
            )
        )

    @property
    def auth_type(self) -> str:
        """The client auth policy in force (NoClientCert when unset)."""
        if self.client_auth_type == "RequireClientCert":
            return "RequireAnyClientCert"
        return self.client_auth_type or "NoClientCert"

    @property
    def files(self) -> tuple[str, ...]:
        """The files this config reads (watched for changes, with the config file itself)."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(key: str, message: str) -> WebConfigError:
    return WebConfigError(_one_line(f"web config {key}: {message}"))


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _section(data: Mapping[Any, Any], name: str) -> Mapping[Any, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(name, f"must be a mapping, got {_type_name(value)}")
    for key in value:
        if key not in _KEYS[name]:
            raise _fail(f"{name}.{key}", "unknown key")
    return value


def _str(section: Mapping[Any, Any], name: str, key: str) -> str | None:
    value = section.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _fail(key, f"must be a string, got {_type_name(value)}")
    return value


def _bool(section: Mapping[Any, Any], name: str, key: str) -> bool | None:
    value = section.get(name)
    if value is not None and not isinstance(value, bool):
        raise _fail(key, f"must be true or false, got {_type_name(value)}")
    return value


def _str_list(section: Mapping[Any, Any], name: str, key: str) -> tuple[str, ...] | None:
    value = section.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _fail(key, f"must be a list of strings, got {_type_name(value)}")
    for item in value:
        if not isinstance(item, str):
            raise _fail(key, f"must be a list of strings, got an item of type {_type_name(item)}")
    return tuple(value)


def _scalar_text(value: object, key: str) -> str:
    """A YAML scalar as the string Go's YAML decoder makes of it (`1` -> "1")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise _fail(key, f"must be a string, got {_type_name(value)}")


def _path(base_dir: str, path: str | None) -> str | None:
    if path is None or os.path.isabs(path):
        return path
    return os.path.join(base_dir, path)


def parse_go_duration(value: object, key: str) -> float:
    """Seconds of a Go duration ("1s", "1m30s", "250ms"; an integer is nanoseconds)."""
    if isinstance(value, bool) or value is None:
        raise _fail(key, f"must be a duration like 1s or 500ms, got {_type_name(value)}")
    if isinstance(value, int):
        seconds = value * 1e-9
    elif isinstance(value, str):
        text = value.strip()
        if text in ("0", ""):
            return 0.0
        position, seconds = 0, 0.0
        while position < len(text):
            match = _GO_DURATION.match(text, position)
            if match is None:
                raise _fail(key, f"not a duration: {value!r} (e.g. 1s, 500ms, 1m30s)")
            seconds += float(match.group(1)) * _GO_UNITS[match.group(2)]
            position = match.end()
    else:
        raise _fail(key, f"must be a duration like 1s or 500ms, got {_type_name(value)}")
    if seconds < 0:
        raise _fail(key, "must not be negative")
    return seconds


def _users(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail("basic_auth_users", f"must be a mapping, got {_type_name(value)}")
    users: dict[str, str] = {}
    for name, hashed in value.items():
        if isinstance(name, bool) or not isinstance(name, str | int):
            raise _fail("basic_auth_users", f"user names must be strings, got {_type_name(name)}")
        if not isinstance(hashed, str):
            raise _fail(f"basic_auth_users.{name}", f"must be a string, got {_type_name(hashed)}")
        users[str(name)] = hashed
    return users


def _headers(value: object) -> dict[str, str]:
    key = "http_server_config.headers"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(key, f"must be a mapping, got {_type_name(value)}")
    headers: dict[str, str] = {}
    for name, item in value.items():
        text = _scalar_text(item, f"{key}.{name}")
        if text:  # "Unset if blank"
            headers[str(name)] = text
    return headers


def parse_web_config(data: object, base_dir: str) -> WebConfig:
    """Check a parsed YAML document (None for an empty file) and build its WebConfig;
    relative paths are resolved against `base_dir`."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise WebConfigError(f"web config: the top level must be a mapping, got {_type_name(data)}")
    for key in data:
        if key not in _KEYS[""]:
            raise _fail(str(key), "unknown key")
    tls = _section(data, "tls_server_config")
    http_cfg = _section(data, "http_server_config")
    limit = _section(data, "rate_limit")

    def tls_str(name: str) -> str | None:
        return _str(tls, name, f"tls_server_config.{name}")

    def tls_list(name: str) -> tuple[str, ...] | None:
        return _str_list(tls, name, f"tls_server_config.{name}")

    prefer = _bool(
        tls, "prefer_server_cipher_suites", "tls_server_config.prefer_server_cipher_suites"
    )
    burst = limit.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int):
        raise _fail("rate_limit.burst", f"must be an integer, got {_type_name(burst)}")
    config = WebConfig(
        cert_file=_path(base_dir, tls_str("cert_file")),
        key_file=_path(base_dir, tls_str("key_file")),
        cert=tls_str("cert"),
        key=tls_str("key"),
        client_ca_file=_path(base_dir, tls_str("client_ca_file")),
        client_ca=tls_str("client_ca"),
        client_auth_type=tls_str("client_auth_type"),
        client_allowed_sans=tls_list("client_allowed_sans"),
        min_version=tls_str("min_version"),
        max_version=tls_str("max_version"),
        cipher_suites=tls_list("cipher_suites") or (),
        prefer_server_cipher_suites=True if prefer is None else prefer,
        curve_preferences=tls_list("curve_preferences") or (),
        http2=_bool(http_cfg, "http2", "http_server_config.http2"),
        basic_auth_users=_users(data.get("basic_auth_users")),
        headers=_headers(http_cfg.get("headers")),
        rate_limit_interval_s=parse_go_duration(limit.get("interval", 0), "rate_limit.interval"),
        rate_limit_burst=burst,
    )
    validate_web_config(config)
    return config


def load_web_config(path: str) -> WebConfig:
    """Read and check an exporter-toolkit web config file (not the files it names).

    Raises WebConfigError (one line naming the key or the file) when the file cannot be read,
    is not YAML, has unknown keys or wrong values.
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
    try:
        return parse_web_config(data, os.path.dirname(os.path.abspath(path)))
    except WebConfigError as exc:
        message = str(exc)
        if message.startswith("web config: "):
            message = f"web config {path}: {message.removeprefix('web config: ')}"
        raise WebConfigError(message) from None


def _validate_tls(config: WebConfig) -> None:
    tls = "tls_server_config"
    if config.client_auth_type is not None and config.client_auth_type not in CLIENT_AUTH_TYPES:
        raise _fail(
            f"{tls}.client_auth_type",
            f"unknown value {config.client_auth_type!r} (expected one of "
            f"{', '.join(CLIENT_AUTH_TYPES)})",
        )
    for name, value in (("min_version", config.min_version), ("max_version", config.max_version)):
        if value is not None and value not in TLS_VERSIONS:
            raise _fail(
                f"{tls}.{name}",
                f"unknown TLS version {value!r} (expected one of {', '.join(TLS_VERSIONS)})",
            )
    low = TLS_VERSIONS.index(config.min_version or "TLS12")
    high = TLS_VERSIONS.index(config.max_version or "TLS13")
    if low > high:
        raise _fail(f"{tls}.min_version", "is higher than max_version")
    for suite in config.cipher_suites:
        if suite not in CIPHER_SUITES:
            raise _fail(
                f"{tls}.cipher_suites",
                f"unknown cipher {suite!r} (Go's secure suites only, e.g. "
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)",
            )
    for curve in config.curve_preferences:
        if curve not in CURVES:
            raise _fail(
                f"{tls}.curve_preferences",
                f"unknown curve {curve!r} (expected some of {', '.join(CURVES)})",
            )
    if not config.tls_enabled:
        return
    for inline, path, name in (
        (config.cert, config.cert_file, "cert"),
        (config.key, config.key_file, "key"),
        (config.client_ca, config.client_ca_file, "client_ca"),
    ):
        if inline and path:
            raise _fail(f"{tls}.{name}", f"set {name} or {name}_file, not both")
    if not (config.cert or config.cert_file):
        raise _fail(f"{tls}.cert_file", "missing one of cert or cert_file")
    if not (config.key or config.key_file):
        raise _fail(f"{tls}.key_file", "missing one of key or key_file")
    has_ca = bool(config.client_ca or config.client_ca_file)
    if has_ca and config.auth_type == "NoClientCert":
        raise _fail(
            f"{tls}.client_auth_type",
            "client CA certificates are configured without a client auth policy",
        )
    if config.client_allowed_sans is not None and config.auth_type not in CERT_REQUIRED_TYPES:
        raise _fail(
            f"{tls}.client_allowed_sans",
            "requires client_auth_type RequireAndVerifyClientCert",
        )
    tls13_only = config.min_version == "TLS13"
    suites = set(config.cipher_suites)
    if (
        config.http2 is not False
        and suites
        and not tls13_only
        and not suites & HTTP2_REQUIRED_SUITES
    ):
        raise _fail(
            f"{tls}.cipher_suites",
            "missing TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or "
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, which exporter-toolkit's HTTP/2 "
            "requires (add one, or set http_server_config.http2 to false)",
        )


def refusals_of_python_ssl(config: WebConfig) -> None:
    """Refuse, naming the key, the exporter-toolkit settings Python's `ssl` module cannot
    apply: a client certificate taken without verification (ssl has no verify callback), and
    more than one curve (`SSLContext.set_ecdh_curve` sets exactly one)."""
    tls = "tls_server_config"
    if config.client_auth_type in UNVERIFIED_CLIENT_AUTH_TYPES:
        raise _fail(
            f"{tls}.client_auth_type",
            f"{config.client_auth_type} is not supported by cams-exporter: Python's ssl module "
            "cannot accept a client certificate without verifying it (use "
            "VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file)",
        )
    if len(config.curve_preferences) > 1:
        raise _fail(
            f"{tls}.curve_preferences",
            f"lists {len(config.curve_preferences)} curves, but Python's ssl module can offer "
            "only one (list one curve, or none for OpenSSL's defaults)",
        )


def validate_web_config(config: WebConfig) -> None:
    """Check a WebConfig's values (not its files); raises WebConfigError naming the key."""
    _validate_tls(config)
    refusals_of_python_ssl(config)
    if config.http2:
        raise _fail(
            "http_server_config.http2",
            "HTTP/2 is not supported by cams-exporter, which speaks HTTP/1.1 "
            "(set it to false or remove it)",
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
        if name not in ALLOWED_HEADERS:
            raise _fail(
                key, f"this header cannot be configured (allowed: {', '.join(ALLOWED_HEADERS)})"
            )
        allowed = ALLOWED_HEADERS[name]
        if allowed and value not in allowed:
            raise _fail(key, f"must be one of {', '.join(allowed)}, got {value!r}")
        if "\r" in value or "\n" in value:
            raise _fail(key, "must not contain a line break")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise _fail(key, "must be ISO-8859-1 text") from None
    if config.rate_limit_interval_s < 0:
        raise _fail("rate_limit.interval", "must not be negative")
    if config.rate_limit_burst < 0:
        raise _fail("rate_limit.burst", "must not be negative")
