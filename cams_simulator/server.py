"""The simulator on a real HTTP server: `Simulator` ties the API, authentication, flow control,
faults and stats together behind one threaded keep-alive HTTP/1.1 server.

Each CAMS request (`POST /`, parameters in the query string) is authenticated, throttled per
access key and action, maybe faulted, answered, and recorded in the stats. Administration
endpoints under `/_sim/` (stats, faults, answer variants, key rotation, clock offset, template
deletion, phone number and can-send overrides) are neither signed, throttled nor faulted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, cast
from urllib.parse import parse_qsl, urlsplit

from cams_simulator.api import CamsApi
from cams_simulator.auth import Authenticator
from cams_simulator.faults import Faults
from cams_simulator.options import SimulatorOptions
from cams_simulator.traffic import Clock, Stats, Throttle
from cams_simulator.variants import encode
from cams_simulator.wire import (
    HOST_ID,
    ApiError,
    Reply,
    Request,
    error_body,
    invalid,
    json_bytes,
    throttled,
)
from exporter.cams import signing
from exporter.cams.model import Template

_MAX_BODY: Final = 1 << 20
_QUERY = re.compile(r"\?\S*")
_log = logging.getLogger("cams_simulator")


def _form_params(request: Request) -> list[tuple[str, str]]:
    content_type = request.headers.get("content-type", "").lower()
    if request.body and content_type.startswith("application/x-www-form-urlencoded"):
        try:
            return parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise invalid("body", "not UTF-8") from None
    return []


def _admin_json(text: str) -> Mapping[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError("body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise ValueError("body must be a JSON object")
    return doc


class Simulator:
    """The CAMS simulator on a real HTTP server (bound at construction, served after start())."""

    def __init__(
        self,
        options: SimulatorOptions,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._options = options
        self._tls = tls
        self._clock = Clock()
        self._api = CamsApi(options, self._clock)
        self._auth = Authenticator(options.access_key_id, options.access_key_secret, self._clock)
        self._throttle = Throttle()
        self._stats = Stats()
        self._faults = Faults(options.faults, options.seed)
        self._stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self._server = _Server(host, port, self, tls)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Serve in a background daemon thread."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError("simulator already started or stopped")
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"cams-simulator-{self.endpoint}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent)."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        with self._conn_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def options(self) -> SimulatorOptions:
        return self._options

    @property
    def endpoint(self) -> str:
        """`host:port` for the SDK's Config(endpoint=..., protocol="http")."""
        host, port = self._server.server_address[:2]
        text = str(host)
        if text in ("0.0.0.0", ""):
            text = "127.0.0.1"
        elif text == "::":
            text = "::1"
        if ":" in text:
            text = f"[{text}]"
        return f"{text}:{port}"

    @property
    def bound_address(self) -> str:
        """The listening socket's `host:port` as bound (may be a wildcard address)."""
        host, port = self._server.server_address[:2]
        text = str(host)
        return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"

    @property
    def url(self) -> str:
        """`http://host:port` (`https://` when serving TLS)."""
        return f"{'https' if self._tls else 'http'}://{self.endpoint}"

    # -- control ---------------------------------------------------------------------------

    def templates(self) -> tuple[Template, ...]:
        """The template-language rows ListChatappTemplate currently lists."""
        return self._api.templates()

    def stats(self) -> dict[str, Any]:
        """Calls, outcomes and the busiest 1-second windows per action (as GET /_sim/stats)."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    def set_faults(self, spec: str) -> None:
        """Replace the fault probabilities (ValueError on a bad spec); restarts the draws."""
        self._faults.set(spec)

    def set_variants(self, spec: str) -> None:
        """Replace the answer variants in force (ValueError on a bad spec)."""
        self._api.set_variants(spec)

    def set_keys(self, access_key_id: str, access_key_secret: str) -> None:
        """Rotate the only valid key pair; the old one is unknown from now on."""
        self._auth.set_keys(access_key_id, access_key_secret)

    def delete_template(self, code: str) -> None:
        """Hide a template from listing and metrics (KeyError for an unknown code)."""
        self._api.delete_template(code)

    def restore_template(self, code: str) -> None:
        """Bring a deleted template back (KeyError for an unknown code)."""
        self._api.restore_template(code)

    def sender_period(self) -> int:
        """The sender-health period now (how far the numbers' and templates' cycles are)."""
        return self._api.senders.period()

    def set_clock_offset(self, seconds: float) -> None:
        """Shift the simulator's 'now': the data's anchor and the signature window alike."""
        if not math.isfinite(seconds):
            raise ValueError("clock offset must be a finite number of seconds")
        self._clock.set_offset(seconds)

    def stop_clock(self, moment: float | None) -> None:
        """Stop the simulator's 'now' at `moment` (unix seconds; None lets it run again), so
        that a test compares live data at one instant (the anchor still follows the offset)."""
        if moment is not None and not math.isfinite(moment):
            raise ValueError("clock moment must be a finite number of seconds")
        self._clock.stop_at(moment)

    def pin_clock(self, at: float | None) -> None:
        """Serve the counts as of `at` (unix seconds) whatever the clock says; None: as of now.
        The signature window still follows the clock (and its offset)."""
        if at is not None and not math.isfinite(at):
            raise ValueError("a pinned time must be a finite number of seconds")
        self._clock.pin(at)

    # -- connections (used by the handler) ---------------------------------------------------

    def track(self, connection: socket.socket, add: bool) -> None:
        """Remember an open connection (closed by stop()), or forget a closed one."""
        with self._conn_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def pause(self, seconds: float) -> None:
        """Sleep, but wake up when the simulator stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- requests ----------------------------------------------------------------------------

    def handle_admin(self, method: str, path: str, body: bytes) -> Reply:
        """The unsigned /_sim/ endpoints."""
        try:
            if path == "/_sim/stats" and method == "GET":
                return Reply(200, json_bytes(self.stats()))
            if method != "POST":
                return Reply(404, json_bytes({"error": f"no such endpoint: {method} {path}"}))
            text = body.decode("utf-8")
            if path == "/_sim/stats/reset":
                self.reset_stats()
            elif path == "/_sim/faults":
                self.set_faults(text)
            elif path == "/_sim/variants":
                self.set_variants(text)
            elif path == "/_sim/keys":
                doc = _admin_json(text)
                self.set_keys(
                    str(doc.get("access_key_id", "")), str(doc.get("access_key_secret", ""))
                )
            elif path == "/_sim/clock":
                offset = _admin_json(text).get("offset_seconds")
                if isinstance(offset, bool) or not isinstance(offset, int | float):
                    raise ValueError("offset_seconds must be a number")
                self.set_clock_offset(float(offset))
            elif path in ("/_sim/templates/delete", "/_sim/templates/restore"):
                code = str(_admin_json(text).get("code", ""))
                if path.endswith("delete"):
                    self.delete_template(code)
                else:
                    self.restore_template(code)
            elif path == "/_sim/phone_numbers":
                self._api.senders.override_number(_admin_json(text))
            elif path == "/_sim/health":
                self._api.senders.override_can_send(_admin_json(text))
            else:
                return Reply(404, json_bytes({"error": f"no such endpoint: {method} {path}"}))
        except KeyError as exc:
            sender = path.startswith(("/_sim/phone", "/_sim/health"))
            what = "phone number" if sender else "template code"
            return Reply(404, json_bytes({"error": f"unknown {what} {exc.args[0]!r}"}))
        except (ValueError, UnicodeDecodeError) as exc:
            return Reply(400, json_bytes({"error": str(exc)}))
        return Reply(200, json_bytes({"ok": True}))

    def _encode(self, body: dict[str, Any]) -> bytes:
        return encode(body) if self._api.variants.any() else json_bytes(body)

    def handle_api(self, request: Request, arrival: float) -> Reply:
        """One CAMS request: authenticate, throttle, maybe fault, answer; recorded in stats."""
        action = request.headers.get("x-acs-action", "")
        answers = self._api.answers
        outcome = "error"
        reply: Reply
        try:
            query = dict(parse_qsl(request.query, keep_blank_values=True))
            params = dict(query)
            params.update(_form_params(request))
            key_id = self._auth.authenticate(request, query, params)
            if not request.headers.get("authorization", "").startswith(signing.V3_ALGORITHM):
                action = params.get("Action", "")
            if action not in answers:
                raise ApiError(
                    404, "InvalidAction.NotFound", f"Specified api {action!r} is not found."
                )
            if not self._throttle.admit((key_id, action), arrival, self._api.limits[action]):
                raise throttled()
            reply = self._faults.reply() or Reply(
                200, self._encode(answers[action](params)), ok=True
            )
            outcome = "ok" if reply.ok else "error"
        except ApiError as exc:
            error = exc
            if exc.code == "System.LimitControl":
                outcome = "throttled"
                error = throttled(self._api.variants.on("throttle-429"))
            host = request.headers.get("host", HOST_ID)
            reply = Reply(error.status, error_body(host, error), headers=error.headers)
        except Exception:  # a bug here must still answer like a server, not kill the thread
            _log.exception("simulator failed on %s", action or "a request")
            failure = ApiError(500, "InternalError", "The request processing has failed.")
            reply = Reply(500, error_body(request.headers.get("host", HOST_ID), failure))
        self._stats.record(action if action in answers else "other", arrival, outcome)
        self.pause(self._options.latency_s)
        return reply


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with daemon threads, a deep backlog and no reverse DNS at bind."""

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(
        self, host: str, port: int, simulator: Simulator, tls: ssl.SSLContext | None
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.simulator = simulator
        super().__init__((host, port), _Handler)
        if tls is not None:  # handshakes happen in each connection's thread, at its first read
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed TLS handshake or a client that went away is one log line, not a traceback
        on stderr (socketserver's default); anything else keeps the default."""
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError)):
            _log.info("connection from %s failed: %s", client_address[0], type(error).__name__)
            return
        super().handle_error(request, client_address)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time off a keep-alive connection and hands it to the simulator."""

    protocol_version = "HTTP/1.1"
    server_version = "cams-simulator"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this

    @property
    def simulator(self) -> Simulator:
        return cast(_Server, self.server).simulator

    def setup(self) -> None:
        super().setup()
        # small answers on keep-alive connections must not wait for delayed ACKs (Nagle)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.simulator.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.simulator.track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        # query strings can carry a V1 SecurityToken: never log them
        _log.debug("%s %s", self.address_string(), _QUERY.sub("?...", format % args))

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send(Reply(411, json_bytes({"error": "send a Content-Length"})))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._send(Reply(400, json_bytes({"error": "bad or too large Content-Length"})))
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        arrival = time.monotonic()
        parts = urlsplit(self.path)
        body = self._read_body()
        if body is None:
            return
        simulator = self.simulator
        if parts.path.startswith("/_sim/"):
            reply = simulator.handle_admin(self.command, parts.path, body)
        elif parts.path == "/":
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            request = Request(self.command, parts.path, parts.query, headers, body)
            reply = simulator.handle_api(request, arrival)
        else:
            reply = Reply(404, json_bytes({"error": f"no such path: {parts.path}"}))
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.drop == "timeout":
            self.simulator.pause(self.simulator.options.timeout_fault_s)
            self.close_connection = True
            return
        if reply.drop == "reset":
            self.close_connection = True
            try:
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.rfile.close()
                self.connection.close()  # with linger 0: RST, no bytes
            except OSError:
                pass
            return
        self.log_request(reply.status)
        lines = [
            f"{self.protocol_version} {reply.status} {HTTPStatus(reply.status).phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
            *(f"{name}: {value}" for name, value in reply.headers),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        head = "\r\n".join([*lines, "", ""]).encode("latin-1")
        self.wfile.write(head + reply.body)  # one write: headers and body in one segment
