"""Time the demo: process start to /-/ready, and the scrape time of its /metrics.

    python bench/demo_timing.py [--scrapes 200]

Starts `python -m exporter --demo` on a free loopback port, waits for /-/ready to answer 200,
then GETs /metrics sequentially over one keep-alive connection and prints the median and p99.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time

import requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        session = requests.Session()
        deadline = started + 60
        while True:
            try:
                if session.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                print("demo not ready within 60 s", file=sys.stderr)
                return 1
            time.sleep(0.02)
        ready = time.monotonic() - started
        times = []
        size = 0
        for _ in range(args.scrapes):
            t0 = time.perf_counter()
            response = session.get(f"{url}/metrics", timeout=10)
            times.append(time.perf_counter() - t0)
            size = len(response.content)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"demo time to ready: {ready:.2f} s")
        print(
            f"/metrics: {args.scrapes} scrapes, median {statistics.median(times) * 1000:.2f} ms, "
            f"p99 {p99 * 1000:.2f} ms, {size} bytes"
        )
        return 0
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())
