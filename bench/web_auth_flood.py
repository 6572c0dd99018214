"""Basic auth under a flood of wrong passwords, measured on 127.0.0.1.

    python bench/web_auth_flood.py [--results-dir DIR] [--seconds 20] [--flooders 8]

A real exporter process with a web config of one user (a bcrypt hash of cost 10, what
`htpasswd -B` makes). A legitimate scraper whose credentials are cached (it scraped once
before) GETs /metrics 10 times a second; first alone, then while `--flooders` clients each send
wrong passwords as fast as they are answered (every one distinct, so none is answered from the
cache). Prints the scraper's p50/p99/max in both phases, what the flood was answered (401, or
429 while the password-check queue is full), and what a first, not yet cached, legitimate
scrape meets during the flood.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import bcrypt

if __package__ in (None, ""):  # `python bench/web_auth_flood.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness
from tests.kit.procs import HOST, ROOT, Children, start_exporter

USER = "prometheus"
PASSWORD = "scrape-me-please"
OTHER = "second-user"


def _request(user: str, password: str) -> bytes:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (
        f"GET /metrics HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {token}\r\n\r\n"
    ).encode()


def _read_response(sock: socket.socket) -> int:
    """Read one response (Content-Length framed); its status."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return int(head.split()[1])


def scraper(
    port: int, seconds: float, user: str = USER, password: str = PASSWORD
) -> dict[str, Any]:
    """10 scrapes a second on one kept-alive connection; latency of each."""
    times: list[float] = []
    statuses: dict[int, int] = {}
    request = _request(user, password)
    end = time.monotonic() + seconds
    sock = socket.create_connection((HOST, port), timeout=30)
    try:
        while time.monotonic() < end:
            began = time.monotonic()
            sock.sendall(request)
            status = _read_response(sock)
            times.append(time.monotonic() - began)
            statuses[status] = statuses.get(status, 0) + 1
            time.sleep(max(0.0, 0.1 - (time.monotonic() - began)))
    finally:
        sock.close()
    return {
        "n": len(times),
        "statuses": statuses,
        "p50_ms": harness.percentile(times, 50) * 1000,
        "p99_ms": harness.percentile(times, 99) * 1000,
        "max_ms": max(times) * 1000,
    }


class Flood:
    """`clients` threads sending distinct wrong passwords for the real user name."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._counter = itertools.count()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection((HOST, self.port), timeout=30) as sock:
                    while not self._stop.is_set():
                        sock.sendall(_request(USER, f"guess-{next(self._counter)}"))
                        status = _read_response(sock)
                        with self._lock:
                            self.statuses[status] = self.statuses.get(status, 0) + 1
            except OSError:
                continue


def first_scrape(port: int) -> dict[str, Any]:
    """A legitimate user's first scrape (not cached yet): its status and time."""
    began = time.monotonic()
    with socket.create_connection((HOST, port), timeout=60) as sock:
        sock.sendall(_request(OTHER, PASSWORD))
        status = _read_response(sock)
    return {"status": status, "ms": (time.monotonic() - began) * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--flooders", type=int, default=8)
    args = parser.parse_args(argv)
    logs = args.results_dir / "web-auth-flood-logs"
    for old in logs.glob("*.log"):
        old.unlink()  # this run's logs only
    children = Children(logs)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    results: dict[str, Any] = {"machine": harness.machine_info(), "flooders": args.flooders}
    try:
        sim = harness.start_simulator(children, "simulator", ["--templates", "20", "--static"])
        args.results_dir.mkdir(parents=True, exist_ok=True)
        config = args.results_dir / "web-auth-flood-config.yaml"
        config.write_text(
            harness.exporter_config(
                endpoint=sim.url, names=["main"], qps=40, list_qps=4, interval_s=3600
            )
        )
        web = args.results_dir / "web-auth-flood-web.yaml"
        web.write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n  {OTHER}: '{hashed}'\n")
        exporter = children.add(
            start_exporter(
                children.log_dir / "exporter.log",
                "--config.file",
                str(config),
                "--web.config.file",
                str(web),
                new_session=True,
            )
        )
        port = exporter.port
        harness.wait_for("exporter up", lambda: scraper(port, 0.01)["statuses"].get(200), 60)
        results["alone"] = scraper(port, args.seconds)
        flood = Flood(port, args.flooders)
        flood.start()
        time.sleep(1.0)  # the flood at full speed before measuring
        results["first_scrape_during_flood"] = first_scrape(port)
        results["during_flood"] = scraper(port, args.seconds)
        flood.stop()
        results["flood_answers"] = flood.statuses
        results["exporter_cpu_s"] = exporter.child.cpu_s()
    finally:
        children.stop_all()
    (args.results_dir / "web-auth-flood.json").write_text(json.dumps(results, indent=2))
    alone, during = results["alone"], results["during_flood"]
    first = results["first_scrape_during_flood"]
    print("| cached legitimate scrape | n | p50 ms | p99 ms | max ms | statuses |")
    print("|---|---|---|---|---|---|")
    for name, row in (("alone", alone), (f"during a flood of {args.flooders} clients", during)):
        print(
            f"| {name} | {row['n']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} "
            f"| {row['max_ms']:.1f} | {row['statuses']} |"
        )
    met = during["p99_ms"] < 100 and set(during["statuses"]) == {200}
    print(f"\ntarget p99 < 100 ms during the flood: {'met' if met else 'NOT met'}")
    print(f"flood answered: {results['flood_answers']}")
    print(
        "first (uncached) legitimate scrape during the flood: "
        f"{first['status']} in {first['ms']:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    harness.run_main(main)
