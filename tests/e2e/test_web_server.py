"""exporter.web.server, .connections and .listen over real sockets on 127.0.0.1: protocol
errors answered at once, keep-alive and pipelining, bursts of connects, the connection cap,
slow clients, accept errors at the open-files limit, listen addresses, shutdown. What the
server refuses before it binds (listen addresses, the cap, the path) is in
tests/unit/web/test_listen.py.

Big connection counts are measured in bench/web_connections.py; these are the same behaviours
at a small scale."""

from __future__ import annotations

import http.client
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.web.connection import Timeouts
from exporter.web.routes import Payload
from exporter.web.server import WebServer
from tests.kit.procs import cpu_seconds as kit_cpu_seconds
from tests.kit.waits import wait_until
from tests.kit.web import handlers, raw_request, render_metrics, serve

__all__ = ["serve"]  # the fixture, imported from tests.kit.web
ROOT = Path(__file__).resolve().parents[2]


def exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send raw bytes, read until the server closes; (everything read, seconds it took)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /\r\n\r\n", b"400"),  # HTTP/0.9
        (b"GET /metrics HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"505"),
        (b"\x16\x03\x01\x00\x05hello", b"400"),  # TLS on the plain port
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 70000, b"431"),
        (b"POST /-/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n", b"413"),
    ],
)
def test_bad_requests_are_answered_at_once_and_closed(
    serve: Callable[..., WebServer], request_bytes: bytes, status: bytes
) -> None:
    server = serve()
    answer, seconds = exchange(server.port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:80]
    assert b"Connection: close" in answer
    assert seconds < 2.0
    assert raw_request(server.port, "/-/healthy").status == 200


def test_a_body_shorter_than_its_content_length_gets_400_within_the_stall_time(
    serve: Callable[..., WebServer],
) -> None:
    server = serve()  # default timeouts: 2 s without a byte of the body
    answer, seconds = exchange(
        server.port, b"POST /-/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"shorter than its Content-Length" in answer
    assert 1.5 <= seconds < 4.0


def test_keep_alive_pipelining_and_bodies(serve: Callable[..., WebServer]) -> None:
    server = serve(handlers(reload=lambda: (True, "")), enable_lifecycle=True)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        conn.getresponse().read()
        sock = conn.sock
        conn.request("POST", "/-/reload", body=b'{"ignored": true}')  # the body is drained
        assert conn.getresponse().read() == b"ok"
        for _ in range(20):
            conn.request("GET", "/-/healthy")
            assert conn.getresponse().read() == b"Healthy"
        assert conn.sock is sock
    finally:
        conn.close()
    pipelined = b"GET /-/healthy HTTP/1.1\r\nHost: a\r\n\r\n" * 3
    answer, _ = exchange(
        server.port, pipelined + b"GET /-/ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert answer.count(b"HTTP/1.1 200 OK") == 4
    assert answer.endswith(b"Ready")


def test_http_1_0_closes_unless_asked_and_100_continue(serve: Callable[..., WebServer]) -> None:
    server = serve()
    answer, _ = exchange(server.port, b"GET /-/healthy HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /-/healthy HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert b"Connection: keep-alive" in sock.recv(4096)
        sock.sendall(
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        assert sock.recv(4096).startswith(b"HTTP/1.1 404 ")


def test_300_simultaneous_connects_are_all_answered(serve: Callable[..., WebServer]) -> None:
    server = serve()
    selector = selectors.DefaultSelector()
    request = b"GET /-/healthy HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    answers: dict[socket.socket, bytes] = {}
    for _ in range(300):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", server.port))
        selector.register(sock, selectors.EVENT_WRITE)
        answers[sock] = b""
    deadline = time.monotonic() + 30
    done = 0
    while done < 300 and time.monotonic() < deadline:
        for key, events in selector.select(1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if events & selectors.EVENT_WRITE:
                sock.sendall(request)
                selector.modify(sock, selectors.EVENT_READ)
                continue
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                chunk = b"RESET"
            answers[sock] += chunk
            if not chunk or chunk == b"RESET":
                selector.unregister(sock)
                done += 1
    for sock in answers:
        sock.close()
    selector.close()
    answered = sum(1 for a in answers.values() if a.startswith(b"HTTP/1.1 200 "))
    assert answered == 300


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """`count` connections that connect and send nothing."""
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the server closes `sock` (after whatever it answers) within `timeout`."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_at_the_cap_a_new_connection_replaces_the_longest_idle(
    serve: Callable[..., WebServer],
) -> None:
    server = serve(max_connections=20)
    idle = idle_connections(server.port, 20)
    try:
        wait_until(lambda: server.open_connections >= 20, 10, "20 open connections", every=0.01)
        assert server.open_connections == 20
        started = time.monotonic()
        assert raw_request(server.port, "/-/healthy").status == 200  # a fresh scrape gets in
        assert time.monotonic() - started < 1.0
        assert closed_by_server(idle[0])  # the oldest made room
        assert server.open_connections <= 20
    finally:
        for sock in idle:
            sock.close()


def test_when_every_connection_is_busy_new_ones_wait(serve: Callable[..., WebServer]) -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def blocking(openmetrics: bool) -> Payload:
        entered.release()
        release.wait(20)
        return render_metrics(openmetrics)

    server = serve(handlers(metrics=blocking), max_connections=2)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda p=p: results.append(raw_request(server.port, p).status))
        for p in ("/metrics", "/metrics", "/-/healthy")
    ]
    try:
        for thread in threads[:2]:
            thread.start()
        # Both requests must be in their handlers, not merely accepted: a connection whose
        # request is not read yet is idle, and would rightly make room for the third.
        for _ in range(2):
            assert entered.acquire(timeout=10), "both requests should reach the handler"
        threads[2].start()
        threads[2].join(0.5)
        assert threads[2].is_alive(), "the third connection should wait for a free slot"
    finally:
        release.set()
        for thread in threads:
            thread.join(20)
    assert sorted(results) == [200, 200, 200]


def test_slow_clients_cost_no_thread_and_are_cut_at_the_deadline(
    serve: Callable[..., WebServer],
) -> None:
    timeouts = Timeouts(handshake=0.5, head=0.5, idle=0.5)
    server = serve(timeouts=timeouts, max_connections=400)
    assert raw_request(server.port, "/-/healthy").status == 200  # the request pool's one worker
    threads_before = threading.active_count()
    slow = idle_connections(server.port, 200)
    try:
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # and never the blank line
        assert threading.active_count() <= threads_before + 1
        started = time.monotonic()
        for _ in range(10):
            assert raw_request(server.port, "/-/healthy").status == 200
        assert time.monotonic() - started < 2.0
        # A request may find its worker not yet back in the pool (it goes back after the
        # answer is written) and start another: at most one per request, never per slow client.
        threads_serving = threading.active_count()
        assert threads_serving <= threads_before + 10
        for sock in slow[:20]:
            sock.sendall(b"X-Slow: 1\r\n")
        assert all(closed_by_server(sock) for sock in slow)
        assert threading.active_count() <= threads_serving  # cutting them starts none
    finally:
        for sock in slow:
            sock.close()


_FD_LIMITED_SERVER = """
import logging, resource, sys, time
from exporter.web.connections import ConnectionLoop, Timeouts
from exporter.web.listen import bind
from exporter.web.live import FixedWebConfig
from exporter.web.routes import App, Handlers, Payload

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
handlers = Handlers(
    metrics=lambda om: Payload("text/plain", b"up 1\\n"),
    ready=lambda: (True, "Ready"),
    landing=lambda path, reload: "",
)
settings = FixedWebConfig()
listener = bind("127.0.0.1:0")
app = App(handlers, "/metrics", settings)
# No cap below what the fd limit allows: accept itself must hit EMFILE.
loop = ConnectionLoop(listener, app, settings, False, 10_000, Timeouts())
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
print(listener.getsockname()[1], flush=True)
loop.run()
"""


def cpu_seconds(pid: int) -> float:
    seconds = kit_cpu_seconds(pid)
    assert seconds is not None, "the server exited"
    return seconds


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
def test_at_the_open_files_limit_fresh_scrapes_get_in_and_nothing_spins(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    with open(log, "wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", _FD_LIMITED_SERVER],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    idle: list[socket.socket] = []
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        idle = idle_connections(port, 120)  # about twice what 64 descriptors can hold
        for _ in range(5):
            started = time.monotonic()
            assert raw_request(port, "/metrics").body == b"up 1\n"
            assert time.monotonic() - started < 2.0
        before = cpu_seconds(child.pid)
        time.sleep(1.0)
        assert cpu_seconds(child.pid) - before < 0.3, "the server is spinning"
    finally:
        for sock in idle:
            sock.close()
        child.kill()
        child.wait(10)
    text = log.read_text()
    assert text.count("cannot accept connections") == 1, text[-2000:]
    assert "Traceback" not in text


# ------------------------------------------------------------------------------------------
# Listen address


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


def test_shutdown_releases_port_and_closes_idle_connections() -> None:
    server = WebServer("127.0.0.1:0", handlers())
    server.start()
    port = server.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/-/healthy")
    assert conn.getresponse().read() == b"Healthy"
    server.shutdown()
    server.shutdown()  # idempotent
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/-/healthy")
        conn.getresponse()
    conn.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    again = WebServer(f"127.0.0.1:{port}", handlers())  # the port can be bound again at once
    again.shutdown()
    with pytest.raises(RuntimeError):
        server.start()


def test_a_server_never_started_releases_its_port() -> None:
    server = WebServer("127.0.0.1:0", handlers())
    port = server.port
    server.shutdown()
    WebServer(f"127.0.0.1:{port}", handlers()).shutdown()
