"""exporter.web.tls over real TLS on 127.0.0.1: versions, Go cipher and curve names, every
client auth policy, allowed SANs, inline PEM, and certificate rotation without a restart; what
Python's ssl module cannot do (an unverified client certificate, more than one curve) is refused
at start in one line naming the key."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.web.config import WebConfig, WebConfigError
from exporter.web.live import WatchedWebConfig
from exporter.web.server import WebServer
from tests.kit.web import certs, raw_request, serve

__all__ = ["certs", "serve"]  # fixtures, imported from tests.kit.web
# The clients here ask for TLS 1.0 and 1.1 on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")


@dataclass(frozen=True)
class Handshake:
    status: int
    cipher: str
    version: str
    server_serial: int


def tls_get(
    port: int,
    ca: Path,
    *,
    cert: tuple[Path, Path] | None = None,
    max_version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    curve: str | None = None,
    path: str = "/-/healthy",
) -> Handshake:
    """GET over TLS as a client configured like exporter-toolkit's tests configure Go's."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_ciphers(f"{ciphers or 'DEFAULT'}:@SECLEVEL=0")  # only the server may refuse
    if max_version is not None:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = max_version
    if curve is not None:
        context.set_ecdh_curve(curve)  # the only group the client offers
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        cipher, version = sock.cipher(), sock.version()
        der = sock.getpeercert(binary_form=True)
        assert cipher is not None and version is not None and der is not None
        serial = int.from_bytes(der[:64], "big")  # enough to tell two certificates apart
        return Handshake(response.status, cipher[0], version, serial)
    finally:
        conn.close()


def fails(call: Callable[[], object]) -> bool:
    try:
        call()
    except (OSError, http.client.HTTPException):
        return True
    return False


def server_config(certs: dict[str, Path], **fields: object) -> WebConfig:
    return WebConfig(
        cert_file=str(certs["server_cert"]),
        key_file=str(certs["server_key"]),
        **fields,  # type: ignore[arg-type]
    )


def test_tls_and_what_else_arrives_on_the_port(
    serve: Callable[..., WebServer], certs: dict[str, Path]
) -> None:
    server = serve(web_config=server_config(certs))
    assert server.tls
    done = tls_get(server.port, certs["ca_cert"])
    assert (done.status, done.version) == (200, "TLSv1.3")
    # Plain HTTP on the TLS port: a plain 400 saying so, as Go's server answers.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"Client sent an HTTP request to an HTTPS server." in answer
    # Garbage, and a client that does not trust the certificate: that connection fails only.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05garbage")
        reply = raw.recv(1024)
        assert reply == b"" or reply[0] == 0x15  # closed, or a TLS alert record
    assert fails(lambda: tls_get(server.port, certs["client_cert"]))
    assert tls_get(server.port, certs["ca_cert"]).status == 200


def test_tls_client_on_a_plain_port_fails_at_once(
    serve: Callable[..., WebServer], certs: dict[str, Path]
) -> None:
    server = serve()
    assert fails(lambda: tls_get(server.port, certs["ca_cert"]))
    assert raw_request(server.port, "/-/healthy").status == 200


@pytest.mark.parametrize(
    ("low", "high", "client_max", "works"),
    [
        (None, None, ssl.TLSVersion.TLSv1_1, False),  # the default minimum is TLS 1.2
        (None, None, ssl.TLSVersion.TLSv1_2, True),
        ("TLS13", None, ssl.TLSVersion.TLSv1_2, False),
        ("TLS10", None, ssl.TLSVersion.TLSv1, True),  # really usable when allowed
        ("TLS11", "TLS11", ssl.TLSVersion.TLSv1_1, True),
        ("TLS10", "TLS12", ssl.TLSVersion.TLSv1_3, True),
    ],
)
def test_tls_versions(
    serve: Callable[..., WebServer],
    certs: dict[str, Path],
    low: str | None,
    high: str | None,
    client_max: ssl.TLSVersion,
    works: bool,
) -> None:
    server = serve(web_config=server_config(certs, min_version=low, max_version=high))
    call = lambda: tls_get(server.port, certs["ca_cert"], max_version=client_max)  # noqa: E731
    assert fails(call) is not works
    if works:
        names = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
        server_high = ["TLS10", "TLS11", "TLS12", "TLS13"].index(high or "TLS13")
        client_high = [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2,
                       ssl.TLSVersion.TLSv1_3].index(client_max)  # fmt: skip
        assert call().version == names[min(server_high, client_high)]


def test_cipher_suites_by_their_go_names_in_the_order_asked(
    serve: Callable[..., WebServer], certs: dict[str, Path]
) -> None:
    suites = ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    both = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
    ca = certs["ca_cert"]
    prefer = serve(web_config=server_config(certs, cipher_suites=suites, max_version="TLS12"))
    assert tls_get(prefer.port, ca, ciphers=both).cipher == "ECDHE-RSA-AES256-GCM-SHA384"
    assert fails(lambda: tls_get(prefer.port, ca, ciphers="ECDHE-RSA-AES256-SHA"))
    client_order = serve(
        web_config=server_config(
            certs, cipher_suites=suites, max_version="TLS12", prefer_server_cipher_suites=False
        )
    )
    assert tls_get(client_order.port, ca, ciphers=both).cipher == "ECDHE-RSA-AES128-GCM-SHA256"
    # TLS 1.3 suites are accepted and, as in Go, change nothing.
    only13 = serve(
        web_config=server_config(certs, cipher_suites=("TLS_AES_128_GCM_SHA256",), http2=False)
    )
    assert tls_get(only13.port, ca).version == "TLSv1.3"
    assert fails(lambda: tls_get(only13.port, ca, max_version=ssl.TLSVersion.TLSv1_2))


def refusal(serve: Callable[..., WebServer], config: WebConfig) -> str:
    """The one-line message a server refuses to start with for `config`."""
    with pytest.raises(WebConfigError) as info:
        serve(web_config=config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_curve_preferences(serve: Callable[..., WebServer], certs: dict[str, Path]) -> None:
    ca = certs["ca_cert"]
    p521 = serve(
        web_config=server_config(certs, min_version="TLS13", curve_preferences=("CurveP521",))
    )
    assert tls_get(p521.port, ca, curve="secp521r1").status == 200
    assert fails(lambda: tls_get(p521.port, ca, curve="secp384r1"))
    x25519 = serve(web_config=server_config(certs, curve_preferences=("X25519",)))
    assert tls_get(x25519.port, ca, curve="X25519").status == 200
    assert fails(lambda: tls_get(x25519.port, ca, curve="prime256v1"))


def test_more_than_one_curve_is_refused_naming_the_key(
    serve: Callable[..., WebServer], certs: dict[str, Path]
) -> None:
    several = server_config(certs, curve_preferences=("X25519", "CurveP384"))
    message = refusal(serve, several)
    assert message.startswith("web config tls_server_config.curve_preferences: lists 2 curves")
    assert "Python's ssl module can offer only one" in message


def test_a_curve_python_ssl_cannot_name_is_refused_naming_the_key(
    serve: Callable[..., WebServer], certs: dict[str, Path]
) -> None:
    hybrid = server_config(certs, curve_preferences=("X25519MLKEM768",))
    message = refusal(serve, hybrid)
    assert message.startswith("web config tls_server_config.curve_preferences: X25519MLKEM768")
    assert "not available through Python's ssl module" in message


@pytest.mark.parametrize(
    "policy", ["RequestClientCert", "RequireAnyClientCert", "RequireClientCert"]
)
def test_unverified_client_certificates_are_refused_naming_the_key(
    serve: Callable[..., WebServer], certs: dict[str, Path], policy: str
) -> None:
    config = server_config(certs, client_auth_type=policy, client_ca_file=str(certs["ca_cert"]))
    message = refusal(serve, config)
    assert message.startswith(f"web config tls_server_config.client_auth_type: {policy} is not")
    assert "cannot accept a client certificate without verifying it" in message


@pytest.mark.parametrize(
    ("policy", "ca", "presented", "works"),
    [
        ("NoClientCert", None, None, True),
        ("NoClientCert", None, "client", True),
        ("VerifyClientCertIfGiven", None, None, True),
        ("VerifyClientCertIfGiven", "client", "client", True),
        ("VerifyClientCertIfGiven", "client", "client2", False),
        ("VerifyClientCertIfGiven", None, "client", False),  # checked against the system CAs
        ("RequireAndVerifyClientCert", "client", None, False),
        ("RequireAndVerifyClientCert", "client", "client", True),
        ("RequireAndVerifyClientCert", "client", "client2", False),
        ("RequireAndVerifyClientCert", None, "client", False),
    ],
)
def test_client_auth_policies(
    serve: Callable[..., WebServer],
    certs: dict[str, Path],
    policy: str,
    ca: str | None,
    presented: str | None,
    works: bool,
) -> None:
    config = server_config(
        certs,
        client_auth_type=policy,
        client_ca_file=str(certs[f"{ca}_cert"]) if ca else None,
    )
    server = serve(web_config=config)
    pair = (certs[f"{presented}_cert"], certs[f"{presented}_key"]) if presented else None
    assert fails(lambda: tls_get(server.port, certs["ca_cert"], cert=pair)) is not works


def test_client_allowed_sans(serve: Callable[..., WebServer], certs: dict[str, Path]) -> None:
    ca = certs["ca_cert"]
    pair = (certs["client2_cert"], certs["client2_key"])
    good = serve(
        web_config=server_config(
            certs,
            client_auth_type="RequireAndVerifyClientCert",
            client_ca_file=str(certs["client2_cert"]),
            client_allowed_sans=("one", "test3", "two"),
        )
    )
    assert tls_get(good.port, ca, cert=pair).status == 200
    bad = serve(
        web_config=server_config(
            certs,
            client_auth_type="RequireAndVerifyClientCert",
            client_ca_file=str(certs["client2_cert"]),
            client_allowed_sans=("bad", "client.example"),
        )
    )
    assert fails(lambda: tls_get(bad.port, ca, cert=pair))


def test_inline_certificate_key_and_client_ca(
    serve: Callable[..., WebServer], certs: dict[str, Path]
) -> None:
    config = WebConfig(
        cert=certs["server_cert"].read_text(),
        key=certs["server_key"].read_text(),
        client_ca=certs["client_cert"].read_text(),
        client_auth_type="RequireAndVerifyClientCert",
    )
    assert "PRIVATE" not in repr(config)
    server = serve(web_config=config)
    pair = (certs["client_cert"], certs["client_key"])
    assert tls_get(server.port, certs["ca_cert"], cert=pair).status == 200
    assert fails(lambda: tls_get(server.port, certs["ca_cert"]))


def test_a_rotated_certificate_is_served_without_restart(
    tmp_path: Path, serve: Callable[..., WebServer], certs: dict[str, Path]
) -> None:
    from tests.kit.web import pki

    second = pki(tmp_path / "second")  # another CA and server certificate
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    shutil.copy(certs["server_cert"], cert)
    shutil.copy(certs["server_key"], key)
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    server = serve(web_config=WatchedWebConfig(str(path)))
    first = tls_get(server.port, certs["ca_cert"])
    # Rotate: key first, then certificate, as a certificate manager writes them.
    for source, target in ((second["server_key"], key), (second["server_cert"], cert)):
        before = target.stat().st_mtime_ns
        shutil.copy(source, target)
        os.utime(target, ns=(before + 10**9, before + 10**9))
    rotated = tls_get(server.port, second["ca_cert"])
    assert rotated.status == 200 and rotated.server_serial != first.server_serial
    assert fails(lambda: tls_get(server.port, certs["ca_cert"]))
