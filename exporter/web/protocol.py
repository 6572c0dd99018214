"""HTTP/1.x on the wire: parsing a request head and writing a response head, nothing else.

Pure functions over bytes, so the server's event loop can parse without a thread per
connection and every rule is unit-testable. The parser is strict where leniency lets requests
be smuggled or servers be held (RFC 9112): an HTTP/1.1 request needs exactly one `Host`,
HTTP/0.9 (`GET /` without a version) is refused, header names are tokens with no space before
the colon, obsolete line folding is refused, `Content-Length` must be one decimal number and
cannot come with `Transfer-Encoding`. Every refusal is a `ProtocolError` carrying the status to
answer (400, 417, 431, 505) and a one-line reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class ProtocolError(Exception):
    """A request that cannot be served: answer `status` with `reason`, then close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class RequestHeaders:
    """Header fields in arrival order, names lower-cased."""

    items: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        """The first value of `name`, or None."""
        name = name.lower()
        for key, value in self.items:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, in order."""
        name = name.lower()
        return [value for key, value in self.items if key == name]

    def joined(self, name: str) -> str:
        """All values of `name` as one comma-separated list (how repeated fields combine)."""
        return ", ".join(self.get_all(name))


@dataclass(frozen=True)
class Request:
    """A parsed request head; the body (if any) is `body_length` bytes after it."""

    method: str
    target: str
    version: tuple[int, int]
    headers: RequestHeaders
    body_length: int = 0
    unsized_body: bool = False  # Transfer-Encoding: chunked, not read: the connection closes
    keep_alive: bool = True
    expect_continue: bool = False


def skip_empty_lines(buffer: bytes | bytearray) -> int:
    """How many leading bytes are CR/LF (empty lines before a request line are ignored)."""
    count = 0
    for byte in buffer:
        if byte not in (0x0D, 0x0A):
            break
        count += 1
    return count


def head_end(buffer: bytes | bytearray) -> int:
    """The index just after the blank line ending the head, or -1 if it has not arrived."""
    ends = [
        index + len(marker)
        for marker in (b"\r\n\r\n", b"\n\n", b"\n\r\n")
        if (index := buffer.find(marker)) >= 0
    ]
    return min(ends) if ends else -1


def _content_length(values: list[str]) -> int:
    numbers = {part.strip() for value in values for part in value.split(",")}
    if len(numbers) != 1:
        raise ProtocolError(400, "conflicting Content-Length values")
    text = numbers.pop()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise ProtocolError(400, f"invalid Content-Length {text[:20]!r}")
    return int(text)


def _request_line(line: str) -> tuple[str, str, tuple[int, int]]:
    parts = line.split(" ")
    if len(parts) == 2 and parts[1].startswith("/"):
        raise ProtocolError(400, "HTTP/0.9 requests are not supported")
    if len(parts) != 3:
        raise ProtocolError(400, "malformed request line")
    method, target, version_text = parts
    if not _TOKEN.fullmatch(method):
        raise ProtocolError(400, "malformed request method")
    if not target or _BAD_TARGET.search(target):
        raise ProtocolError(400, "malformed request target")
    match = _VERSION.fullmatch(version_text)
    if match is None:
        raise ProtocolError(400, "malformed HTTP version")
    major, minor = int(match.group(1)), int(match.group(2))
    if major != 1:
        raise ProtocolError(505, f"HTTP/{major}.{minor} is not supported (HTTP/1.1 only)")
    return method, target, (1, min(minor, 1))


def _header_fields(lines: list[str]) -> RequestHeaders:
    if len(lines) > MAX_HEADERS:
        raise ProtocolError(431, f"more than {MAX_HEADERS} header fields")
    items = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            raise ProtocolError(400, "obsolete header line folding")
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise ProtocolError(400, "malformed header field")
        value = value.strip(" \t")
        if _BAD_VALUE.search(value):
            raise ProtocolError(400, f"control character in header field {name}")
        items.append((name.lower(), value))
    return RequestHeaders(tuple(items))


def parse_head(head: bytes | bytearray) -> Request:
    """Parse a request head (request line, header fields, the blank line); raises
    ProtocolError for anything the server must refuse."""
    if len(head) > MAX_HEAD_BYTES:
        raise ProtocolError(431, "request head larger than 64 KiB")
    lines = [line.removesuffix("\r") for line in bytes(head).decode("latin-1").split("\n")]
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ProtocolError(400, "empty request")
    method, target, version = _request_line(lines[0])
    headers = _header_fields(lines[1:])

    hosts = headers.get_all("host")
    if version == (1, 1) and not hosts:
        raise ProtocolError(400, "missing Host header")
    if len(hosts) > 1:
        raise ProtocolError(400, "more than one Host header")

    lengths = headers.get_all("content-length")
    codings = [
        c.strip().lower() for v in headers.get_all("transfer-encoding") for c in v.split(",")
    ]
    body_length = 0
    unsized = False
    if codings:
        if lengths:
            raise ProtocolError(400, "both Transfer-Encoding and Content-Length")
        if version == (1, 0) or codings[-1] != "chunked":
            raise ProtocolError(400, "unsupported Transfer-Encoding")
        unsized = True
    elif lengths:
        body_length = _content_length(lengths)

    connection = {t.strip().lower() for v in headers.get_all("connection") for t in v.split(",")}
    keep_alive = "close" not in connection and (version == (1, 1) or "keep-alive" in connection)

    expect = headers.joined("expect").strip().lower()
    if expect and expect != "100-continue":
        raise ProtocolError(417, "unsupported Expect")
    return Request(
        method=method,
        target=target,
        version=version,
        headers=headers,
        body_length=body_length,
        unsized_body=unsized,
        keep_alive=keep_alive and not unsized,
        expect_continue=bool(expect) and body_length > 0,
    )


def reason_phrase(status: int) -> str:
    """The standard reason phrase of `status` ("Unknown" when there is none)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def response_head(
    status: int, headers: list[tuple[str, str]] | tuple[tuple[str, str], ...], date: str = ""
) -> bytes:
    """The status line and header fields of an HTTP/1.1 response, ending with the blank line."""
    lines = [f"HTTP/1.1 {status} {reason_phrase(status)}", "Server: cams-exporter"]
    lines.append(f"Date: {date or formatdate(usegmt=True)}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_response(status: int, reason: str) -> bytes:
    """A whole short text/plain response that closes the connection."""
    body = (reason.replace("\r", " ").replace("\n", " ") + "\n").encode("utf-8")
    head = response_head(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
    )
    return head + body
