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
  (2 s without a byte, 10 s in all), a kept-alive connection may idle 120 s; credentials refused
  without a password check are answered 0.5 s late (from the loop: no thread waits);
- accept errors (EMFILE when the fd limit is reached...) close the longest-idle connection and
  accept again; when every connection is busy, accepting pauses with exponential back-off (5 ms
  to 1 s, as Go's server). Logged once a minute at most, never a busy loop.
Malformed requests get their 4xx at once (see `exporter.web.protocol`), then a lingering close.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import heapq
import itertools
import logging
import selectors
import socket
import ssl
import threading
import time

from exporter.web.connection import Connection, Outcome, Refusal, State, Timeouts
from exporter.web.live import WebSettingsSource
from exporter.web.protocol import Request, error_response
from exporter.web.routes import App, Response
from exporter.web.tls import client_sans_allowed

LOG = logging.getLogger("cams_exporter.web")

__all__ = ["ConnectionLoop", "Timeouts"]

_TICK_S = 0.1
_OWNED = frozenset({State.BUSY, State.DELAYED})  # no deadline of their own
_LOG_EVERY_S = 60.0


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
        self._connections: dict[int, Connection] = {}
        self._ready: list[Connection] = []  # answered in the loop, more requests buffered
        self._delayed: list[tuple[float, int, Connection]] = []  # a heap of (due, n, conn)
        self._sequence = itertools.count()
        self._returned: collections.deque[tuple[Connection, Outcome]] = collections.deque()
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
                timeout = 0.0 if self._ready else _TICK_S
                for due in (self._resume_accept_at, self._delayed[0][0] if self._delayed else None):
                    if due is not None:
                        timeout = max(0.0, min(timeout, due - time.monotonic()))
                for key, _events in self._selector.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.data is None:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._on_event(key.data)
                self._take_back()
                ready, self._ready = self._ready, []
                for conn in ready:
                    if self._connections.get(conn.fd) is conn and conn.state is State.HEAD:
                        self._progress(conn)
                now = time.monotonic()
                self._release_delayed(now)
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

    def _watch(self, conn: Connection, events: int) -> None:
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

    def _add(self, sock: socket.socket, peer: str) -> Connection | None:
        now = time.monotonic()
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls:  # wrapped once the first bytes show a TLS handshake (_handshake)
                conn = Connection(sock, peer, State.HANDSHAKE, now + self._timeouts.handshake)
            else:
                conn = Connection(sock, peer, State.HEAD, now + self._timeouts.head)
        except (OSError, ValueError) as exc:
            LOG.debug("connection from %s dropped at setup: %s", peer, exc)
            sock.close()
            return None
        self._connections[conn.fd] = conn
        self._watch(conn, selectors.EVENT_READ)
        return conn

    def _evictable(self) -> bool:
        return any(c.state is not State.BUSY for c in self._connections.values())

    def _evict(self, log: bool = True, spare: Connection | None = None) -> bool:
        """Close the connections (never `spare`) that have waited longest for a request: one
        sixteenth of the cap at once, so that a stream of new connections pays for one scan per
        batch, not per connection. False if every connection is busy with a request."""
        waiting = [
            c for c in self._connections.values() if c.state is not State.BUSY and c is not spare
        ]
        if not waiting:
            return False
        count = max(1, self._max // 16)
        victims = heapq.nsmallest(
            count, waiting, key=lambda c: (c.state is not State.LINGER, c.waiting_since)
        )
        now = time.monotonic()
        if log and now - self._last_cap_log >= _LOG_EVERY_S:
            self._last_cap_log = now
            LOG.warning(
                "connection limit reached (%d, --web.max-connections): closing the connections "
                "idle longest to make room for new ones",
                self._max,
            )
        for victim in victims:
            self._close(victim)
        return True

    # -- reading ---------------------------------------------------------------------------

    def _on_event(self, conn: Connection) -> None:
        if conn.state is State.HANDSHAKE:
            self._handshake(conn)
        elif conn.state is not State.BUSY:
            self._read(conn)

    def _start_tls(self, conn: Connection) -> bool:
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

    def _handshake(self, conn: Connection) -> None:
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
        conn.state = State.HEAD
        conn.deadline = time.monotonic() + self._timeouts.head
        self._watch(conn, selectors.EVENT_READ)
        self._read(conn)  # the request may already sit decrypted in OpenSSL's buffer

    def _read(self, conn: Connection) -> None:
        if not conn.receive():
            self._close(conn)
        elif conn.state is not State.LINGER:
            self._progress(conn)

    def _progress(self, conn: Connection) -> None:
        step = conn.advance(time.monotonic(), self._timeouts, self._tls)
        if isinstance(step, Refusal):
            self._refuse(conn, step.status, step.reason)
        elif isinstance(step, Request):
            self._admit(conn)

    def _expire(self, now: float) -> None:
        waiting = (c for c in self._connections.values() if c.state not in _OWNED)
        for conn in list(waiting):
            if now < conn.deadline:
                continue
            refusal = conn.expiry()
            if refusal is None:
                self._close(conn)
            else:
                self._refuse(conn, refusal.status, refusal.reason)

    # -- answering -------------------------------------------------------------------------

    def _refuse(self, conn: Connection, status: int, reason: str) -> None:
        LOG.debug("%s: %d %s", conn.peer, status, reason)
        with contextlib.suppress(OSError, ValueError):
            conn.sock.send(error_response(status, reason))
        self._linger(conn)

    def _linger(self, conn: Connection) -> None:
        """Shut the write side and drop what the client still sends until it closes: closing
        with unread data would reset the connection before the client reads the answer."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            self._close(conn)
            return
        conn.state, conn.buffer = State.LINGER, bytearray()
        conn.deadline = time.monotonic() + self._timeouts.linger
        self._watch(conn, selectors.EVENT_READ)

    def _dispatch(self, conn: Connection) -> None:
        conn.state = State.BUSY
        self._watch(conn, 0)
        thread = threading.Thread(target=self._serve, args=(conn,), name="web-request")
        thread.daemon = True
        try:
            thread.start()
        except RuntimeError:  # cannot start a thread (resources exhausted)
            self._refuse(conn, 503, "server overloaded")

    def _admit(self, conn: Connection) -> None:
        """Answer at once what needs no thread (429, 401 from the cache; refused credentials
        after the refusal delay); dispatch the rest."""
        assert conn.request is not None
        started = time.monotonic()
        response = self._app.admit(conn.request.headers)
        if response is None:
            self._dispatch(conn)
        elif response.delayed and self._timeouts.refusal > 0:
            conn.state, conn.pending = State.DELAYED, (response, started)
            self._watch(conn, 0)
            due = started + self._timeouts.refusal
            heapq.heappush(self._delayed, (due, next(self._sequence), conn))
        else:
            self._answer(conn, response, started)

    def _release_delayed(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, conn = heapq.heappop(self._delayed)
            if self._connections.get(conn.fd) is conn and conn.state is State.DELAYED:
                assert conn.pending is not None
                (response, started), conn.pending = conn.pending, None
                self._answer(conn, response, started)

    def _answer(self, conn: Connection, response: Response, started: float) -> None:
        """Send a short answer from the loop; a client not reading it is not waited for."""
        keep, head, chunks = conn.encode(response, self._stopping.is_set())
        data = head + b"".join(chunks)
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except (OSError, ValueError):
            sent = -1
        if sent < len(data):
            self._close(conn)
            return
        conn.log_answer(response, started)
        if not keep:
            self._linger(conn)
            return
        self._await_next(conn)
        if conn.buffer:
            self._ready.append(conn)  # a pipelined request: next turn of the loop

    def _await_next(self, conn: Connection) -> None:
        conn.await_next(time.monotonic(), self._timeouts)
        self._watch(conn, selectors.EVENT_READ)

    def _serve(self, conn: Connection) -> None:
        """In the request's own thread: respond, then hand the connection back."""
        request = conn.request
        assert request is not None
        started = time.monotonic()
        try:
            response = self._app.respond(
                request.method, request.target, request.headers, admitted=True
            )
            keep, head, chunks = conn.encode(response, self._stopping.is_set())
            conn.sock.settimeout(self._timeouts.write)
            conn.sock.sendall(head)
            for chunk in chunks:
                conn.sock.sendall(chunk)
            conn.sock.setblocking(False)
            outcome = Outcome.KEEP if keep else Outcome.LINGER
            conn.log_answer(response, started)
        except (OSError, ValueError) as exc:
            LOG.debug("%s: connection ended while answering: %s", conn.peer, exc)
            outcome = Outcome.CLOSE
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
            if outcome is Outcome.CLOSE:
                self._close(conn)
            elif outcome is Outcome.LINGER:
                self._linger(conn)
            else:
                self._await_next(conn)
                self._read(conn)  # a pipelined request, or TLS data OpenSSL already holds

    # -- closing ---------------------------------------------------------------------------

    def _close(self, conn: Connection) -> None:
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
            if conn.state is State.BUSY:
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
