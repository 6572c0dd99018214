"""exporter.web.protocol: request heads parsed strictly, response heads written."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.web.protocol import (
    MAX_HEAD_BYTES,
    ProtocolError,
    head_end,
    parse_head,
    response_head,
    skip_empty_lines,
)


def test_a_plain_get() -> None:
    request = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\n\r\n")
    assert (request.method, request.target, request.version) == ("GET", "/metrics?x=1", (1, 1))
    assert request.headers.get("accept") == "text/plain"
    assert request.headers.get("ACCEPT") == "text/plain"
    assert request.keep_alive and request.body_length == 0 and not request.unsized_body


def test_repeated_headers_and_keep_alive_rules() -> None:
    request = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\n\r\n")
    assert request.headers.get_all("accept") == ["a", "b"]
    assert request.headers.joined("accept") == "a, b"
    assert not parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive
    assert not parse_head(b"GET / HTTP/1.0\r\n\r\n").keep_alive
    assert parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive
    assert parse_head(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n").version == (1, 1)


def test_bodies() -> None:
    request = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n")
    assert request.body_length == 12 and not request.expect_continue
    expecting = parse_head(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    )
    assert expecting.expect_continue
    chunked = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert chunked.unsized_body and not chunked.keep_alive
    same = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n")
    assert same.body_length == 5


@pytest.mark.parametrize(
    ("head", "status", "reason"),
    [
        (b"GET /\r\n\r\n", 400, "HTTP/0.9"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "missing Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host"),
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host"),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line"),
        (b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400, "malformed request line"),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request method"),
        (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request target"),
        (b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
        (b"PRI * HTTP/2.0\r\n\r\n", 505, "HTTP/2.0 is not supported"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400, "folding"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\nHost\r\n\r\n", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400, "control character"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400, "invalid Content-Length"),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            400,
            "invalid Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            "conflicting Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
            "both Transfer-Encoding and Content-Length",
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "Transfer-Enc"),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417, "Expect"),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"Host: a\r\n\r\n", 431, "header fields"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", 431, "64 KiB"),
    ],
)
def test_refusals(head: bytes, status: int, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_head(head)
    assert info.value.status == status
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


def test_finding_the_end_of_a_head() -> None:
    assert head_end(b"GET / HTTP/1.1\r\nHost: a\r\n") == -1
    assert head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody") == len(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert head_end(b"GET / HTTP/1.0\n\nrest") == len(b"GET / HTTP/1.0\n\n")
    assert skip_empty_lines(b"\r\n\r\nGET") == 4


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused_cleanly(data: bytes) -> None:
    try:
        request = parse_head(data)
    except ProtocolError as exc:
        assert exc.status in (400, 417, 431, 505)
        assert "\n" not in exc.reason
    else:
        assert request.method and request.target


def test_response_head() -> None:
    head = response_head(200, [("Content-Length", "2")], date="Thu, 01 Jan 2026 00:00:00 GMT")
    assert head == (
        b"HTTP/1.1 200 OK\r\nServer: cams-exporter\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
        b"Content-Length: 2\r\n\r\n"
    )
