"""exporter.web.config: the exporter-toolkit web config file, checked at start (one line naming
the key). Loading the files it names and re-reading them when they change (a test PKI made
with openssl, a server) is in tests/e2e/test_web_config_live.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.web.config import WebConfig, WebConfigError, load_web_config, parse_go_duration
from exporter.web.server import WebServer
from tests.kit.web import write


def test_load_web_config_empty_file(tmp_path: Path) -> None:
    assert load_web_config(str(write(tmp_path / "web.yml", ""))) == WebConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config:\n  cert_fil: x\n", "tls_server_config.cert_fil: unknown key"),
        ("colour: blue\n", "web config colour: unknown key"),
        ("rate_limit:\n  every: 1s\n", "rate_limit.every: unknown key"),
        ("basic_auth_users:\n  admin: plaintext\n", "basic_auth_users.admin: not a bcrypt hash"),
        ("basic_auth_users:\n  admin: 12\n", "basic_auth_users.admin: must be a string"),
        (
            "http_server_config:\n  headers:\n    X-Powered-By: me\n",
            "http_server_config.headers.X-Powered-By: this header cannot be configured",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "http_server_config.headers.X-Frame-Options: must be one of deny",
        ),
        (
            "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
            "http_server_config.headers.X-Content-Type-Options: must be one of nosniff",
        ),
        ("http_server_config:\n  http2: true\n", "http_server_config.http2: HTTP/2 is not"),
        ("http_server_config:\n  http2: yes please\n", "http2: must be true or false"),
        (
            "tls_server_config:\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "tls_server_config.cipher_suites: unknown cipher 'TLS_RSA_WITH_RC4_128_SHA'",
        ),
        (
            "tls_server_config:\n  curve_preferences: [CurveP999]\n",
            "tls_server_config.curve_preferences: unknown curve 'CurveP999'",
        ),
        ("tls_server_config:\n  cert_file: c.pem\n", "tls_server_config.key_file: missing one"),
        ("tls_server_config:\n  cert: ''\n  key_file: k\n", "cert_file: missing one of cert"),
        (
            "tls_server_config:\n  client_auth_type: NoClientCert\n",
            "tls_server_config.cert_file: missing one of cert or cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS111\n",
            "tls_server_config.min_version: unknown TLS version 'TLS111'",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n"
            "  min_version: TLS13\n  max_version: TLS12\n",
            "tls_server_config.min_version: is higher than max_version",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Sometimes\n",
            "tls_server_config.client_auth_type: unknown value 'Sometimes'",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: /dev/null\n",
            "client_auth_type: client CA certificates are configured without a client auth",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n"
            "  client_auth_type: VerifyClientCertIfGiven\n  client_allowed_sans: [a]\n",
            "client_allowed_sans: requires client_auth_type RequireAndVerifyClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n"
            "  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
            "tls_server_config.cipher_suites: missing TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            "tls_server_config:\n  cert: x\n  cert_file: c\n  key_file: k\n",
            "tls_server_config.cert: set cert or cert_file, not both",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n"
            "  curve_preferences: [CurveP256, X25519]\n",
            "tls_server_config.curve_preferences: lists 2 curves, but Python's ssl module",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n"
            "  client_auth_type: RequireAnyClientCert\n",
            "tls_server_config.client_auth_type: RequireAnyClientCert is not supported",
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n"
            "  client_auth_type: RequestClientCert\n",
            "tls_server_config.client_auth_type: RequestClientCert is not supported",
        ),
        ("rate_limit:\n  interval: soon\n", "rate_limit.interval: not a duration: 'soon'"),
        ("rate_limit:\n  interval: 1s\n  burst: many\n", "rate_limit.burst: must be an integer"),
        ("rate_limit:\n  interval: 1s\n  burst: -1\n", "rate_limit.burst: must not be negative"),
        ("tls_server_config: [1, 2]\n", "web config tls_server_config: must be a mapping"),
        ("- 1\n- 2\n", "the top level must be a mapping"),
    ],
)
def test_load_web_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(write(tmp_path / "web.yml", text)))
    message = str(info.value)
    assert "\n" not in message
    assert expected in message
    assert message.startswith("web config ")


def test_noHTTP2_ciphers_are_fine_with_http2_off_or_only_tls13(tmp_path: Path) -> None:
    base = "tls_server_config:\n  cert_file: c\n  key_file: k\n"
    suites = "  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n"
    load_web_config(
        str(write(tmp_path / "a.yml", base + suites + "http_server_config:\n  http2: false\n"))
    )
    load_web_config(str(write(tmp_path / "b.yml", base + suites + "  min_version: TLS13\n")))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("1.5h", 5400.0), (0, 0.0), ("0", 0.0),
     (2_000_000_000, 2.0), ("250us", 0.00025)],
)  # fmt: skip
def test_go_durations(value: object, seconds: float) -> None:
    assert parse_go_duration(value, "k") == pytest.approx(seconds)


def test_load_web_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yml"
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "cannot read" in message


def test_load_web_config_yaml_error(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yml", "basic_auth_users:\n  admin: [unclosed\n  other: x\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"web config {path}: invalid YAML at line ")


def test_web_server_rejects_invalid_web_config() -> None:
    from tests.kit.web import handlers

    with pytest.raises(WebConfigError, match=r"basic_auth_users\.admin: not a bcrypt hash"):
        WebServer("127.0.0.1:0", handlers(), web_config=WebConfig(basic_auth_users={"admin": "x"}))
