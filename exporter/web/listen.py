"""The listening socket: parsing `--web.listen-address` and binding it with a deep backlog.

`HOST:PORT`, `:PORT` (every interface, IPv6 and IPv4 on one dual-stack socket when the host
has IPv6, as Go's listener does) or `[IPV6]:PORT`. The backlog is 4096 (the kernel caps it at
`net.core.somaxconn`): a burst of connects waits in the kernel's queue instead of having its
SYNs dropped (socketserver's default of 5 made a burst of 300 stall for seconds).
`DEFAULT_MAX_CONNECTIONS` is how many accepted connections the server keeps open at most unless
told otherwise (`--web.max-connections`, 512 as in Prometheus).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

BACKLOG = 4096
DEFAULT_MAX_CONNECTIONS = 512


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split "HOST:PORT", ":PORT" or "[IPV6]:PORT" into (host, port); host "" is every interface.

    Raises ValueError with one line on anything else.
    """
    expected = "expected HOST:PORT, :PORT or [IPV6]:PORT"
    prefix = f"invalid listen address {address!r}"
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f"{prefix}: missing ']' ({expected})")
        host, rest = address[1:end], address[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{prefix}: {host!r} is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise ValueError(f"{prefix}: missing port ({expected})")
        port_text = rest[1:]
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep:
            raise ValueError(f"{prefix}: missing port ({expected})")
        if ":" in host:
            raise ValueError(f"{prefix}: an IPv6 address must be in brackets, e.g. [::1]:10731")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"{prefix}: port {port_text!r} is not a number ({expected})")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{prefix}: port {port} is out of range (0-65535)")
    return host, port


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _listen(family: int, sockaddr: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # "::" means every interface, IPv4 included; a specific IPv6 address only itself.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(sockaddr[0] != "::"))
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind(address: str) -> socket.socket:
    """A non-blocking listening socket for `address`.

    Raises ValueError (one line) for an address that does not parse or resolve, OSError (one
    line naming the address) when it cannot be bound.
    """
    host, port = parse_listen_address(address)
    candidates: list[tuple[int, tuple[Any, ...]]] = []
    if host == "":
        if socket.has_ipv6:
            candidates.append((socket.AF_INET6, ("::", port)))
        candidates.append((socket.AF_INET, ("0.0.0.0", port)))
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise ValueError(
                f"invalid listen address {address!r}: cannot resolve {host!r}: {exc.strerror}"
            ) from None
        candidates = [(info[0], info[4]) for info in infos[:1]]
    error: OSError | None = None
    for family, sockaddr in candidates:
        try:
            return _listen(family, sockaddr)
        except OSError as exc:
            error = exc
    assert error is not None
    raise OSError(error.errno, _one_line(f"cannot listen on {address}: {error.strerror or error}"))
