"""The rate guarantee holds behind an HTTPS proxy: calls tunnelled through a local CONNECT proxy
to a TLS simulator never put more than `qps` calls in any 1-second window (counted by the
simulator): the limiter counts each call from its grant until a window after its answer, which
holds whatever the proxy adds between the client and the server.

A TLS endpoint whose certificate the CA bundle does not vouch for, or a CA bundle that does
not exist, fails the call as a ConnectionError (SSLError where the handshake failed), never as
a crash; the simulator logs the handshake it saw fail in one line, without a traceback. A proxy
that cannot be reached is a ProxyError.

A plain-HTTP endpoint goes through an `HTTP_PROXY` as requests sends it (absolute-form
request lines, the proxy's credentials from its URL as `Proxy-Authorization`), and `NO_PROXY`
bypasses it.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import logging
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from cams_simulator import Simulator, SimulatorOptions
from exporter.cams.client import LIST_ACTION, METRIC_ACTION, CamsClient
from exporter.cams.errors import CONNECTION_ERROR, CamsError
from exporter.cams.model import DAY_MS
from exporter.cams.ratelimit import RateLimiter
from exporter.cams.retry import RetryPolicy
from exporter.config import StaticCredentials
from tests.kit.waits import wait_until
from tests.kit.web import certs

__all__ = ["certs"]  # the fixture, imported from tests.kit.web


class _Tunnel(socketserver.BaseRequestHandler):
    """One CONNECT: connect to the target, answer 200, then copy bytes both ways."""

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        assert isinstance(self.server, _Proxy)
        if method != "CONNECT":
            self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        with self.server.lock:
            self.server.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            sockets = [self.request, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 10)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.request else self.request).sendall(data)


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.lock = threading.Lock()
        self.tunnels: list[str] = []


_Server = TypeVar("_Server", bound=socketserver.BaseServer)


def _serving(server: _Server) -> Iterator[_Server]:
    """`server` served from a thread for the length of a test."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    yield from _serving(_Proxy())


@pytest.fixture
def tls_simulator(certs: dict[str, Path]) -> Iterator[Simulator]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs["server_cert"], certs["server_key"])
    sim = Simulator(SimulatorOptions(templates=2, static=True), tls=context)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


class _Forwarder(http.server.BaseHTTPRequestHandler):
    """A forwarding proxy for absolute-form POSTs: records each request line's target and
    Proxy-Authorization, then relays the request to the origin and its answer back."""

    protocol_version = "HTTP/1.1"
    server: _ForwardingProxy

    def do_POST(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.path, self.headers.get("Proxy-Authorization", "")))
        origin, _, rest = self.path.partition("://")[2].partition("/")
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {k: v for k, v in self.headers.items() if not k.lower().startswith("proxy-")}
        upstream = http.client.HTTPConnection(origin, timeout=10)
        try:
            upstream.request("POST", "/" + rest, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ForwardingProxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Forwarder)
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []  # (request target, Proxy-Authorization)


@pytest.fixture
def forwarding_proxy() -> Iterator[_ForwardingProxy]:
    yield from _serving(_ForwardingProxy())


@pytest.fixture
def http_simulator() -> Iterator[Simulator]:
    sim = Simulator(SimulatorOptions(templates=2, static=True))
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


QPS = 8


def test_no_second_over_qps_through_a_connect_proxy(
    proxy: _Proxy,
    tls_simulator: Simulator,
    certs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs["ca_cert"]))
    assert tls_simulator.url.startswith("https://")
    _calls(tls_simulator, 4 * QPS, 16, caplog)
    stats = tls_simulator.stats()["actions"][METRIC_ACTION]
    assert stats["calls"] == 4 * QPS and stats["throttled"] == 0
    assert stats["max_calls_in_1s"] <= QPS
    assert proxy.tunnels, "the calls did not go through the proxy"
    assert all(t.endswith(str(tls_simulator.endpoint.rsplit(":", 1)[1])) for t in proxy.tunnels)


def _client(sim: Simulator, workers: int) -> CamsClient:
    """A client of `sim` with a metric limiter of QPS, no retries, `workers` connections."""
    return CamsClient(
        endpoint=sim.url,
        credentials=StaticCredentials("demo", "demo-secret"),
        limiters={METRIC_ACTION: RateLimiter(QPS), LIST_ACTION: RateLimiter(5)},
        timeout_s=10,
        retry=RetryPolicy(max_retries=0),
        pool_size=workers,
    )


def _metric_call(client: CamsClient, sim: Simulator) -> int:
    """One metric call for the simulator's first template: how many rows it gave."""
    template = sim.templates()[0]
    rows = client.metric_chunk(
        code=template.code, language=template.language, start_ms=0, end_ms=DAY_MS
    )
    return len(rows)


def _failed_call(sim: Simulator) -> CamsError:
    """The CamsError that one metric call (not retried) fails with."""
    client = _client(sim, 1)
    try:
        with pytest.raises(CamsError) as caught:
            _metric_call(client, sim)
    finally:
        client.close()
    return caught.value


def _calls(sim: Simulator, count: int, workers: int, caplog: pytest.LogCaptureFixture) -> None:
    """`count` metric calls, `workers` at a time, each answered with rows, without a warning."""
    client = _client(sim, workers)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="cams_exporter"),
            ThreadPoolExecutor(workers) as pool,
        ):
            assert all(pool.map(lambda _: _metric_call(client, sim) > 0, range(count)))
    finally:
        client.close()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_plain_http_goes_through_http_proxy_with_its_credentials(
    forwarding_proxy: _ForwardingProxy,
    http_simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = forwarding_proxy.server_address[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://proxyuser:proxy-pass@127.0.0.1:{port}")
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert http_simulator.url.startswith("http://")
    _calls(http_simulator, 2 * QPS, 8, caplog)
    stats = http_simulator.stats()["actions"][METRIC_ACTION]
    assert stats["calls"] == 2 * QPS and stats["max_calls_in_1s"] <= QPS
    expected_auth = "Basic " + base64.b64encode(b"proxyuser:proxy-pass").decode()
    assert len(forwarding_proxy.seen) == 2 * QPS
    origin = http_simulator.url.rstrip("/")
    assert all(target.startswith(origin + "/?") for target, _ in forwarding_proxy.seen)
    assert {auth for _, auth in forwarding_proxy.seen} == {expected_auth}


def test_no_proxy_bypasses_the_proxy(
    forwarding_proxy: _ForwardingProxy,
    http_simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{forwarding_proxy.server_address[1]}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    _calls(http_simulator, 4, 2, caplog)
    assert http_simulator.stats()["actions"][METRIC_ACTION]["calls"] == 4
    assert forwarding_proxy.seen == []


@pytest.mark.parametrize(
    ("bundle", "kind"), [("default", "SSLError"), ("missing", "ConnectionError")]
)
def test_unverifiable_tls_is_a_connection_error(
    tls_simulator: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bundle: str,
    kind: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="cams_simulator")
    for name in ("HTTPS_PROXY", "https_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    if bundle == "missing":
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "no-such-bundle.pem"))
    failure = _failed_call(tls_simulator)
    assert (failure.code, failure.message) == (CONNECTION_ERROR, kind)
    assert tls_simulator.stats()["actions"].get(METRIC_ACTION, {}).get("calls", 0) == 0
    if bundle == "default":  # the simulator saw the handshake fail: one line, no traceback
        line = "connection from 127.0.0.1 failed:"  # SSLError, or a reset if the client hung up
        wait_until(
            lambda: any(line in r.getMessage() for r in caplog.records) or None,
            5,
            "the simulator's log line for the failed handshake",
        )
        assert "Traceback" not in capfd.readouterr().err


def test_unreachable_proxy_is_a_proxy_error(
    http_simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    failure = _failed_call(http_simulator)
    assert (failure.code, failure.message) == (CONNECTION_ERROR, "ProxyError")
    assert http_simulator.stats()["actions"].get(METRIC_ACTION, {}).get("calls", 0) == 0
