"""exporter.web.config and .live with real files and a server: a full web config with the test
PKI (made with openssl) loads with every file it names, named files that do not load are
refused at start in one line, and the file is re-read when it or a file it names changes."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import requests

from exporter.web.config import WebConfigError, load_web_config
from exporter.web.live import WatchedWebConfig
from exporter.web.server import WebServer
from tests.kit.web import HASH, PASSWORD, bump, certs, raw_request, serve, write

__all__ = ["certs", "serve"]  # fixtures, imported from tests.kit.web


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
        "  curve_preferences: [X25519]\n"
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
    assert config.curve_preferences == ("X25519",)
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
