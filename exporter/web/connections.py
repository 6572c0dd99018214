"""The connection loop of the web server: one event loop for connections, a thread per request.

One thread (`cams-exporter-web`) owns every connection: it accepts, runs TLS handshakes and
reads request heads and bodies without blocking, so a connection that sends nothing, or a
header line every few seconds (slowloris), costs a socket and a buffer, never a thread. Only a
complete request goes to a thread of its own, which writes the response and hands a kept-alive
connection back to the loop. Limits, all on the loop's clock:
- at most `max_connections` open (default 512, as Prometheus' `--web.max-connections`); a
  connection beyond that takes the place of the one that has waited longest for a request
  (idle keep-alive or slow head), as nginx reuses its idle connections; only when every one is
  busy with a request do new connections wait in the kernel's backlog;
- a TLS handshake and a request head must each complete within 10 s, a body must keep coming
  (2 s without a byte, 10 s in all), a kept-alive connection may idle 120 s;
- accept errors (EMFILE when the fd limit is reached...) close the longest-idle connection and
  accept again; when every connection is busy, accepting pauses with exponential back-off (5 ms
  to 1 s, as Go's server). Logged once a minute at most, never a busy loop.
Malformed requests get their 4xx at once (see `exporter.web.protocol`), then a lingering close.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from enum import Enum

from exporter.web.live import WebSettingsSource
from exporter.web.protocol import (
    MAX_HEAD_BYTES,
    ProtocolError,
    Request,
    error_response,
    head_end,
    parse_head,
    response_head,
    skip_empty_lines,
)
from exporter.web.routes import App, request_path
from exporter.web.tls import client_sans_allowed

LOG = logging.getLogger("cams_exporter.web")

MAX_BODY_BYTES = 1 << 20
_READ_SIZE = 65536
_TICK_S = 0.1
_LOG_EVERY_S = 60.0


@dataclass(frozen=True)
class Timeouts:
    """The server's deadlines, in seconds."""

    handshake: float = 10.0  # accept -> TLS handshake done
    head: float = 10.0  # first byte (or accept) -> whole request head
    body_stall: float = 2.0  # longest pause in a request body
    body_total: float = 10.0  # request head -> whole body
    idle: float = 120.0  # keep-alive: response written -> first byte of the next request
    write: float = 60.0  # longest a single send of a response may block
    linger: float = 2.0  # after the last response: reading and dropping what the client sends


class _State(Enum):
    HANDSHAKE = "handshake"
    HEAD = "head"
    BODY = "body"
    BUSY = "busy"  # a request thread owns the socket
    LINGER = "linger"  # write side shut, draining until EOF or the deadline


class _Outcome(Enum):
    KEEP = "keep"  # kept alive: back to waiting for the next request
    LINGER = "linger"  # answered, closing gracefully
    CLOSE = "close"  # broken: close now


class _Connection:
    __slots__ = (
        "body_seen",
        "body_until",
        "buffer",
        "deadline",
        "events",
        "fd",
        "peer",
        "request",
        "sans",
        "sock",
        "started",
        "state",
        "waiting_since",
    )

    def __init__(self, sock: socket.socket, peer: str, state: _State, deadline: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.state = state
        self.deadline = deadline
        self.waiting_since = time.monotonic()
        self.started = False  # a byte of the current request arrived
        self.buffer = bytearray()
        self.request: Request | None = None
        self.body_seen = 0
        self.body_until = 0.0
        self.events = 0
        self.sans: tuple[str, ...] | None = None


def _peer(address: object) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else "?"


class ConnectionLoop:
    """Accepts and reads connections for one listening socket; see the module docstring."""

    def __init__(
        self,
        listener: socket.socket,
        app: App,
        settings: WebSettingsSource,
        tls: bool,
        max_connections: int,
        timeouts: Timeouts,
    ) -> None:
        self._listener = listener
        self._app = app
        self._settings = settings
        self._tls = tls
        self._max = max_connections
        self._timeouts = timeouts
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._connections: dict[int, _Connection] = {}
        self._returned: collections.deque[tuple[_Connection, _Outcome]] = collections.deque()
        self._returned_lock = threading.Lock()
        self._finished = False  # the loop closed everything; request threads close their own
        self._stopping = threading.Event()
        self._accepting = False
        self._resume_accept_at: float | None = None  # back-off after an accept error
        self._backoff = 0.0
        self._accept_errors = 0
        self._last_accept_log = -_LOG_EVERY_S
        self._last_cap_log = -_LOG_EVERY_S
        self._next_tick = 0.0

    @property
    def open_connections(self) -> int:
        """Connections open now (read from another thread: an estimate)."""
        return len(self._connections)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until `stop()`; then close every connection."""
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._set_accepting(True)
        try:
            while not self._stopping.is_set():
                timeout = _TICK_S
                if self._resume_accept_at is not None:
                    timeout = max(0.0, min(timeout, self._resume_accept_at - time.monotonic()))
                for key, _events in self._selector.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.data is None:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._on_event(key.data)
                self._take_back()
                now = time.monotonic()
                if now >= self._next_tick:
                    self._next_tick = now + _TICK_S
                    self._expire(now)
                if self._resume_accept_at is not None and now >= self._resume_accept_at:
                    self._resume_accept_at = None
                    self._set_accepting(True)
        finally:
            self._close_all()

    def close(self) -> None:
        """Release the sockets of a loop that never ran."""
        self._close_all()

    def stop(self) -> None:
        """Ask the loop to end (from any thread)."""
        self._stopping.set()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _set_accepting(self, on: bool) -> None:
        if on and not self._accepting:
            self._selector.register(self._listener, selectors.EVENT_READ, None)
        elif not on and self._accepting:
            self._selector.unregister(self._listener)
        self._accepting = on

    def _watch(self, conn: _Connection, events: int) -> None:
        if conn.events == events:
            return
        if conn.events == 0:
            self._selector.register(conn.sock, events, conn)
        elif events == 0:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    # -- accepting -------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(64):
            if len(self._connections) >= self._max and not self._evictable():
                self._set_accepting(False)  # every connection is busy: new ones wait
                return
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                if self._accept_failed(exc):
                    continue  # room was made: try again at once
                return
            self._backoff = 0.0
            conn = self._add(sock, _peer(address))
            if conn is not None and len(self._connections) > self._max:
                self._evict(spare=conn)

    def _accept_failed(self, exc: OSError) -> bool:
        """EMFILE and the like: close the longest-idle connection (True) or, when every one is
        busy, pause accepting with exponential back-off (False). Logged once a minute."""
        self._accept_errors += 1
        now = time.monotonic()
        if now - self._last_accept_log >= _LOG_EVERY_S:
            self._last_accept_log = now
            LOG.error(
                "cannot accept connections (%d times since the last report): %s; closing "
                "idle connections and retrying with back-off (%d open; raise the open-files "
                "limit or lower --web.max-connections)",
                self._accept_errors,
                exc.strerror or exc,
                len(self._connections),
            )
            self._accept_errors = 0
        if self._evict(log=False):
            return True
        self._backoff = min(1.0, self._backoff * 2 or 0.005)
        self._set_accepting(False)
        self._resume_accept_at = now + self._backoff
        return False

    def _add(self, sock: socket.socket, peer: str) -> _Connection | None:
        now = time.monotonic()
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls:  # wrapped once the first bytes show a TLS handshake (_handshake)
                conn = _Connection(sock, peer, _State.HANDSHAKE, now + self._timeouts.handshake)
            else:
                conn = _Connection(sock, peer, _State.HEAD, now + self._timeouts.head)
        except (OSError, ValueError) as exc:
            LOG.debug("connection from %s dropped at setup: %s", peer, exc)
            sock.close()
            return None
        self._connections[conn.fd] = conn
        self._watch(conn, selectors.EVENT_READ)
        return conn

    def _evictable(self) -> bool:
        return any(c.state is not _State.BUSY for c in self._connections.values())

    def _evict(self, log: bool = True, spare: _Connection | None = None) -> bool:
        """Close the connection (other than `spare`) that has waited longest for a request;
        False if every one is busy."""
        waiting = [
            c for c in self._connections.values() if c.state is not _State.BUSY and c is not spare
        ]
        if not waiting:
            return False
        victim = min(waiting, key=lambda c: (c.state is not _State.LINGER, c.waiting_since))
        now = time.monotonic()
        if log and now - self._last_cap_log >= _LOG_EVERY_S:
            self._last_cap_log = now
            LOG.warning(
                "%d connections open (--web.max-connections): closing the ones idle longest "
                "to make room for new ones",
                len(self._connections),
            )
        self._close(victim)
        return True

    # -- reading ---------------------------------------------------------------------------

    def _on_event(self, conn: _Connection) -> None:
        if conn.state is _State.HANDSHAKE:
            self._handshake(conn)
        elif conn.state is not _State.BUSY:
            self._read(conn)

    def _start_tls(self, conn: _Connection) -> bool:
        """Wrap the socket once the client spoke: a TLS handshake is wrapped with the settings
        in force now, plain HTTP gets a 400 saying so (as Go's server does), anything else is
        closed. True when the handshake can go on."""
        try:
            first = conn.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self._close(conn)
            return False
        if first != b"\x16":  # not a TLS handshake record
            if first.isalpha():
                self._refuse(conn, 400, "Client sent an HTTP request to an HTTPS server.")
            else:
                self._close(conn)
            return False
        settings = self._settings.current()
        assert settings.ssl_context is not None
        self._watch(conn, 0)
        try:
            conn.sock = settings.ssl_context.wrap_socket(
                conn.sock, server_side=True, do_handshake_on_connect=False
            )
        except (OSError, ValueError) as exc:
            LOG.debug("TLS setup for %s failed: %s", conn.peer, exc)
            self._close(conn)
            return False
        conn.sans = settings.config.client_allowed_sans
        self._watch(conn, selectors.EVENT_READ)
        return True

    def _handshake(self, conn: _Connection) -> None:
        if not isinstance(conn.sock, ssl.SSLSocket) and not self._start_tls(conn):
            return
        assert isinstance(conn.sock, ssl.SSLSocket)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        except (OSError, ValueError) as exc:
            LOG.debug("TLS handshake with %s failed: %s", conn.peer, exc)
            self._close(conn)
            return
        if not client_sans_allowed(conn.sock, conn.sans):
            LOG.debug("client certificate of %s has none of client_allowed_sans", conn.peer)
            self._close(conn)
            return
        conn.state = _State.HEAD
        conn.deadline = time.monotonic() + self._timeouts.head
        self._watch(conn, selectors.EVENT_READ)
        self._read(conn)  # the request may already sit decrypted in OpenSSL's buffer

    def _read(self, conn: _Connection) -> None:
        limit = MAX_HEAD_BYTES + MAX_BODY_BYTES
        while len(conn.buffer) <= limit:
            try:
                data = conn.sock.recv(_READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (OSError, ValueError):
                self._close(conn)
                return
            if not data:
                self._close(conn)
                return
            if conn.state is _State.LINGER:
                continue  # drained and dropped
            conn.buffer += data
        if conn.state is not _State.LINGER:
            self._progress(conn)

    def _progress(self, conn: _Connection) -> None:
        now = time.monotonic()
        if conn.state is _State.HEAD:
            if not conn.started:
                del conn.buffer[: skip_empty_lines(conn.buffer)]
                if not conn.buffer:
                    return
                if conn.buffer[0] == 0x16 and not self._tls:
                    self._refuse(conn, 400, "Client sent a TLS handshake to a plain HTTP server.")
                    return
                conn.started = True
                conn.deadline = min(conn.deadline, now + self._timeouts.head)
            end = head_end(conn.buffer)
            if end < 0:
                if len(conn.buffer) > MAX_HEAD_BYTES:
                    self._refuse(conn, 431, "request head larger than 64 KiB")
                return
            try:
                request = parse_head(conn.buffer[:end])
            except ProtocolError as exc:
                self._refuse(conn, exc.status, exc.reason)
                return
            del conn.buffer[:end]
            if request.body_length > MAX_BODY_BYTES:
                self._refuse(conn, 413, "request body larger than 1 MiB")
                return
            conn.request = request
            if request.body_length == 0:
                self._dispatch(conn)
                return
            conn.state = _State.BODY
            conn.body_seen = len(conn.buffer)
            conn.body_until = now + self._timeouts.body_total
            conn.deadline = min(conn.body_until, now + self._timeouts.body_stall)
            if request.expect_continue and len(conn.buffer) < request.body_length:
                with contextlib.suppress(OSError, ValueError):
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if conn.state is _State.BODY:
            assert conn.request is not None
            if len(conn.buffer) >= conn.request.body_length:
                del conn.buffer[: conn.request.body_length]  # no route reads a body
                self._dispatch(conn)
            elif len(conn.buffer) > conn.body_seen:
                conn.body_seen = len(conn.buffer)
                conn.deadline = min(conn.body_until, now + self._timeouts.body_stall)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._connections.values() if c.state is not _State.BUSY]:
            if now < conn.deadline:
                continue
            if conn.state is _State.BODY:
                self._refuse(conn, 400, "request body shorter than its Content-Length")
            elif conn.state is _State.HEAD and conn.started:
                self._refuse(conn, 408, "request head not received in time")
            else:
                self._close(conn)

    # -- answering -------------------------------------------------------------------------

    def _refuse(self, conn: _Connection, status: int, reason: str) -> None:
        LOG.debug("%s: %d %s", conn.peer, status, reason)
        with contextlib.suppress(OSError, ValueError):
            conn.sock.send(error_response(status, reason))
        self._linger(conn)

    def _linger(self, conn: _Connection) -> None:
        """Shut the write side and drop what the client still sends until it closes: closing
        with unread data would reset the connection before the client reads the answer."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            self._close(conn)
            return
        conn.state, conn.buffer = _State.LINGER, bytearray()
        conn.deadline = time.monotonic() + self._timeouts.linger
        self._watch(conn, selectors.EVENT_READ)

    def _dispatch(self, conn: _Connection) -> None:
        conn.state = _State.BUSY
        self._watch(conn, 0)
        thread = threading.Thread(target=self._serve, args=(conn,), name="web-request")
        thread.daemon = True
        try:
            thread.start()
        except RuntimeError:  # cannot start a thread (resources exhausted)
            self._refuse(conn, 503, "server overloaded")

    def _serve(self, conn: _Connection) -> None:
        """In the request's own thread: respond, then hand the connection back."""
        request = conn.request
        assert request is not None
        started = time.monotonic()
        try:
            response = self._app.respond(request.method, request.target, request.headers)
            keep = request.keep_alive and not self._stopping.is_set()
            headers = [
                ("Content-Type", response.content_type),
                ("Content-Length", str(response.length)),
                *response.headers,
            ]
            if not keep:
                headers.append(("Connection", "close"))
            elif request.version == (1, 0):
                headers.append(("Connection", "keep-alive"))
            head = response_head(response.status, headers)
            chunks = () if request.method == "HEAD" else response.chunks
            conn.sock.settimeout(self._timeouts.write)
            if chunks and len(chunks[0]) <= 16384:
                head, chunks = head + chunks[0], chunks[1:]
            conn.sock.sendall(head)
            for chunk in chunks:
                conn.sock.sendall(chunk)
            conn.sock.setblocking(False)
            outcome = _Outcome.KEEP if keep else _Outcome.LINGER
            LOG.debug(
                "%s %s %s -> %d, %d bytes in %.3fs",
                conn.peer,
                request.method,
                request_path(request.target) or "?",
                response.status,
                response.length,
                time.monotonic() - started,
            )
        except (OSError, ValueError) as exc:
            LOG.debug("%s: connection ended while answering: %s", conn.peer, exc)
            outcome = _Outcome.CLOSE
        with self._returned_lock:
            if not self._finished:
                self._returned.append((conn, outcome))
                self._wake()
                return
        with contextlib.suppress(OSError):
            conn.sock.close()  # the loop is gone and will not take it back

    def _take_back(self) -> None:
        while True:
            with self._returned_lock:
                if not self._returned:
                    return
                conn, outcome = self._returned.popleft()
            if self._connections.get(conn.fd) is not conn:
                continue
            if outcome is _Outcome.CLOSE:
                self._close(conn)
            elif outcome is _Outcome.LINGER:
                self._linger(conn)
            else:
                now = time.monotonic()
                conn.state, conn.request, conn.started = _State.HEAD, None, False
                conn.waiting_since, conn.deadline = now, now + self._timeouts.idle
                self._watch(conn, selectors.EVENT_READ)
                self._read(conn)  # a pipelined request, or TLS data OpenSSL already holds

    # -- closing ---------------------------------------------------------------------------

    def _close(self, conn: _Connection) -> None:
        if conn.events:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(conn.sock)
            conn.events = 0
        if self._connections.get(conn.fd) is conn:
            del self._connections[conn.fd]
        with contextlib.suppress(OSError):
            conn.sock.close()
        if not self._accepting and self._resume_accept_at is None and not self._stopping.is_set():
            self._set_accepting(True)  # room again for the connections waiting in the backlog

    def _close_all(self) -> None:
        with self._returned_lock:
            self._finished = True
            returned = [conn for conn, _ in self._returned]
            self._returned.clear()
        for conn in returned:
            with contextlib.suppress(OSError):
                conn.sock.close()
        for conn in list(self._connections.values()):
            if conn.state is _State.BUSY:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)  # its request thread fails and stops
            else:
                self._close(conn)
        self._connections.clear()
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._selector.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
