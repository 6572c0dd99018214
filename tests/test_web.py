"""Tests of exporter.web over real HTTP(S) on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import base64
import gzip
import http.client
import logging
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter
from prometheus_client import exposition as text_exposition
from prometheus_client.openmetrics import exposition as om_exposition

from exporter.model import UnitKey
from exporter.snapshot import AccountStatus, Counts, Snapshot, TemplateSeries
from exporter.web import (
    Handlers,
    Payload,
    WebConfig,
    WebConfigError,
    WebServer,
    load_web_config,
    parse_listen_address,
)

PASSWORD = "s3cret-pass"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


# ------------------------------------------------------------------------------------------
# Helpers


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter(
        "cams_template_messages_sent", "Messages sent.", ["account"], registry=registry
    )
    counter.labels(account="main").inc(42)
    return registry


REGISTRY = _registry()


def render_metrics(openmetrics: bool) -> Payload:
    if openmetrics:
        body = om_exposition.generate_latest(REGISTRY)  # type: ignore[no-untyped-call]
        return Payload(om_exposition.CONTENT_TYPE_LATEST, body)
    return Payload(text_exposition.CONTENT_TYPE_LATEST, text_exposition.generate_latest(REGISTRY))


def account(ready: bool = True, **overrides: Any) -> AccountStatus:
    fields: dict[str, Any] = {
        "name": "main",
        "endpoint": "http://127.0.0.1:18080",
        "spaces": ("cams-space-1",),
        "units": 4,
        "units_done": 4 if ready else 1,
        "first_cycle_complete": ready,
        "up": ready,
        "last_poll_success": 1_767_225_600.0 if ready else None,  # 2026-01-01T00:00:00Z
        "last_poll_duration": 2.5 if ready else None,
        "templates_discovered": (("cams-space-1", 2),),
    }
    fields.update(overrides)
    return AccountStatus(**fields)


def series(name: str = "Welcome", code: str = "744c4b5c", language: str = "en") -> TemplateSeries:
    return TemplateSeries(
        key=UnitKey("main", "cams-space-1", code, language, "WHATSAPP"),
        name=name,
        category="MARKETING",
        audit_status="pass",
        counts=Counts(sent=10, delivered=9, read=7),
        last_success=1_767_225_600.0,
        last_error=None,
    )


def snapshot(ready: bool = True, *templates: TemplateSeries, **overrides: Any) -> Snapshot:
    return Snapshot(
        generation=3,
        created=1_767_225_660.0,
        accounts=(account(ready, **overrides),),
        series=templates or (series(),),
    )


@dataclass
class SnapshotBox:
    """A swappable snapshot, as the poller swaps them in."""

    current: Snapshot

    def get(self) -> Snapshot:
        return self.current


def handlers(
    snap: Snapshot | None = None,
    metrics: Callable[[bool], Payload] = render_metrics,
    reload: Callable[[], tuple[bool, str]] | None = None,
) -> Handlers:
    box = SnapshotBox(snap if snap is not None else snapshot())
    return Handlers(metrics=metrics, snapshot=box.get, reload=reload, version="1.2.3-test")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Reply:
    """One request over http.client, with the body exactly as sent (no decompression)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def serve() -> Iterator[Callable[..., WebServer]]:
    servers: list[WebServer] = []

    def make(h: Handlers | None = None, address: str = "127.0.0.1:0", **kw: Any) -> WebServer:
        server = WebServer(address, h if h is not None else handlers(), **kw)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.shutdown()


def _openssl_cert(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    command += " -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("certs")
    server_cert, server_key = _openssl_cert(directory, "server")
    client_cert, client_key = _openssl_cert(directory, "client")
    return {
        "cert": server_cert,
        "key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


# ------------------------------------------------------------------------------------------
# /metrics


def test_metrics_default_is_prometheus_text(serve: Callable[..., WebServer]) -> None:
    server = serve()
    reply = raw_request(server.port, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == text_exposition.CONTENT_TYPE_LATEST
    assert b'cams_template_messages_sent_total{account="main"} 42.0' in reply.body
    assert b"# EOF" not in reply.body
    assert "content-encoding" not in reply.headers
    assert int(reply.headers["content-length"]) == len(reply.body)


def test_metrics_openmetrics_by_negotiation(serve: Callable[..., WebServer]) -> None:
    server = serve()
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    reply = raw_request(server.port, "/metrics", headers={"Accept": accept})
    assert reply.status == 200
    assert reply.headers["content-type"] == om_exposition.CONTENT_TYPE_LATEST
    assert reply.body.endswith(b"# EOF\n")
    # q=0 means "not acceptable": the text format is served.
    refused = raw_request(
        server.port, "/metrics", headers={"Accept": "application/openmetrics-text;q=0"}
    )
    assert refused.headers["content-type"] == text_exposition.CONTENT_TYPE_LATEST


def test_metrics_gzip_when_asked(serve: Callable[..., WebServer]) -> None:
    server = serve()
    plain = raw_request(server.port, "/metrics")
    zipped = raw_request(server.port, "/metrics", headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.status == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert int(zipped.headers["content-length"]) == len(zipped.body)
    assert gzip.decompress(zipped.body) == plain.body
    # gzip;q=0 is a refusal.
    refused = raw_request(server.port, "/metrics", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers
    assert refused.body == plain.body


def test_metrics_precompressed_body_sent_as_is(serve: Callable[..., WebServer]) -> None:
    precompressed = gzip.compress(b"precompressed 1\n")

    def metrics(openmetrics: bool) -> Payload:
        return Payload("text/plain; version=0.0.4", b"plain 1\n", gzipped=precompressed)

    server = serve(handlers(metrics=metrics))
    zipped = raw_request(server.port, "/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.body == precompressed
    assert zipped.headers["content-encoding"] == "gzip"
    assert raw_request(server.port, "/metrics").body == b"plain 1\n"


def test_head_has_headers_and_no_body_and_keeps_connection(
    serve: Callable[..., WebServer],
) -> None:
    server = serve()
    get = raw_request(server.port, "/metrics")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("HEAD", "/metrics")
        head = conn.getresponse()
        assert head.status == 200
        assert head.read() == b""
        assert int(head.getheader("Content-Length", "0")) == len(get.body)
        assert head.getheader("Content-Type") == text_exposition.CONTENT_TYPE_LATEST
        # The same (kept-alive) connection serves the next request.
        conn.request("GET", "/-/healthy")
        follow = conn.getresponse()
        assert (follow.status, follow.read()) == (200, b"Healthy")
    finally:
        conn.close()


def test_keep_alive_serves_many_requests_on_one_connection(
    serve: Callable[..., WebServer],
) -> None:
    server = serve(handlers(reload=lambda: (True, "")))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        # A request body (even on a refused method) is drained so the connection stays usable.
        conn.request("POST", "/-/reload", body=b'{"ignored": true}')
        assert conn.getresponse().read() == b"ok"
        conn.request("GET", "/-/healthy")
        assert conn.getresponse().read() == b"Healthy"
        assert conn.sock is sock
    finally:
        conn.close()


def test_custom_telemetry_path(serve: Callable[..., WebServer]) -> None:
    server = serve(telemetry_path="/custom/metrics")
    assert raw_request(server.port, "/custom/metrics").status == 200
    assert raw_request(server.port, "/custom/metrics?x=1").status == 200
    assert raw_request(server.port, "/metrics").status == 404
    page = raw_request(server.port, "/").body.decode()
    assert 'href="/custom/metrics"' in page


def test_handler_exception_gives_500_and_server_keeps_running(
    serve: Callable[..., WebServer], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[bool] = []

    def flaky(openmetrics: bool) -> Payload:
        calls.append(openmetrics)
        if len(calls) == 1:
            raise RuntimeError("collector exploded\nwith a second line")
        return render_metrics(openmetrics)

    server = serve(handlers(metrics=flaky))
    with caplog.at_level(logging.ERROR, logger="cams_exporter.web"):
        failed = raw_request(server.port, "/metrics")
    assert failed.status == 500
    text = failed.body.decode()
    assert "\n" not in text.strip()
    assert "RuntimeError" in text
    assert any("collector exploded" in r.getMessage() for r in caplog.records)
    after = raw_request(server.port, "/metrics")
    assert after.status == 200
    assert b"cams_template_messages_sent_total" in after.body


# ------------------------------------------------------------------------------------------
# Health, readiness, landing page, routing


def test_healthy(serve: Callable[..., WebServer]) -> None:
    server = serve()
    reply = raw_request(server.port, "/-/healthy")
    assert (reply.status, reply.body) == (200, b"Healthy")
    assert reply.headers["content-type"].startswith("text/plain")


def test_ready_503_with_progress_then_200_after_swap(serve: Callable[..., WebServer]) -> None:
    box = SnapshotBox(snapshot(ready=False))
    server = serve(Handlers(metrics=render_metrics, snapshot=box.get))
    reply = raw_request(server.port, "/-/ready")
    assert reply.status == 503
    assert reply.body == b"Not ready: 1/4 units polled (25%)"
    box.current = snapshot(ready=True)
    reply = raw_request(server.port, "/-/ready")
    assert (reply.status, reply.body) == (200, b"Ready")


def test_ready_without_accounts_is_not_ready(serve: Callable[..., WebServer]) -> None:
    server = serve(Handlers(metrics=render_metrics, snapshot=Snapshot))
    reply = raw_request(server.port, "/-/ready")
    assert (reply.status, reply.body) == (503, b"Not ready: 0/0 units polled (0%)")


def test_landing_page_content_and_escaping(serve: Callable[..., WebServer]) -> None:
    snap = snapshot(
        True,
        series(name="<script>alert(1)</script>", code="c0de"),
        series(name="Plain & simple", code="c0de2", language="es"),
        endpoint="https://user:hunter2@cams.example.com:8443/path?token=abc",
        last_error_code="Throttling<b>",
    )
    server = serve(handlers(snap))
    reply = raw_request(server.port, "/")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    page = reply.body.decode()
    assert "<title>CAMS Exporter</title>" in page
    assert "1.2.3-test" in page
    assert 'href="/metrics"' in page and 'href="/-/healthy"' in page and 'href="/-/ready"' in page
    assert "Ready" in page
    # Account table: host only, never user info, path or query.
    assert "cams.example.com:8443" in page
    assert "hunter2" not in page and "token=abc" not in page
    assert "2026-01-01T00:00:00Z" in page
    assert "2.5s" in page
    assert "Throttling&lt;b&gt;" in page
    assert "cams-space-1: 2" in page
    # Template table, with every dynamic value escaped.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert "Plain &amp; simple" in page
    assert "<td>c0de2</td><td>es</td><td>WHATSAPP</td>" in page
    assert "<td>10</td><td>9</td><td>7</td>" in page


def test_landing_page_caps_template_rows(serve: Callable[..., WebServer]) -> None:
    many = tuple(series(code=f"code{i:04d}") for i in range(520))
    server = serve(handlers(snapshot(True, *many)))
    page = raw_request(server.port, "/").body.decode()
    assert page.count("<td>WHATSAPP</td>") == 500
    assert "and 20 more" in page
    assert "code0499" in page and "code0500" not in page


def test_landing_page_while_not_ready(serve: Callable[..., WebServer]) -> None:
    server = serve(handlers(snapshot(ready=False)))
    page = raw_request(server.port, "/").body.decode()
    assert "Not ready: 1/4 units polled (25%)" in page
    assert "<td>1/4</td>" in page


def test_unknown_path_404_and_wrong_method_405(serve: Callable[..., WebServer]) -> None:
    server = serve()
    assert raw_request(server.port, "/nope").status == 404
    assert raw_request(server.port, "/metrics/extra").status == 404
    post = raw_request(server.port, "/metrics", method="POST", body=b"x")
    assert post.status == 405
    assert post.headers["allow"] == "GET, HEAD"
    assert raw_request(server.port, "/-/healthy", method="DELETE").status == 405
    assert raw_request(server.port, "/", method="PUT", body=b"").status == 405
    # /-/reload does not exist without a reload handler.
    assert raw_request(server.port, "/-/reload", method="POST").status == 404


def test_unparsable_request_target_is_400(serve: Callable[..., WebServer]) -> None:
    server = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET http://[oops/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert raw_request(server.port, "/-/healthy").status == 200


def test_reload_endpoint(serve: Callable[..., WebServer]) -> None:
    results = [(True, "reloaded"), (False, "config.yaml: accounts[0].qps: bad\nsecond line")]
    calls: list[int] = []

    def reload() -> tuple[bool, str]:
        calls.append(1)
        return results[len(calls) - 1]

    server = serve(handlers(reload=reload))
    ok = raw_request(server.port, "/-/reload", method="POST")
    assert (ok.status, ok.body) == (200, b"ok")
    bad = raw_request(server.port, "/-/reload", method="POST")
    assert bad.status == 400
    assert bad.body == b"config.yaml: accounts[0].qps: bad second line"
    get = raw_request(server.port, "/-/reload")
    assert get.status == 405
    assert get.headers["allow"] == "POST"
    assert len(calls) == 2


def test_extra_headers_from_web_config(serve: Callable[..., WebServer]) -> None:
    config = WebConfig(headers={"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"})
    server = serve(web_config=config)
    for path in ("/metrics", "/", "/nope"):
        reply = raw_request(server.port, path)
        assert reply.headers["x-frame-options"] == "deny"
        assert reply.headers["x-content-type-options"] == "nosniff"


# ------------------------------------------------------------------------------------------
# Basic auth


def test_basic_auth(serve: Callable[..., WebServer]) -> None:
    server = serve(web_config=WebConfig(basic_auth_users={"admin": HASH}))
    url = f"http://127.0.0.1:{server.port}"
    assert requests.get(f"{url}/metrics", auth=("admin", PASSWORD), timeout=10).status_code == 200
    for auth in (("admin", "wrong"), ("nobody", PASSWORD), None):
        reply = requests.get(f"{url}/metrics", auth=auth, timeout=10)
        assert reply.status_code == 401
        assert reply.headers["WWW-Authenticate"] == 'Basic realm="cams-exporter"'
    # Every path is protected, health included.
    assert requests.get(f"{url}/-/healthy", timeout=10).status_code == 401
    assert requests.get(f"{url}/", timeout=10).status_code == 401
    healthy = requests.get(f"{url}/-/healthy", auth=("admin", PASSWORD), timeout=10)
    assert (healthy.status_code, healthy.text) == (200, "Healthy")
    # Malformed headers are refused, not crashed on.
    for header in ("Basic !!!notbase64", "Bearer abc", "Basic " + base64.b64encode(b"x").decode()):
        refused = raw_request(server.port, "/metrics", headers={"Authorization": header})
        assert refused.status == 401


def test_basic_auth_caches_successful_checks(
    serve: Callable[..., WebServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(web_config=WebConfig(basic_auth_users={"admin": HASH}))
    real = bcrypt.checkpw
    checks: list[bytes] = []

    def counting(password: bytes, hashed: bytes) -> bool:
        checks.append(password)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    for _ in range(3):
        reply = raw_request(server.port, "/metrics", headers=basic("admin", PASSWORD))
        assert reply.status == 200
    assert len(checks) == 1
    # Failures are not cached: each one pays bcrypt again.
    for _ in range(2):
        assert raw_request(server.port, "/", headers=basic("admin", "nope")).status == 401
    assert len(checks) == 3


def test_authorization_never_logged(
    serve: Callable[..., WebServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(web_config=WebConfig(basic_auth_users={"admin": HASH}))
    headers = basic("admin", PASSWORD)
    with caplog.at_level(logging.DEBUG, logger="cams_exporter.web"):
        assert raw_request(server.port, "/metrics", headers=headers).status == 200
        assert raw_request(server.port, "/metrics", headers=basic("admin", "bad")).status == 401
    assert any("/metrics" in r.getMessage() for r in caplog.records)
    assert PASSWORD not in caplog.text
    assert headers["Authorization"].split()[1] not in caplog.text


# ------------------------------------------------------------------------------------------
# TLS


def test_tls(serve: Callable[..., WebServer], certs: dict[str, Path]) -> None:
    server = serve(web_config=WebConfig(cert_file=str(certs["cert"]), key_file=str(certs["key"])))
    assert server.tls
    url = f"https://127.0.0.1:{server.port}"
    reply = requests.get(f"{url}/metrics", verify=str(certs["cert"]), timeout=10)
    assert reply.status_code == 200
    assert "cams_template_messages_sent_total" in reply.text
    # Plain HTTP and garbage on the TLS port fail per connection; the server keeps serving.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05garbage")
        answer = raw.recv(1024)
        assert answer == b"" or answer[0] == 0x15  # closed, or a TLS alert record
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/metrics", timeout=10)  # untrusted self-signed certificate
    again = requests.get(f"{url}/-/healthy", verify=str(certs["cert"]), timeout=10)
    assert (again.status_code, again.text) == (200, "Healthy")


def test_tls_min_version(serve: Callable[..., WebServer], certs: dict[str, Path]) -> None:
    config = WebConfig(
        cert_file=str(certs["cert"]), key_file=str(certs["key"]), min_version="TLS13"
    )
    server = serve(web_config=config)
    old = ssl.create_default_context(cafile=str(certs["cert"]))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        old.wrap_socket(sock, server_hostname="127.0.0.1"),
    ):
        pass
    modern = ssl.create_default_context(cafile=str(certs["cert"]))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        modern.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() == "TLSv1.3"


def test_tls_client_certificates(serve: Callable[..., WebServer], certs: dict[str, Path]) -> None:
    config = WebConfig(
        cert_file=str(certs["cert"]),
        key_file=str(certs["key"]),
        client_ca_file=str(certs["client_cert"]),
        client_auth_type="RequireAndVerifyClientCert",
    )
    server = serve(web_config=config)
    url = f"https://127.0.0.1:{server.port}/-/healthy"
    client = (str(certs["client_cert"]), str(certs["client_key"]))
    reply = requests.get(url, verify=str(certs["cert"]), cert=client, timeout=10)
    assert reply.status_code == 200
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, verify=str(certs["cert"]), timeout=10)
    again = requests.get(url, verify=str(certs["cert"]), cert=client, timeout=10)
    assert again.text == "Healthy"


def test_tls_with_basic_auth_from_file(
    serve: Callable[..., WebServer], certs: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n"
        f"  cert_file: {certs['cert']}\n"
        f"  key_file: {certs['key']}\n"
        "basic_auth_users:\n"
        f"  admin: '{HASH}'\n"
    )
    server = serve(web_config=load_web_config(str(path)))
    url = f"https://127.0.0.1:{server.port}/metrics"
    verify = str(certs["cert"])
    assert requests.get(url, verify=verify, timeout=10).status_code == 401
    bad = requests.get(url, verify=verify, auth=("admin", "x"), timeout=10)
    assert bad.status_code == 401
    good = requests.get(url, verify=verify, auth=("admin", PASSWORD), timeout=10)
    assert good.status_code == 200
    assert "cams_template_messages_sent_total" in good.text


# ------------------------------------------------------------------------------------------
# Web config file


def test_load_web_config_full(tmp_path: Path, certs: dict[str, Path]) -> None:
    for name in ("cert", "key", "client_cert"):
        (tmp_path / f"{name}.pem").write_bytes(certs[name].read_bytes())
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n"
        "  cert_file: cert.pem\n"  # relative: resolved against the config's directory
        "  key_file: key.pem\n"
        "  client_ca_file: client_cert.pem\n"
        "  client_auth_type: VerifyClientCertIfGiven\n"
        "  min_version: TLS13\n"
        "  prefer_server_cipher_suites: true\n"
        "http_server_config:\n"
        "  http2: false\n"
        "  headers:\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "basic_auth_users:\n"
        f"  admin: '{HASH}'\n"
    )
    config = load_web_config(str(path))
    assert config.cert_file == str(tmp_path / "cert.pem")
    assert config.key_file == str(tmp_path / "key.pem")
    assert config.client_ca_file == str(tmp_path / "client_cert.pem")
    assert config.client_auth_type == "VerifyClientCertIfGiven"
    assert config.min_version == "TLS13"
    assert dict(config.basic_auth_users) == {"admin": HASH}
    assert dict(config.headers) == {"Strict-Transport-Security": "max-age=31536000"}
    assert config.tls_enabled
    with pytest.raises(TypeError):
        config.basic_auth_users["eve"] = HASH  # type: ignore[index]


def test_load_web_config_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("")
    assert load_web_config(str(path)) == WebConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tls_server_config:\n  cert_fil: x\n",
            "web config tls_server_config.cert_fil: unknown key",
        ),
        ("colour: blue\n", "web config colour: unknown key"),
        (
            "basic_auth_users:\n  admin: plaintext\n",
            "web config basic_auth_users.admin: not a bcrypt hash",
        ),
        (
            "basic_auth_users:\n  admin: 12\n",
            "web config basic_auth_users.admin: must be a string",
        ),
        (
            "http_server_config:\n  headers:\n    X-Powered-By: me\n",
            "web config http_server_config.headers.X-Powered-By: this header cannot be configured",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "web config http_server_config.headers.X-Frame-Options: must be one of deny",
        ),
        (
            "tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "web config tls_server_config.cipher_suites: not supported",
        ),
        (
            "tls_server_config:\n  cert_file: /nonexistent/cert.pem\n",
            "web config tls_server_config.key_file: required",
        ),
        (
            "tls_server_config:\n  cert_file: /nonexistent/c.pem\n  key_file: /nonexistent/k.pem\n",
            "web config tls_server_config.cert_file: cannot read /nonexistent/c.pem",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS14\n",
            "web config tls_server_config.min_version: unknown TLS version 'TLS14'",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Sometimes\n",
            "web config tls_server_config.client_auth_type: unknown value 'Sometimes'",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n"
            "  client_auth_type: RequireAnyClientCert\n",
            "web config tls_server_config.client_auth_type: RequireAnyClientCert is not supported",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "web config tls_server_config.client_ca_file: required",
        ),
        ("tls_server_config: [1, 2]\n", "web config tls_server_config: must be a mapping"),
        ("- 1\n- 2\n", "the top level must be a mapping"),
    ],
)
def test_load_web_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert expected in message


def test_load_web_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yml"
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "cannot read" in message


def test_load_web_config_yaml_error(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  admin: [unclosed\n  other: x\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"web config {path}: invalid YAML at line ")


def test_load_web_config_bad_certificate(tmp_path: Path, certs: dict[str, Path]) -> None:
    not_a_cert = tmp_path / "cert.pem"
    not_a_cert.write_text("hello\n")
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: cert.pem\n  key_file: {certs['key']}\n")
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file: no PEM certificate"):
        load_web_config(str(path))
    # A key that does not belong to the certificate.
    path.write_text(
        f"tls_server_config:\n  cert_file: {certs['cert']}\n  key_file: {certs['client_key']}\n"
    )
    with pytest.raises(WebConfigError, match=r"tls_server_config\.key_file: cannot load"):
        load_web_config(str(path))


def test_web_server_rejects_invalid_web_config() -> None:
    with pytest.raises(WebConfigError, match=r"basic_auth_users\.admin: not a bcrypt hash"):
        WebServer("127.0.0.1:0", handlers(), web_config=WebConfig(basic_auth_users={"admin": "x"}))


# ------------------------------------------------------------------------------------------
# Listen address


@given(host=st.ip_addresses(v=4), port=st.integers(min_value=0, max_value=65535))
def test_parse_listen_address_round_trips_ipv4(host: Any, port: int) -> None:
    assert parse_listen_address(f"{host}:{port}") == (str(host), port)


@given(host=st.ip_addresses(v=6), port=st.integers(min_value=0, max_value=65535))
def test_parse_listen_address_round_trips_ipv6(host: Any, port: int) -> None:
    assert parse_listen_address(f"[{host}]:{port}") == (str(host), port)


@given(text=st.text(max_size=30))
def test_parse_listen_address_only_raises_value_error(text: str) -> None:
    try:
        host, port = parse_listen_address(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 <= port <= 65535
        rebuilt = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        assert parse_listen_address(rebuilt) == (host, port)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":10731", ("", 10731)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9100", ("::1", 9100)),
        ("localhost:8080", ("localhost", 8080)),
    ],
)
def test_parse_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("127.0.0.1", "missing port"),
        ("", "missing port"),
        ("127.0.0.1:http", "is not a number"),
        ("127.0.0.1:", "is not a number"),
        ("127.0.0.1:70000", "out of range"),
        ("::1:9100", "must be in brackets"),
        ("[::1", "missing ']'"),
        ("[::1]", "missing port"),
        ("[::1]9100", "missing port"),
        ("[example.com]:80", "not an IPv6 address"),
    ],
)
def test_bad_listen_address(address: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        WebServer(address, handlers())
    message = str(info.value)
    assert "\n" not in message
    assert fragment in message
    assert message.startswith(f"invalid listen address {address!r}")


def test_listen_on_all_interfaces(serve: Callable[..., WebServer]) -> None:
    server = serve(address=":0")
    assert server.port > 0
    assert raw_request(server.port, "/-/healthy").body == b"Healthy"


def test_port_in_use_is_one_line_os_error(serve: Callable[..., WebServer]) -> None:
    server = serve()
    with pytest.raises(OSError) as info:
        WebServer(f"127.0.0.1:{server.port}", handlers())
    assert "\n" not in str(info.value)
    assert f"cannot listen on 127.0.0.1:{server.port}" in str(info.value)


def test_bad_telemetry_path() -> None:
    with pytest.raises(ValueError, match="invalid telemetry path"):
        WebServer("127.0.0.1:0", handlers(), telemetry_path="metrics")


def test_shutdown_releases_port_and_closes_idle_connections() -> None:
    server = WebServer("127.0.0.1:0", handlers())
    server.start()
    port = server.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/-/healthy")
    assert conn.getresponse().read() == b"Healthy"
    server.shutdown()
    server.shutdown()  # idempotent
    with pytest.raises(OSError):
        conn.request("GET", "/-/healthy")
        conn.getresponse()
    conn.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # The port can be bound again at once.
    again = WebServer(f"127.0.0.1:{port}", handlers())
    again.shutdown()
    with pytest.raises(RuntimeError):
        server.start()
