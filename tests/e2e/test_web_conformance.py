"""exporter-toolkit conformance: the 57 cases of exporter-toolkit's own web tests, run against
cams-exporter's web server, each outcome compared with what exporter-toolkit expects.

The cases are those of exporter-toolkit's web/tls_config_test.go (TestYAMLFiles: 18,
TestServerBehaviour: 28, TestUsers: 7, TestConfigReloading: 1) and tls_config_go121_test.go
(TestServerBehaviour121: 3), each counted once (the `WebConfig:` variants feed the same file
through Go's API instead of a file, which has no equivalent here). Their YAML files and
certificates are re-made here (`tests.kit.web.pki`, bcrypt hashes of cost 4): only the cases'
meaning is taken from exporter-toolkit. An outcome is one of
OK, REFUSED (the web config is refused at start), TLS_FAIL (the handshake or connection fails),
HTTP_400 / HTTP_401 / HTTP_429 (the answer's status), WRONG_CIPHER, or RELOADED (refused, then
accepted once the file changed, without a restart).

`PYTHONPATH=. python3 -m tests.e2e.test_web_conformance` prints the table as markdown (for
docs/web-config.md, which also says why the cases that disagree do).
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import ssl
import sys
import tempfile
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from exporter.web.config import WebConfigError
from exporter.web.live import WatchedWebConfig
from exporter.web.server import WebServer
from tests.kit.web import certs, handlers, pki

__all__ = ["certs"]  # the fixture, imported from tests.kit.web
# One case's client asks for TLS 1.1 on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")

TARGET = 52
MISSING = "<no such file>"
BLOCKING = (
    "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    "  client_auth_type: RequireAndVerifyClientCert\n"
)
GOOD = (
    "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    "  client_auth_type: VerifyClientCertIfGiven\n"
)
ALL_CIPHERS = """\
  cipher_suites:
  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
  - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
  - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
  - TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
  - TLS_AES_128_GCM_SHA256
  - TLS_AES_256_GCM_SHA384
  - TLS_CHACHA20_POLY1305_SHA256
  - TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
  - TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA
  - TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA
  - TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
  - TLS_RSA_WITH_AES_128_CBC_SHA
  - TLS_RSA_WITH_AES_256_CBC_SHA
  - TLS_RSA_WITH_AES_128_GCM_SHA256
  - TLS_RSA_WITH_AES_256_GCM_SHA384
"""
SOME_CIPHERS = """\
  cipher_suites:
  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
  min_version: TLS12
  max_version: TLS12
"""
SOME_CIPHERS_NO_ORDER = """\
  cipher_suites:
  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  prefer_server_cipher_suites: false
  min_version: TLS12
  max_version: TLS12
"""
USERS = "basic_auth_users:\n  alice: {alice}\n  bob: {bob}\n  carol: {carol}\n  dave: {dave}\n"
AES128 = "ECDHE-RSA-AES128-GCM-SHA256"
AES256 = "ECDHE-RSA-AES256-GCM-SHA384"


@dataclass(frozen=True)
class Case:
    """One exporter-toolkit case: a web config, a client, the outcome exporter-toolkit has."""

    suite: str
    name: str
    config: str | None  # YAML (file names relative to the PKI directory); None: no config
    expected: str
    tls: bool = False
    client_max: ssl.TLSVersion | None = None
    ciphers: str | None = None  # the client's TLS 1.2 suites, OpenSSL names
    curve: str | None = None  # the client's one curve, OpenSSL's short name
    client_cert: str | None = None
    user: str | None = None
    password: str = ""
    requests: int = 0  # exporter-toolkit sends requests + 1
    cipher: str | None = None  # the cipher the handshake must pick
    then: str | None = None  # TestConfigReloading: the file's content after the first try


_TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
CONFIGS = {
    "junk": "tls_server_config: [oops\n",
    "junk_key": "tls_server_config:\n  cert_filse: a\n",
    "cert_path_empty": "tls_server_config:\n  cert_file: ''\n  key_file: server.key\n",
    "cert_empty": "tls_server_config:\n  cert: ''\n  key_file: server.key\n",
    "key_path_empty": "tls_server_config:\n  cert_file: server.crt\n  key_file: ''\n",
    "key_empty": "tls_server_config:\n  cert_file: server.crt\n  key: ''\n",
    "both_empty": "tls_server_config:\n  cert_file: ''\n  key_file: ''\n  client_auth_type: x\n",
    "cert_path_invalid": "tls_server_config:\n  cert_file: somefile\n  key_file: server.key\n",
    "key_path_invalid": "tls_server_config:\n  cert_file: server.crt\n  key_file: somefile\n",
    "both_invalid": "tls_server_config:\n  cert_file: somefile\n  key_file: somefile\n",
    "ca_without_policy": _TLS + "  client_ca_file: /dev/null\n",
    "ca_missing": _TLS + "  client_ca_file: somefile\n",
    "bad_user": _TLS + "basic_auth_users:\n  john: doe\n",
    "bad_cipher": GOOD + "  cipher_suites:\n  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048\n",
    "bad_curve": GOOD + "  curve_preferences:\n  - CurveP257\n",
    "bad_version": GOOD + "  min_version: TLS111\n",
    "all_curves": GOOD
    + "  curve_preferences: [CurveP256, CurveP384, CurveP521, X25519, X25519MLKEM768]\n",
    "some_curves": GOOD + "  min_version: TLS13\n  curve_preferences: [CurveP521]\n",
    "no_http2": GOOD
    + "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n  max_version: TLS12\n"
    + "http_server_config:\n  http2: false\n",
    "no_http2_cipher": GOOD
    + "  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n  max_version: TLS12\n",
    "headers": "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
    "    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1\n"
    "    Content-Security-Policy: \"default-src 'self' *.test.example.net\"\n",
    "bad_xcto": "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
    "bad_xfo": "http_server_config:\n  headers:\n    X-Frame-Options: foo\n",
    "bad_header": "http_server_config:\n  headers:\n    Content-Type: foo\n",
    "any_cert": _TLS + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n",
    "verify": _TLS
    + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client.crt\n",
    "san_good": _TLS
    + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client2.crt\n"
    + "  client_allowed_sans: [one, test3, two]\n",
    "san_bad": _TLS
    + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client2.crt\n"
    + "  client_allowed_sans: [bad]\n",
    "no_limit": "rate_limit:\n  interval: 0\n  burst: 0\n",
    "limit_1s": "rate_limit:\n  interval: 1s\n  burst: 0\n",
}


def _cases() -> list[Case]:
    y, s, s121, u = "TestYAMLFiles", "TestServerBehaviour", "TestServerBehaviour121", "TestUsers"
    c = CONFIGS
    yml = "invalid config yml"
    tls = "valid tls config yml"
    client = "and tls client with"
    any_present = "RequireAnyClientCert (present certificate)"
    return [
        Case(y, "path to config yml invalid", MISSING, "REFUSED"),
        Case(y, "empty config yml", "", "OK"),
        Case(y, f"{yml} (invalid structure)", c["junk"], "REFUSED"),
        Case(y, f"{yml} (invalid key)", c["junk_key"], "REFUSED"),
        Case(y, f"{yml} (cert path empty)", c["cert_path_empty"], "REFUSED"),
        Case(y, f"{yml} (cert empty)", c["cert_empty"], "REFUSED"),
        Case(y, f"{yml} (key path empty)", c["key_path_empty"], "REFUSED"),
        Case(y, f"{yml} (key empty)", c["key_empty"], "REFUSED"),
        Case(y, f"{yml} (cert path and key path empty)", c["both_empty"], "REFUSED"),
        Case(y, f"{yml} (cert path invalid)", c["cert_path_invalid"], "REFUSED"),
        Case(y, f"{yml} (key path invalid)", c["key_path_invalid"], "REFUSED"),
        Case(y, f"{yml} (cert path and key path invalid)", c["both_invalid"], "REFUSED"),
        Case(y, f"{yml} (invalid ClientAuth)", c["ca_without_policy"], "REFUSED"),
        Case(y, f"{yml} (invalid ClientCAs filepath)", c["ca_missing"], "REFUSED"),
        Case(y, f"{yml} (invalid user list)", c["bad_user"], "REFUSED"),
        Case(y, f"{yml} (bad cipher)", c["bad_cipher"], "REFUSED"),
        Case(y, f"{yml} (bad curves)", c["bad_curve"], "REFUSED"),
        Case(y, f"{yml} (bad TLS version)", c["bad_version"], "REFUSED"),
        Case(s, "empty string YAMLConfigPath and default client", None, "OK"),
        Case(s, "default client", None, "OK"),
        Case(s, "empty string YAMLConfigPath and TLS client", None, "TLS_FAIL", tls=True),
        Case(s, f"{tls} and default client", GOOD, "HTTP_400"),
        Case(s, f"{tls} and tls client", GOOD, "OK", tls=True),
        Case(s, f"{tls} (cert and key inline) and tls client", "INLINE", "OK", tls=True),
        Case(
            s,
            f"{tls} with TLS 1.1 client",
            GOOD,
            "TLS_FAIL",
            tls=True,
            client_max=ssl.TLSVersion.TLSv1_1,
        ),
        Case(s, f"{tls} with all ciphers", GOOD + ALL_CIPHERS, "OK", tls=True),
        Case(s, f"{tls} with some ciphers", GOOD + SOME_CIPHERS, "OK", tls=True, ciphers=AES128),
        Case(
            s,
            f"{tls} with no common cipher",
            GOOD + SOME_CIPHERS,
            "TLS_FAIL",
            tls=True,
            ciphers="ECDHE-RSA-AES256-SHA",
        ),
        Case(
            s,
            f"{tls} with multiple client ciphers",
            GOOD + SOME_CIPHERS,
            "OK",
            tls=True,
            ciphers=f"{AES128}:{AES256}",
            cipher=AES128,
        ),
        Case(
            s,
            f"{tls} with multiple client ciphers, client chooses cipher",
            GOOD + SOME_CIPHERS_NO_ORDER,
            "OK",
            tls=True,
            ciphers=f"{AES128}:{AES256}",
            cipher=AES128,
        ),
        Case(s, f"{tls} with all curves", c["all_curves"], "OK", tls=True),
        Case(s, f"{tls} with some curves", c["some_curves"], "OK", tls=True, curve="secp521r1"),
        Case(
            s,
            f"{tls} with no common curves",
            c["some_curves"],
            "TLS_FAIL",
            tls=True,
            curve="secp384r1",
        ),
        Case(s, f"{tls} with non-http2 ciphers", c["no_http2"], "OK", tls=True),
        Case(
            s,
            f"{tls} with non-http2 ciphers but http2 enabled",
            c["no_http2_cipher"],
            "REFUSED",
            tls=True,
        ),
        Case(s, "valid headers config", c["headers"], "OK"),
        Case(s, "invalid X-Content-Type-Options headers config", c["bad_xcto"], "REFUSED"),
        Case(s, "invalid X-Frame-Options headers config", c["bad_xfo"], "REFUSED"),
        Case(s, "HTTP header that can not be overridden", c["bad_header"], "REFUSED"),
        Case(
            s,
            f"{tls} {client} {any_present}",
            c["any_cert"],
            "OK",
            tls=True,
            client_cert="client",
        ),
        Case(
            s,
            f"{tls} (cert from file, key inline) {client} {any_present}",
            "KEY_INLINE_ANY",
            "OK",
            tls=True,
            client_cert="client",
        ),
        Case(
            s,
            f"{tls} {client} RequireAndVerifyClientCert (present certificate)",
            c["verify"],
            "OK",
            tls=True,
            client_cert="client",
        ),
        Case(
            s,
            f"{tls} {client} VerifyPeerCertificate (present good SAN DNS entry)",
            c["san_good"],
            "OK",
            tls=True,
            client_cert="client2",
        ),
        Case(
            s,
            f"{tls} {client} VerifyPeerCertificate (present invalid SAN DNS entries)",
            c["san_bad"],
            "TLS_FAIL",
            tls=True,
            client_cert="client2",
        ),
        Case(
            s,
            "valid rate limiter (no rate limiter set up) that doesn't block",
            c["no_limit"],
            "OK",
            requests=10,
        ),
        Case(
            s,
            "valid rate limiter with an interval of one second",
            c["limit_1s"],
            "HTTP_429",
            requests=10,
        ),
        Case(s121, f"{tls} {client} RequireAnyClientCert", c["any_cert"], "TLS_FAIL", tls=True),
        Case(s121, f"{tls} {client} RequireAndVerifyClientCert", c["verify"], "TLS_FAIL", tls=True),
        Case(
            s121,
            f"{tls} {client} RequireAndVerifyClientCert (present wrong certificate)",
            c["verify"],
            "TLS_FAIL",
            tls=True,
            client_cert="client2",
        ),
        Case(u, "without basic auth", USERS, "HTTP_401"),
        Case(u, "with correct basic auth", USERS, "OK", user="dave", password="dave123"),
        Case(u, "without basic auth and TLS", GOOD + USERS, "HTTP_401", tls=True),
        Case(
            u,
            "with correct basic auth and TLS",
            GOOD + USERS,
            "OK",
            tls=True,
            user="dave",
            password="dave123",
        ),
        Case(
            u,
            "with another correct basic auth and TLS",
            GOOD + USERS,
            "OK",
            tls=True,
            user="carol",
            password="carol123",
        ),
        Case(
            u,
            "with bad password and TLS",
            GOOD + USERS,
            "HTTP_401",
            tls=True,
            user="dave",
            password="bad",
        ),
        Case(
            u,
            "with bad username and TLS",
            GOOD + USERS,
            "HTTP_401",
            tls=True,
            user="nonexistent",
            password="nonexistent",
        ),
        Case(
            "TestConfigReloading",
            "blocking config, then the good one written over it",
            BLOCKING,
            "RELOADED",
            tls=True,
            then=GOOD,
        ),
    ]


CASES = _cases()


def _config_text(case: Case, directory: Path, hashes: dict[str, str]) -> str:
    assert case.config is not None
    if case.config == "INLINE":
        cert = textwrap.indent((directory / "server.crt").read_text(), "    ")
        key = textwrap.indent((directory / "server.key").read_text(), "    ")
        return (
            f"tls_server_config:\n  cert: |\n{cert}  key: |\n{key}"
            "  client_auth_type: VerifyClientCertIfGiven\n"
        )
    if case.config == "KEY_INLINE_ANY":
        key = textwrap.indent((directory / "server.key").read_text(), "    ")
        return (
            f"tls_server_config:\n  cert_file: server.crt\n  key: |\n{key}"
            "  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n"
        )
    return case.config.format(**hashes)


@dataclass(frozen=True)
class Outcome:
    """What happened, and a short why."""

    kind: str
    detail: str = ""


def _short(text: str, directory: Path | None = None) -> str:
    if directory is not None:
        text = text.replace(f"{directory}/", "")
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= 90 else text[:87] + "..."


def _get(case: Case, port: int, directory: Path) -> Outcome:
    """One request as the case's client; its outcome."""
    conn: http.client.HTTPConnection
    if case.tls:
        context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        context.set_ciphers(f"{case.ciphers or 'DEFAULT'}:@SECLEVEL=0")
        if case.client_max is not None:
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = case.client_max
        if case.curve is not None:
            context.set_ecdh_curve(case.curve)
        if case.client_cert:
            context.load_cert_chain(
                str(directory / f"{case.client_cert}.crt"),
                str(directory / f"{case.client_cert}.key"),
            )
        conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    else:
        conn = http.client.HTTPConnection("localhost", port, timeout=10)
    headers = {}
    if case.user is not None:
        token = base64.b64encode(f"{case.user}:{case.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("GET", "/-/healthy", headers=headers)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        if response.status != 200:
            return Outcome(f"HTTP_{response.status}", _short(body))
        if case.cipher is not None:
            sock = conn.sock
            assert isinstance(sock, ssl.SSLSocket)
            chosen = sock.cipher()
            if chosen is None or chosen[0] != case.cipher:
                return Outcome("WRONG_CIPHER", str(chosen))
            return Outcome("OK", f"cipher {chosen[0]}")
        return Outcome("OK")
    except (OSError, http.client.HTTPException) as exc:
        return Outcome("TLS_FAIL", _short(f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_case(case: Case, pki_dir: Path, hashes: dict[str, str]) -> Outcome:
    """Our outcome for `case`."""
    with tempfile.TemporaryDirectory(dir=pki_dir) as scratch:
        directory = Path(scratch)
        for name in os.listdir(pki_dir):
            if (pki_dir / name).is_file():
                os.symlink(pki_dir / name, directory / name)
        source: WatchedWebConfig | None = None
        if case.config is not None:
            path = directory / ("somefile" if case.config == MISSING else "web.yml")
            if case.config != MISSING:
                path.write_text(_config_text(case, directory, hashes))
            try:
                source = WatchedWebConfig(str(path))
            except WebConfigError as exc:
                return Outcome("REFUSED", _short(str(exc), directory))
        server = WebServer("127.0.0.1:0", handlers(), web_config=source)
        server.start()
        try:
            outcome = Outcome("OK")
            for _ in range(case.requests + 1):
                outcome = _get(case, server.port, directory)
                if outcome.kind != "OK":
                    break
            if case.then is None:
                return outcome
            before = path.stat().st_mtime_ns
            path.write_text(case.then.format(**hashes))
            os.utime(path, ns=(before + 10**9, before + 10**9))
            after = _get(case, server.port, directory)
            if (outcome.kind, after.kind) == ("TLS_FAIL", "OK"):
                return Outcome("RELOADED", f"{outcome.detail}, then OK")
            return Outcome(f"{outcome.kind}->{after.kind}", after.detail)
        finally:
            server.shutdown()


def user_hashes() -> dict[str, str]:
    return {
        name: bcrypt.hashpw(f"{name}123".encode(), bcrypt.gensalt(rounds=4)).decode()
        for name in ("alice", "bob", "carol", "dave")
    }


def results(pki_dir: Path) -> list[tuple[Case, Outcome]]:
    hashes = user_hashes()
    return [(case, run_case(case, pki_dir, hashes)) for case in CASES]


def table(rows: list[tuple[Case, Outcome]]) -> str:
    lines = [
        "| # | exporter-toolkit test | case | expected | cams-exporter | agree | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for index, (case, ours) in enumerate(rows, 1):
        agree = "yes" if ours.kind == case.expected else "**no**"
        lines.append(
            f"| {index} | {case.suite} | {case.name} | {case.expected} | {ours.kind} | {agree} "
            f"| {ours.detail} |"
        )
    agreed = sum(1 for case, ours in rows if ours.kind == case.expected)
    lines.append(f"\n{agreed} of {len(rows)} agree.")
    return "\n".join(lines)


def test_exporter_toolkit_conformance(
    certs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(CASES) == 57
    rows = results(certs["ca_cert"].parent)
    with capsys.disabled():
        print("\n" + table(rows))
    agreed = sum(1 for case, ours in rows if ours.kind == case.expected)
    assert agreed >= TARGET, table(rows)


def main() -> int:
    warnings.filterwarnings("ignore", "ssl.TLSVersion", DeprecationWarning)
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as directory:
        print(table(results(pki(Path(directory) / "pki")["ca_cert"].parent)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
