"""TLS for the web server: a `WebConfig`'s `tls_server_config` as an `ssl.SSLContext`.

exporter-toolkit semantics, with Go's names mapped to OpenSSL's:
- versions TLS10..TLS13 (default TLS12..TLS13); allowing TLS 1.0/1.1 lowers OpenSSL's security
  level to 0, without which no TLS 1.0/1.1 handshake can succeed with OpenSSL 3;
- `cipher_suites` in Go's names, in order, for TLS 1.2 and below (TLS 1.3 suites are accepted
  and, as in Go, not configurable); unset, Go's default list; `prefer_server_cipher_suites`
  picks whose order wins;
- `curve_preferences` of one curve, in Go's names, through `SSLContext.set_ecdh_curve` (with
  OpenSSL 3 the only group offered); a longer list is refused by `exporter.web.config`, and a
  curve ssl cannot name (X25519MLKEM768, a hybrid group) at start, naming the key;
- the verifying `client_auth_type`s (the ones that take a certificate unverified are refused by
  `exporter.web.config`) check against `client_ca_file` / `client_ca`, or the system's CAs
  when neither is given (as Go does);
- `client_allowed_sans`: after the handshake, a client certificate without one of the listed
  DNS, IP, e-mail or URI SANs gets its connection closed (`client_sans_allowed`).
Certificates, keys and CAs are read when the context is built, so a reload sees new files;
inline PEM keys go through an anonymous in-memory file, never to disk.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from exporter.web.config import TLS13_CIPHER_SUITES, WebConfig, WebConfigError

_TLS = "tls_server_config"
_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType(
    {
        "TLS10": ssl.TLSVersion.TLSv1,
        "TLS11": ssl.TLSVersion.TLSv1_1,
        "TLS12": ssl.TLSVersion.TLSv1_2,
        "TLS13": ssl.TLSVersion.TLSv1_3,
    }
)
_OPENSSL_CIPHERS: Mapping[str, str] = MappingProxyType(
    {
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
        "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    }
)
# Go's default TLS 1.2 suites (no RSA key exchange), in its order of preference.
_GO_DEFAULT_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
)
# Go's curve names as `SSLContext.set_ecdh_curve` takes them (OpenSSL's short names).
_SSL_CURVES: Mapping[str, str] = MappingProxyType(
    {
        "CurveP256": "prime256v1",
        "CurveP384": "secp384r1",
        "CurveP521": "secp521r1",
        "X25519": "X25519",
        "X25519MLKEM768": "X25519MLKEM768",
    }
)


def _fail(key: str, message: str) -> WebConfigError:
    return WebConfigError(" ".join(f"web config {_TLS}.{key}: {message}".split()))


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise _fail(key, f"cannot read {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _pem_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can read `data` from: an anonymous in-memory file where the system has
    them, else a private temporary file removed at once."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("cams-exporter-pem", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="cams-exporter-") as directory:
        path = os.path.join(directory, "pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        yield path


def _no_password() -> bytes:
    # Without this, OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    return b""


def _load_key_pair(context: ssl.SSLContext, config: WebConfig) -> None:
    if config.cert_file:
        cert, cert_key = _read(config.cert_file, "cert_file"), "cert_file"
    else:
        cert, cert_key = (config.cert or "").encode("utf-8"), "cert"
    if config.key_file:
        key, key_key = _read(config.key_file, "key_file"), "key_file"
    else:
        key, key_key = (config.key or "").encode("utf-8"), "key"
    where = f" in {config.cert_file}" if config.cert_file else ""
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise _fail(cert_key, f"no PEM certificate{where}")
    if b"PRIVATE KEY-----" not in key:
        raise _fail(
            key_key, f"no PEM private key{' in ' + config.key_file if config.key_file else ''}"
        )
    try:
        with _pem_file(cert) as cert_path, _pem_file(key) as key_path:
            context.load_cert_chain(cert_path, key_path, password=_no_password)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _fail(key_key, f"cannot load the key pair with {cert_key}: {reason}") from None


def _load_client_cas(context: ssl.SSLContext, config: WebConfig) -> None:
    if config.client_ca_file:
        data, key = _read(config.client_ca_file, "client_ca_file"), "client_ca_file"
    elif config.client_ca:
        data, key = config.client_ca.encode("utf-8"), "client_ca"
    else:
        if config.auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go: the system's roots
        return
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise _fail(key, "no PEM certificate in the client CA")
    try:
        context.load_verify_locations(cadata=data.decode("ascii", errors="replace"))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _fail(key, f"cannot load CA certificates: {reason}") from None


def _ciphers(config: WebConfig) -> tuple[list[str], bool]:
    """(OpenSSL names of the TLS <= 1.2 suites, whether only TLS 1.3 suites were listed)."""
    if not config.cipher_suites:
        return list(_GO_DEFAULT_CIPHERS), False
    names = [_OPENSSL_CIPHERS[s] for s in config.cipher_suites if s not in TLS13_CIPHER_SUITES]
    return names, not names


def _set_versions_and_ciphers(context: ssl.SSLContext, config: WebConfig) -> None:
    low = config.min_version or "TLS12"
    high = config.max_version or "TLS13"
    names, tls13_only = _ciphers(config)
    if tls13_only:
        if high != "TLS13":
            raise _fail("cipher_suites", "lists only TLS 1.3 suites but max_version is below TLS13")
        low = "TLS13"  # no TLS 1.2 suite left: only TLS 1.3 handshakes can succeed, as in Go
        names = list(_GO_DEFAULT_CIPHERS)
    # OpenSSL 3 refuses TLS 1.0/1.1 handshakes (SHA-1 signatures) above security level 0.
    level = 0 if low in ("TLS10", "TLS11") else 2
    try:
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated, and asked for explicitly
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = _VERSIONS[low]
            context.maximum_version = _VERSIONS[high]
        context.set_ciphers(":".join(names) + f":@SECLEVEL={level}")
    except (ValueError, ssl.SSLError) as exc:
        raise _fail("min_version", f"not usable with this OpenSSL: {exc}") from None
    if config.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE


def _set_curves(context: ssl.SSLContext, config: WebConfig) -> None:
    if not config.curve_preferences:
        return
    (curve,) = config.curve_preferences  # more than one is refused by validate_web_config
    try:
        context.set_ecdh_curve(_SSL_CURVES[curve])
    except (ValueError, ssl.SSLError):
        raise _fail(
            "curve_preferences",
            f"{curve} is not available through Python's ssl module with {ssl.OPENSSL_VERSION}",
        ) from None


def _set_client_auth(context: ssl.SSLContext, config: WebConfig) -> None:
    # The unverified policies (RequestClientCert, RequireAnyClientCert) are refused by
    # validate_web_config: Python's ssl verifies every certificate a client presents.
    context.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[config.auth_type]


def build_ssl_context(config: WebConfig) -> ssl.SSLContext | None:
    """The server context of a checked config (None when TLS is off); reads every file it
    names now. Raises WebConfigError (one line naming the key) when something does not load."""
    if not config.tls_enabled:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_versions_and_ciphers(context, config)
    _load_key_pair(context, config)
    _load_client_cas(context, config)
    _set_client_auth(context, config)
    _set_curves(context, config)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _san_values(peer: Mapping[str, Any]) -> Iterator[str]:
    for kind, value in peer.get("subjectAltName", ()):
        if kind == "IP Address":
            try:
                yield str(ipaddress.ip_address(str(value).strip()))
            except ValueError:
                yield str(value)
        elif kind in ("DNS", "email", "URI"):
            yield str(value)


def client_sans_allowed(sock: ssl.SSLSocket, allowed: tuple[str, ...] | None) -> bool:
    """True when no SAN list is configured, or the client's certificate has one of them."""
    if allowed is None:
        return True
    try:
        peer = sock.getpeercert()
    except (ValueError, OSError):
        return False
    if not peer:
        return False
    return any(value in allowed for value in _san_values(peer))
