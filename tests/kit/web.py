"""Shared kit of the web server tests: snapshots and handlers, raw HTTP, basic auth, a test PKI.

`pki(directory)` makes, with the `openssl` command line: a CA, a server certificate it signs
(RSA, for localhost and 127.0.0.1), and two self-signed client certificates (`client`, SAN
DNS:client.example; `client2`, SANs DNS:test3 and DNS:client2.example).
"""

from __future__ import annotations

import base64
import http.client
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client import exposition as text_exposition
from prometheus_client.openmetrics import exposition as om_exposition

from exporter.cams.model import UnitKey
from exporter.counting.state import Counts
from exporter.publish.pages import StatusPages
from exporter.publish.snapshot import Snapshot
from exporter.templates.view import AccountStatus, TemplateSeries
from exporter.web.negotiation import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.web.routes import Handlers, Payload
from exporter.web.server import WebServer

# What Prometheus sends: 2.x by default, 3.x by default, and 3.x with scrape_protocols set to
# the text format only.
PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;"
    "escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
PROMETHEUS_3_TEXT_ONLY = "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

PASSWORD = "s3cret-pass"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter(
        "cams_template_messages_sent", "Messages sent.", ["account"], registry=registry
    )
    counter.labels(account="main").inc(42)
    return registry


REGISTRY = _registry()


def render_metrics(openmetrics: bool) -> Payload:
    if openmetrics:
        body = om_exposition.generate_latest(REGISTRY)  # type: ignore[no-untyped-call]
        return Payload(OPENMETRICS_CONTENT_TYPE, body)
    return Payload(TEXT_CONTENT_TYPE, text_exposition.generate_latest(REGISTRY))


def account(ready: bool = True, **overrides: Any) -> AccountStatus:
    fields: dict[str, Any] = {
        "name": "main",
        "endpoint": "http://127.0.0.1:18080",
        "spaces": ("cams-space-1",),
        "units": 4,
        "cycle_units": 4,
        "units_done": 4 if ready else 1,
        "first_cycle_complete": ready,
        "up": ready,
        "last_poll_success": 1_767_225_600.0 if ready else None,  # 2026-01-01T00:00:00Z
        "last_poll_duration": 2.5 if ready else None,
        "templates_discovered": (("cams-space-1", 2),),
    }
    fields.update(overrides)
    return AccountStatus(**fields)


def series(name: str = "Welcome", code: str = "744c4b5c", language: str = "en") -> TemplateSeries:
    return TemplateSeries(
        key=UnitKey("main", "cams-space-1", code, language, "WHATSAPP"),
        name=name,
        category="MARKETING",
        audit_status="pass",
        counts=Counts(sent=10, delivered=9, read=7),
        last_success=1_767_225_600.0,
        last_error=None,
    )


def snapshot(ready: bool = True, *templates: TemplateSeries, **overrides: Any) -> Snapshot:
    return Snapshot(
        generation=3,
        created=1_767_225_660.0,
        accounts=(account(ready, **overrides),),
        series=templates or (series(),),
    )


@dataclass
class SnapshotBox:
    """A swappable snapshot, as the poller swaps them in."""

    current: Snapshot

    def get(self) -> Snapshot:
        return self.current


def handlers(
    snap: Snapshot | None = None,
    metrics: Callable[[bool], Payload] = render_metrics,
    reload: Callable[[], tuple[bool, str]] | None = None,
) -> Handlers:
    box = SnapshotBox(snap if snap is not None else snapshot())
    return handlers_over(box.get, metrics, reload)


def handlers_over(
    source: Callable[[], Snapshot],
    metrics: Callable[[bool], Payload] = render_metrics,
    reload: Callable[[], tuple[bool, str]] | None = None,
) -> Handlers:
    """The web handlers the exporter builds, over snapshots from `source`."""
    pages = StatusPages(source, "1.2.3-test")
    return Handlers(metrics=metrics, ready=pages.ready, landing=pages.landing, reload=reload)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Reply:
    """One request over http.client, with the body exactly as sent (no decompression)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def bump(path: Path, text: str) -> None:
    """Rewrite `path` so that its modification time surely moves."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def basic_header(user: str, password: str) -> str:
    """The Authorization header's value for basic auth."""
    return basic(user, password)["Authorization"]


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[bytes, bytes]]]:
    """Every (password, hash) bcrypt.checkpw is called with."""
    real = bcrypt.checkpw
    calls: list[tuple[bytes, bytes]] = []

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append((password, hashed))
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    yield calls


@pytest.fixture
def serve() -> Iterator[Callable[..., WebServer]]:
    """Start WebServers on 127.0.0.1:0 (handlers() unless given); all shut down after."""
    servers: list[WebServer] = []

    def make(h: Handlers | None = None, address: str = "127.0.0.1:0", **kw: Any) -> WebServer:
        server = WebServer(address, h if h is not None else handlers(), **kw)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.shutdown()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _self_signed(directory: Path, name: str, sans: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName={sans}",
        "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.crt"),
    )  # fmt: skip


def pki(directory: Path) -> dict[str, Path]:
    """CA, CA-signed server certificate, two self-signed client certificates (see above)."""
    directory.mkdir(parents=True, exist_ok=True)
    _self_signed(directory, "ca", "DNS:ca.example")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(directory / "server.key"), "-out", str(directory / "server.csr"),
    )  # fmt: skip
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\n"
    )
    _openssl(
        "x509", "-req", "-in", str(directory / "server.csr"), "-CA", str(directory / "ca.crt"),
        "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", "2",
        "-extfile", str(ext), "-out", str(directory / "server.crt"),
    )  # fmt: skip
    _self_signed(directory, "client", "DNS:client.example")
    _self_signed(directory, "client2", "DNS:test3,DNS:client2.example")
    names = ("ca", "server", "client", "client2")
    paths = {f"{n}_cert": directory / f"{n}.crt" for n in names}
    paths.update({f"{n}_key": directory / f"{n}.key" for n in names})
    return paths


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test PKI of `pki`, made once per test module."""
    return pki(tmp_path_factory.mktemp("pki"))
