"""exporter.web.listen and WebServer's arguments, refused before anything binds: listen
addresses parsed (and each refusal one line), the connection cap lowered to what the open-files
limit allows, the telemetry path checked."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.web.listen import parse_listen_address
from exporter.web.server import WebServer, connection_cap
from tests.kit.web import handlers


def test_the_cap_is_lowered_to_what_the_fd_limit_allows(caplog: pytest.LogCaptureFixture) -> None:
    assert connection_cap(512, 1024) == 512
    assert connection_cap(512, None) == 512
    assert connection_cap(2000, 1024) == 896
    assert "serving at most 896 connections" in caplog.text
    with pytest.raises(ValueError):
        connection_cap(0, 1024)


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


def test_bad_telemetry_path() -> None:
    with pytest.raises(ValueError, match="invalid telemetry path"):
        WebServer("127.0.0.1:0", handlers(), telemetry_path="metrics")
