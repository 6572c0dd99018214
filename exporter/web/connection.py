"""One HTTP connection of the web server: its state, its deadlines, reading a request off it
and encoding an answer for it. The loop in `exporter.web.connections` multiplexes them.

A connection waits for a request head (`HEAD`), then for its body (`BODY`), then belongs to a
request thread (`BUSY`) or is answered at once, then waits for the next request (keep-alive)
or lingers (`LINGER`: write side shut, what the client still sends is dropped). Every state
has a deadline; what to answer when it passes is `expiry()`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from exporter.web.protocol import (
    MAX_HEAD_BYTES,
    ProtocolError,
    Request,
    head_end,
    parse_head,
    response_head,
    skip_empty_lines,
)
from exporter.web.routes import Response, request_path

LOG = logging.getLogger("cams_exporter.web")

MAX_BODY_BYTES = 1 << 20
_READ_SIZE = 65536
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


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
    # Credentials refused without a password check are answered this much later: a client
    # guessing passwords gets two answers a second per connection, and a flood of guesses
    # cannot crowd out the scrapes of cached users.
    refusal: float = 0.5


class State(Enum):
    """What a connection waits for."""

    HANDSHAKE = "handshake"
    HEAD = "head"
    BODY = "body"
    BUSY = "busy"  # a request thread owns the socket
    DELAYED = "delayed"  # answered in the loop once its refusal delay is over
    LINGER = "linger"  # write side shut, draining until EOF or the deadline


class Outcome(Enum):
    """How a request thread hands its connection back."""

    KEEP = "keep"  # kept alive: back to waiting for the next request
    LINGER = "linger"  # answered, closing gracefully
    CLOSE = "close"  # broken: close now


@dataclass(frozen=True)
class Refusal:
    """A request answered with `status` and `reason`, then the connection closed."""

    status: int
    reason: str


class Connection:
    """A socket, what was read from it, and where it is in the request/response cycle."""

    __slots__ = (
        "body_seen",
        "body_until",
        "buffer",
        "deadline",
        "events",
        "fd",
        "peer",
        "pending",
        "request",
        "sans",
        "sock",
        "started",
        "state",
        "waiting_since",
    )

    def __init__(self, sock: socket.socket, peer: str, state: State, deadline: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer, self.state, self.deadline = peer, state, deadline
        self.waiting_since = time.monotonic()  # since when it waits for a (next) request
        self.started = False  # a byte of the current request arrived
        self.buffer = bytearray()
        self.request: Request | None = None
        self.body_seen = 0
        self.body_until = 0.0
        self.events = 0  # the selector events it is registered for
        self.sans: tuple[str, ...] | None = None  # client_allowed_sans at its handshake
        self.pending: tuple[Response, float] | None = None  # DELAYED: the answer, when asked

    def receive(self) -> bool:
        """Read what the socket has (dropping it while lingering); False once the peer closed
        or the socket failed."""
        while len(self.buffer) <= MAX_HEAD_BYTES + MAX_BODY_BYTES:
            try:
                data = self.sock.recv(_READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return True
            except (OSError, ValueError):
                return False
            if not data:
                return False
            if self.state is not State.LINGER:
                self.buffer += data
        return True

    def advance(self, now: float, timeouts: Timeouts, tls: bool) -> Request | Refusal | None:
        """Parse what arrived: the complete request (also kept in `request`), a refusal, or
        None while more is needed."""
        if self.state is State.HEAD:
            if not self.started:
                del self.buffer[: skip_empty_lines(self.buffer)]
                if not self.buffer:
                    return None
                if self.buffer[0] == 0x16 and not tls:
                    return Refusal(400, "Client sent a TLS handshake to a plain HTTP server.")
                self.started = True
                self.deadline = min(self.deadline, now + timeouts.head)
            end = head_end(self.buffer)
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    return Refusal(431, "request head larger than 64 KiB")
                return None
            try:
                request = parse_head(self.buffer[:end])
            except ProtocolError as exc:
                return Refusal(exc.status, exc.reason)
            del self.buffer[:end]
            if request.body_length > MAX_BODY_BYTES:
                return Refusal(413, "request body larger than 1 MiB")
            self.request = request
            if request.body_length == 0:
                return request
            self.state = State.BODY
            self.body_seen = len(self.buffer)
            self.body_until = now + timeouts.body_total
            self.deadline = min(self.body_until, now + timeouts.body_stall)
            if request.expect_continue and len(self.buffer) < request.body_length:
                with contextlib.suppress(OSError, ValueError):
                    self.sock.send(_CONTINUE)
        if self.state is State.BODY and self.request is not None:
            if len(self.buffer) >= self.request.body_length:
                del self.buffer[: self.request.body_length]  # no route reads a body
                return self.request
            if len(self.buffer) > self.body_seen:
                self.body_seen = len(self.buffer)
                self.deadline = min(self.body_until, now + timeouts.body_stall)
        return None

    def expiry(self) -> Refusal | None:
        """What to answer once the deadline passed (None: just close)."""
        if self.state is State.BODY:
            return Refusal(400, "request body shorter than its Content-Length")
        if self.state is State.HEAD and self.started:
            return Refusal(408, "request head not received in time")
        return None

    def await_next(self, now: float, timeouts: Timeouts) -> None:
        """Answered and kept alive: wait for the next request."""
        self.state, self.request, self.started = State.HEAD, None, False
        self.waiting_since, self.deadline = now, now + timeouts.idle

    def encode(self, response: Response, stopping: bool) -> tuple[bool, bytes, tuple[bytes, ...]]:
        """(keep alive, the head with a small first chunk, the other chunks) of the answer
        to the current request."""
        request = self.request
        assert request is not None
        keep = request.keep_alive and not stopping
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
        if chunks and len(chunks[0]) <= 16384:
            head, chunks = head + chunks[0], chunks[1:]
        return keep, head, chunks

    def log_answer(self, response: Response, started: float) -> None:
        """One debug line per answered request (never its headers)."""
        request = self.request
        assert request is not None
        LOG.debug(
            "%s %s %s -> %d, %d bytes in %.3fs",
            self.peer,
            request.method,
            request_path(request.target) or "?",
            response.status,
            response.length,
            time.monotonic() - started,
        )


def send_blocking(sock: socket.socket, chunks: Sequence[bytes], timeout: float) -> None:
    """Send every chunk on a socket made blocking for it, with a kernel send timeout.

    A socket with a Python timeout is non-blocking underneath: `sendall` then sends what the
    socket buffer takes, waits in poll and takes the GIL back between partial sends, and every
    time it may wait for whichever thread holds it (a render, a poll worker). A blocking send
    hands the whole chunk to the kernel in one call that lets go of the GIL until it is done
    (a 20 MB body to a client process with three CPU-bound threads around: median 13 ms and
    p95 53 ms, against 97 ms and 221 ms). SO_SNDTIMEO bounds it as the timeout did. The chunks
    go in one gathering `sendmsg` (again only for what a partial send left), not one `sendall`
    each (plain HTTP; TLS sockets have no sendmsg): the GIL is taken back once per send, not
    once per chunk.
    """
    seconds = max(0.001, timeout)
    whole = int(seconds)
    limit = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setblocking(True)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
    try:
        if isinstance(sock, ssl.SSLSocket):  # TLS records are written one buffer at a time
            for chunk in chunks:
                sock.sendall(chunk)
        else:
            _send_gathered(sock, [memoryview(chunk) for chunk in chunks if chunk])
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 0))
        sock.setblocking(False)


def _send_gathered(sock: socket.socket, views: list[memoryview]) -> None:
    """Send every view, in as few `sendmsg` calls as the kernel allows (at most 1024 views each:
    IOV_MAX); a send cut short (a timeout or a signal) resumes where it stopped."""
    while views:
        sent = sock.sendmsg(views[:1024])
        if sent <= 0:
            raise OSError("the connection stopped taking the response")
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]
