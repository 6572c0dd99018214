"""The rate guarantee holds behind an HTTPS proxy: calls tunnelled through a local CONNECT proxy
to a TLS simulator never put more than `qps` calls in any 1-second window (counted by the
simulator), and the limiter's count-from-the-write hook is in force (no fallback warning)."""

from __future__ import annotations

import logging
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exporter.client import LIST_ACTION, METRIC_ACTION, CamsClient
from exporter.config import StaticCredentials
from exporter.model import DAY_MS
from exporter.ratelimit import RateLimiter
from exporter.retry import RetryPolicy
from exporter.simulator import Simulator, SimulatorOptions
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


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    server = _Proxy()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


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
    client = CamsClient(
        endpoint=tls_simulator.url,
        credentials=StaticCredentials("demo", "demo-secret"),
        limiters={METRIC_ACTION: RateLimiter(QPS), LIST_ACTION: RateLimiter(5)},
        timeout_s=10,
        retry=RetryPolicy(max_retries=0),
        pool_size=16,
    )
    template = tls_simulator.templates()[0]

    def call(_: int) -> int:
        rows = client.metric_chunk(
            code=template.code, language=template.language, start_ms=0, end_ms=DAY_MS
        )
        return len(rows)

    try:
        with (
            caplog.at_level(logging.WARNING, logger="cams_exporter"),
            ThreadPoolExecutor(16) as pool,
        ):
            list(pool.map(call, range(4 * QPS)))
    finally:
        client.close()
    stats = tls_simulator.stats()["actions"][METRIC_ACTION]
    assert stats["calls"] == 4 * QPS and stats["throttled"] == 0
    assert stats["max_calls_in_1s"] <= QPS
    assert proxy.tunnels, "the calls did not go through the proxy"
    assert all(t.endswith(str(tls_simulator.endpoint.rsplit(":", 1)[1])) for t in proxy.tunnels)
    assert not [
        r for r in caplog.records if "did not report when a request was written" in r.getMessage()
    ]
