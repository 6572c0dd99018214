"""A static file server for the scrape baseline: the same bytes the exporter sent, nothing else.

    python bench/static_server.py --listen 127.0.0.1:PORT --plain FILE --gzip FILE

PORT 0 takes a free port; the line `static server listening on http://HOST:PORT` on stdout says
which, once the socket listens.

Serves GET /metrics with FILE's bytes read once at start: the gzip file when the request has
`Accept-Encoding: gzip`, the plain one otherwise. It uses the same stack as the exporter's web
server (the standard library's ThreadingHTTPServer, HTTP/1.1 keep-alive, Content-Length, Nagle
off, one `write` of the body), so the difference between the two is the exporter's own work.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _handler(plain: bytes, zipped: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            gz = "gzip" in self.headers.get("Accept-Encoding", "")
            body = zipped if gz else plain
            self.send_response(200)
            self.send_header("Content-Type", _CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Vary", "Accept-Encoding")
            if gz:
                self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--plain", required=True, type=Path)
    parser.add_argument("--gzip", required=True, type=Path)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--listen must be a loopback address")
    server = ThreadingHTTPServer(
        (host, int(port)), _handler(args.plain.read_bytes(), args.gzip.read_bytes())
    )
    server.daemon_threads = True
    bound_host, bound_port = server.server_address[:2]
    print(f"static server listening on http://{bound_host}:{bound_port}", flush=True)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    done.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
