"""exporter.web.config and .live: the exporter-toolkit web config file, checked at start (one
line naming the key), and re-read when it or a file it names changes."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import requests

from exporter.web.config import WebConfig, WebConfigError, load_web_config, parse_go_duration
from exporter.web.live import WatchedWebConfig
from exporter.web.server import WebServer
from tests.kit.web import HASH, PASSWORD, certs, raw_request, serve

__all__ = ["certs", "serve"]  # fixtures, imported from tests.kit.web


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def bump(path: Path, text: str) -> None:
    """Rewrite `path` so that its modification time surely moves."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def test_load_web_config_full(tmp_path: Path, certs: dict[str, Path]) -> None:
    for name in ("server_cert", "server_key", "client_cert"):
        shutil.copy(certs[name], tmp_path / f"{name}.pem")
    path = write(
        tmp_path / "web.yml",
        "tls_server_config:\n"
        "  cert_file: server_cert.pem\n"  # relative: resolved against the config's directory
        "  key_file: server_key.pem\n"
        "  client_ca_file: client_cert.pem\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        "  client_allowed_sans: [client.example]\n"
        "  min_version: TLS12\n"
        "  max_version: TLS13\n"
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"
        "  prefer_server_cipher_suites: false\n"
        "  curve_preferences: [CurveP256, X25519]\n"
        "http_server_config:\n"
        "  http2: false\n"
        "  headers:\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "    X-XSS-Protection: 1\n"  # a YAML number, a string for the header
        "basic_auth_users:\n"
        f"  admin: '{HASH}'\n"
        "rate_limit:\n"
        "  interval: 1m30s\n"
        "  burst: 20\n",
    )
    config = load_web_config(str(path))
    assert config.cert_file == str(tmp_path / "server_cert.pem")
    assert config.key_file == str(tmp_path / "server_key.pem")
    assert config.client_ca_file == str(tmp_path / "client_cert.pem")
    assert config.auth_type == "RequireAndVerifyClientCert"
    assert config.client_allowed_sans == ("client.example",)
    assert config.cipher_suites == ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",)
    assert config.prefer_server_cipher_suites is False
    assert config.curve_preferences == ("CurveP256", "X25519")
    assert config.http2 is False
    assert dict(config.basic_auth_users) == {"admin": HASH}
    assert dict(config.headers) == {
        "Strict-Transport-Security": "max-age=31536000",
        "X-XSS-Protection": "1",
    }
    assert (config.rate_limit_interval_s, config.rate_limit_burst) == (90.0, 20)
    assert config.tls_enabled
    with pytest.raises(TypeError):
        config.basic_auth_users["eve"] = HASH  # type: ignore[index]
    WatchedWebConfig(str(path))  # and every file it names loads


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
            "client_allowed_sans: requires client_auth_type RequireAnyClientCert or",
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


def test_named_files_are_loaded_at_start(tmp_path: Path, certs: dict[str, Path]) -> None:
    not_a_cert = write(tmp_path / "cert.pem", "hello\n")
    path = tmp_path / "web.yml"
    write(
        path, f"tls_server_config:\n  cert_file: {not_a_cert}\n  key_file: {certs['server_key']}\n"
    )
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file: no PEM certificate"):
        WatchedWebConfig(str(path))
    write(
        path,
        f"tls_server_config:\n  cert_file: {certs['server_cert']}\n"
        f"  key_file: {certs['client_key']}\n",
    )
    with pytest.raises(WebConfigError, match=r"tls_server_config\.key_file: cannot load the key"):
        WatchedWebConfig(str(path))
    write(
        path, f"tls_server_config:\n  cert_file: {tmp_path}/no.pem\n  key_file: {tmp_path}/no.key\n"
    )
    with pytest.raises(WebConfigError, match=r"cert_file: cannot read .*no\.pem"):
        WatchedWebConfig(str(path))


def test_web_server_rejects_invalid_web_config() -> None:
    from tests.kit.web import handlers

    with pytest.raises(WebConfigError, match=r"basic_auth_users\.admin: not a bcrypt hash"):
        WebServer("127.0.0.1:0", handlers(), web_config=WebConfig(basic_auth_users={"admin": "x"}))


def test_changed_users_apply_without_restart_and_a_broken_file_keeps_the_old(
    tmp_path: Path, serve: Callable[..., WebServer], caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users:\n  admin: '{HASH}'\n")
    server = serve(web_config=WatchedWebConfig(str(path)))
    url = f"http://127.0.0.1:{server.port}/-/healthy"
    assert requests.get(url, auth=("admin", PASSWORD), timeout=10).status_code == 200
    other = bcrypt.hashpw(b"other-pass", bcrypt.gensalt(rounds=4)).decode()
    bump(path, f"basic_auth_users:\n  carol: '{other}'\n")
    assert requests.get(url, auth=("carol", "other-pass"), timeout=10).status_code == 200
    assert requests.get(url, auth=("admin", PASSWORD), timeout=10).status_code == 401

    with caplog.at_level(logging.ERROR, logger="cams_exporter.web"):
        bump(path, "basic_auth_users:\n  carol: not-a-hash\n")
        for _ in range(3):
            assert requests.get(url, auth=("carol", "other-pass"), timeout=10).status_code == 200
    errors = [r.getMessage() for r in caplog.records if "not reloaded" in r.getMessage()]
    assert len(errors) == 1 and "basic_auth_users.carol: not a bcrypt hash" in errors[0]

    bump(path, "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    reply = raw_request(server.port, "/-/healthy")
    assert reply.status == 200 and reply.headers["x-frame-options"] == "deny"


def test_turning_tls_on_needs_a_restart(
    tmp_path: Path, certs: dict[str, Path], serve: Callable[..., WebServer]
) -> None:
    path = write(tmp_path / "web.yml", "")
    server = serve(web_config=WatchedWebConfig(str(path)))
    bump(
        path,
        f"tls_server_config:\n  cert_file: {certs['server_cert']}\n"
        f"  key_file: {certs['server_key']}\n",
    )
    assert raw_request(server.port, "/-/healthy").status == 200  # still plain HTTP
