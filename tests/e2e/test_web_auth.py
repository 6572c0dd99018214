"""exporter.web.auth behind a real server: basic auth against bcrypt hashes on every route,
both verdicts cached, a bounded queue for password checks, refusals that hold no thread.

The checks themselves, without a socket, are in tests/unit/web/test_auth.py."""

from __future__ import annotations

import base64
import logging
import re
import select
import threading
import time
from collections.abc import Callable

import bcrypt
import pytest
import requests

from exporter.web.auth import MAX_WAITING
from exporter.web.config import WebConfig
from exporter.web.connection import Timeouts
from exporter.web.live import FixedWebConfig
from exporter.web.server import WebServer
from tests.kit.waits import wait_until
from tests.kit.web import HASH, PASSWORD, basic, bcrypt_calls, raw_request, serve
from tests.kit.web import basic_header as header

__all__ = ["bcrypt_calls", "serve"]  # fixtures, imported from tests.kit.web

FAST = Timeouts(refusal=0.01)  # where the refusal delay is not what is tested


def test_basic_auth(serve: Callable[..., WebServer]) -> None:
    server = serve(web_config=WebConfig(basic_auth_users={"admin": HASH}), timeouts=FAST)
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
    for bad in ("Basic !!!notbase64", "Bearer abc", "Basic " + base64.b64encode(b"x").decode()):
        refused = raw_request(server.port, "/metrics", headers={"Authorization": bad})
        assert refused.status == 401


def test_successes_and_failures_are_both_cached(
    serve: Callable[..., WebServer], bcrypt_calls: list[tuple[bytes, bytes]]
) -> None:
    server = serve(web_config=WebConfig(basic_auth_users={"admin": HASH}), timeouts=FAST)
    for _ in range(3):
        assert raw_request(server.port, "/metrics", headers=basic("admin", PASSWORD)).status == 200
    assert len(bcrypt_calls) == 1
    for _ in range(3):
        assert raw_request(server.port, "/", headers=basic("admin", "nope")).status == 401
    assert len(bcrypt_calls) == 2  # one check for the wrong password, then its cached verdict
    assert raw_request(server.port, "/", headers=basic("admin", "nope2")).status == 401
    assert len(bcrypt_calls) == 3


def test_checks_beyond_the_queue_are_refused_and_cached_scrapes_go_through(
    serve: Callable[..., WebServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = FixedWebConfig(WebConfig(basic_auth_users={"admin": HASH}))
    auth = source.current().auth
    assert auth is not None
    server = serve(web_config=source)
    assert raw_request(server.port, "/metrics", headers=basic("admin", PASSWORD)).status == 200
    real = bcrypt.checkpw
    entered = threading.Semaphore(0)
    release = threading.Event()

    def stalled(password: bytes, hashed: bytes) -> bool:
        entered.release()
        release.wait(30)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", stalled)
    slow: list[int] = []
    threads = [
        threading.Thread(
            target=lambda i=i: slow.append(
                raw_request(server.port, "/", headers=basic("admin", f"bad-{i}")).status
            )
        )
        for i in range(MAX_WAITING)  # one checking, the others queued: the queue is full
    ]
    try:
        for thread in threads:
            thread.start()
        assert entered.acquire(timeout=10)  # the first check is running (and stuck)
        wait_until(lambda: auth.checks_in_progress >= MAX_WAITING, 10, "checks waiting", every=0.01)
        assert auth.checks_in_progress == MAX_WAITING
        busy = raw_request(server.port, "/", headers=basic("admin", "one-more"))
        assert busy.status == 429
        assert busy.headers["retry-after"] == "1"
        # The cached legitimate scrape is not held up by the queued checks.
        cached = raw_request(server.port, "/metrics", headers=basic("admin", PASSWORD))
        assert cached.status == 200
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
    assert sorted(set(slow)) == [401]


def test_authorization_never_logged(
    serve: Callable[..., WebServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(web_config=WebConfig(basic_auth_users={"admin": HASH}))
    headers = basic("admin", PASSWORD)
    with caplog.at_level(logging.DEBUG, logger="cams_exporter.web"):
        assert raw_request(server.port, "/metrics", headers=headers).status == 200
        assert raw_request(server.port, "/metrics", headers=basic("admin", "bad")).status == 401
        # a request's log line is written after its answer: wait for both, at DEBUG still
        wait_until(
            lambda: sum("/metrics" in r.getMessage() for r in caplog.records) >= 2,
            10,
            "both requests logged",
        )
    assert PASSWORD not in caplog.text
    assert headers["Authorization"].split()[1] not in caplog.text


def test_pipelined_requests_are_answered_in_order_whoever_answers_them(
    serve: Callable[..., WebServer],
) -> None:
    """401s from the cache are answered by the connection loop, the others by a request
    thread: on one connection, the answers still come in the order asked."""
    import socket

    server = serve(web_config=WebConfig(basic_auth_users={"admin": HASH}), timeouts=FAST)
    assert raw_request(server.port, "/", headers=basic("admin", "wrong")).status == 401
    good = header("admin", PASSWORD)
    bad = header("admin", "wrong")
    pipelined = b"".join(
        f"GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: {auth}\r\n\r\n".encode()
        for path, auth in (
            ("/-/healthy", bad),
            ("/-/healthy", good),
            ("/nope", bad),
            ("/-/ready", good),
        )
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(pipelined + b"GET /-/healthy HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert statuses == [b"401", b"200", b"401", b"200", b"401"]


def test_refusals_without_a_check_come_late_and_hold_no_thread(
    serve: Callable[..., WebServer],
) -> None:
    import socket

    server = serve(web_config=WebConfig(basic_auth_users={"admin": HASH}))
    assert raw_request(server.port, "/", headers=basic("admin", "wrong")).status == 401  # cached
    assert raw_request(server.port, "/", headers=basic("admin", PASSWORD)).status == 200
    request = f"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: {header('admin', 'wrong')}\r\n\r\n"
    threads_before = threading.active_count()
    started = time.monotonic()
    guesses = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(50)]
    try:
        for sock in guesses:
            sock.sendall(request.encode())
        assert raw_request(server.port, "/", headers=basic("admin", PASSWORD)).status == 200
        # Not behind the refusals: answered while every one of them still waits for its 401
        # (due 0.5 s after it came), which an elapsed-time bound says less surely under load.
        answered = select.select(guesses, [], [], 0)[0]
        assert answered == [], f"{len(answered)} refusals were answered before the scrape"
        assert threading.active_count() <= threads_before + 1
        for sock in guesses:
            assert sock.recv(4096).startswith(b"HTTP/1.1 401 ")
        assert time.monotonic() - started >= 0.45
    finally:
        for sock in guesses:
            sock.close()
