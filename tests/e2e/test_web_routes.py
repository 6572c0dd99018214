"""exporter.web.routes and .negotiation over real HTTP on 127.0.0.1: /metrics (format and gzip
negotiation), health, readiness, the landing page, routing, the lifecycle endpoint.

The negotiation's verdict for each header, without a socket, is in
tests/unit/web/test_negotiation.py."""

from __future__ import annotations

import gzip
import http.client
import logging
import socket
from collections.abc import Callable

import pytest

from exporter.publish.snapshot import Snapshot
from exporter.web.config import WebConfig
from exporter.web.negotiation import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.web.routes import Payload
from exporter.web.server import WebServer
from tests.kit.web import (
    PROMETHEUS_2,
    PROMETHEUS_3,
    PROMETHEUS_3_TEXT_ONLY,
    Reply,
    SnapshotBox,
    handlers,
    handlers_over,
    raw_request,
    render_metrics,
    series,
    serve,
    snapshot,
)

__all__ = ["serve"]  # the fixture, imported from tests.kit.web


def test_metrics_default_is_prometheus_text(serve: Callable[..., WebServer]) -> None:
    server = serve()
    reply = raw_request(server.port, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == TEXT_CONTENT_TYPE
    assert b'cams_template_messages_sent_total{account="main"} 42.0' in reply.body
    assert b"# EOF" not in reply.body
    assert "content-encoding" not in reply.headers
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert reply.headers["vary"] == "Accept, Accept-Encoding"


@pytest.mark.parametrize("accept", [PROMETHEUS_2, PROMETHEUS_3, "application/openmetrics-text"])
def test_metrics_openmetrics_when_asked(serve: Callable[..., WebServer], accept: str) -> None:
    server = serve()
    reply = raw_request(server.port, "/metrics", headers={"Accept": accept})
    assert reply.status == 200
    assert reply.headers["content-type"] == OPENMETRICS_CONTENT_TYPE
    assert reply.body.endswith(b"# EOF\n")


def test_metrics_text_when_that_is_all_the_client_accepts(
    serve: Callable[..., WebServer],
) -> None:
    server = serve()
    for accept in (PROMETHEUS_3_TEXT_ONLY, "text/plain;version=0.0.4"):
        reply = raw_request(server.port, "/metrics", headers={"Accept": accept})
        assert reply.headers["content-type"] == TEXT_CONTENT_TYPE
        assert b"# EOF" not in reply.body


def test_metrics_gzip_when_asked(serve: Callable[..., WebServer]) -> None:
    server = serve()
    plain = raw_request(server.port, "/metrics")
    zipped = raw_request(server.port, "/metrics", headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.status == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) == len(zipped.body)
    assert gzip.decompress(zipped.body) == plain.body
    refused = raw_request(server.port, "/metrics", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers
    assert refused.body == plain.body


def test_metrics_precompressed_body_sent_as_is(serve: Callable[..., WebServer]) -> None:
    precompressed = gzip.compress(b"precompressed 1\n")

    def metrics(openmetrics: bool) -> Payload:
        return Payload(TEXT_CONTENT_TYPE, b"plain 1\n", gzipped=precompressed)

    server = serve(handlers(metrics=metrics))
    zipped = raw_request(server.port, "/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.body == precompressed
    assert zipped.headers["content-encoding"] == "gzip"
    assert raw_request(server.port, "/metrics").body == b"plain 1\n"


def test_chunked_payload_is_sent_whole(serve: Callable[..., WebServer]) -> None:
    big = b"a" * 300_000

    def metrics(openmetrics: bool) -> Payload:
        return Payload(TEXT_CONTENT_TYPE, (b"x 1\n", big, b"y 2\n"))

    server = serve(handlers(metrics=metrics))
    reply = raw_request(server.port, "/metrics")
    assert reply.body == b"x 1\n" + big + b"y 2\n"
    assert int(reply.headers["content-length"]) == len(reply.body)


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
        assert head.getheader("Content-Type") == TEXT_CONTENT_TYPE
        conn.request("GET", "/-/healthy")
        follow = conn.getresponse()
        assert (follow.status, follow.read()) == (200, b"Healthy")
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


def test_healthy(serve: Callable[..., WebServer]) -> None:
    server = serve()
    reply = raw_request(server.port, "/-/healthy")
    assert (reply.status, reply.body) == (200, b"Healthy")
    assert reply.headers["content-type"].startswith("text/plain")


def test_ready_503_with_progress_then_200_after_swap(serve: Callable[..., WebServer]) -> None:
    box = SnapshotBox(snapshot(ready=False))
    server = serve(handlers_over(box.get))
    reply = raw_request(server.port, "/-/ready")
    assert reply.status == 503
    assert reply.body == b"Not ready: 1/4 units polled (25%)"
    box.current = snapshot(ready=True)
    reply = raw_request(server.port, "/-/ready")
    assert (reply.status, reply.body) == (200, b"Ready")


def test_ready_without_accounts_is_not_ready(serve: Callable[..., WebServer]) -> None:
    server = serve(handlers_over(Snapshot))
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
    assert "cams.example.com:8443" in page
    assert "hunter2" not in page and "token=abc" not in page
    assert "2026-01-01T00:00:00Z" in page
    assert "2.5s" in page
    assert "Throttling&lt;b&gt;" in page
    assert "cams-space-1: 2" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert "Plain &amp; simple" in page
    assert "<td>c0de2</td><td>es</td><td>WHATSAPP</td>" in page
    assert "<td>10</td><td>9</td><td>7</td>" in page
    assert "/-/reload" not in page  # the lifecycle API is off


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


def test_unparsable_request_target_is_400(serve: Callable[..., WebServer]) -> None:
    server = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET http://[oops/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert raw_request(server.port, "/-/healthy").status == 200


def test_reload_is_403_unless_the_lifecycle_api_is_enabled(
    serve: Callable[..., WebServer],
) -> None:
    calls: list[int] = []

    def reload() -> tuple[bool, str]:
        calls.append(1)
        return True, "reloaded"

    server = serve(handlers(reload=reload))
    refused = raw_request(server.port, "/-/reload", method="POST")
    assert (refused.status, refused.body) == (403, b"Lifecycle API is not enabled.")
    assert raw_request(server.port, "/-/reload", method="PUT").status == 403
    assert raw_request(server.port, "/-/reload").status == 405
    assert not calls


def test_reload_endpoint_with_the_lifecycle_api(serve: Callable[..., WebServer]) -> None:
    results = [(True, "reloaded"), (False, "config.yaml: accounts[0].qps: bad\nsecond line")]
    calls: list[int] = []

    def reload() -> tuple[bool, str]:
        calls.append(1)
        return results[len(calls) - 1]

    server = serve(handlers(reload=reload), enable_lifecycle=True)
    ok = raw_request(server.port, "/-/reload", method="POST", body=b'{"ignored": true}')
    assert (ok.status, ok.body) == (200, b"ok")
    bad = raw_request(server.port, "/-/reload", method="PUT")
    assert bad.status == 400
    assert bad.body == b"config.yaml: accounts[0].qps: bad second line"
    get = raw_request(server.port, "/-/reload")
    assert get.status == 405
    assert get.headers["allow"] == "POST, PUT"
    assert len(calls) == 2
    assert "POST /-/reload" in raw_request(server.port, "/").body.decode()


def test_extra_headers_from_web_config_on_every_response(serve: Callable[..., WebServer]) -> None:
    config = WebConfig(headers={"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"})
    server = serve(web_config=config)
    replies: list[Reply] = [raw_request(server.port, p) for p in ("/metrics", "/", "/nope")]
    for reply in replies:
        assert reply.headers["x-frame-options"] == "deny"
        assert reply.headers["x-content-type-options"] == "nosniff"
