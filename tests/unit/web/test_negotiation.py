"""exporter.web.negotiation: the exposition format picked from Accept (what Prometheus 2 and 3
send included) and gzip from Accept-Encoding, with q-values, wildcards and ties."""

from __future__ import annotations

import pytest

from exporter.web.negotiation import accepts_gzip, wants_openmetrics
from tests.kit.web import PROMETHEUS_2, PROMETHEUS_3, PROMETHEUS_3_TEXT_ONLY


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        ("", False),
        ("*/*", False),
        ("text/plain", False),
        ("text/plain;version=0.0.4", False),
        (PROMETHEUS_3_TEXT_ONLY, False),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text; version=1.0.0", True),
        ("application/openmetrics-text;version=0.0.1", True),
        (PROMETHEUS_2, True),
        (PROMETHEUS_3, True),
        ("application/openmetrics-text;q=0", False),
        ("application/openmetrics-text;q=0, */*", False),
        ("text/plain;q=0.2, application/openmetrics-text;q=0.9", True),
        ("text/plain, application/openmetrics-text", False),  # a tie goes to the first listed
        ("application/openmetrics-text, text/plain", True),
        ("application/openmetrics-text;version=2.0.0", False),  # a version we do not write
        ("application/*", True),
        ("text/plain;q=0, */*", True),  # text refused, OpenMetrics accepted through */*
        ("application/json", False),  # nothing acceptable: the text format anyway
        ("application/openmetrics-text;q=bogus, text/plain", False),
    ],
)
def test_accept_header_negotiation(accept: str, openmetrics: bool) -> None:
    assert wants_openmetrics(accept) is openmetrics


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("", False),
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # named beats the wildcard
        ("identity", False),
    ],
)
def test_accept_encoding_negotiation(accept_encoding: str, gzipped: bool) -> None:
    assert accepts_gzip(accept_encoding) is gzipped
