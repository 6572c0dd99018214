"""Time the demo: process start to /-/ready, and the scrape time of its /metrics.

    python bench/demo_timing.py [--scrapes 200]

Starts `python -m exporter --demo` on 127.0.0.1:0 (the port read back from its log), waits for
/-/ready to answer 200, then GETs /metrics sequentially over one keep-alive connection and prints
the median and p99.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

if __package__ in (None, ""):  # `python bench/demo_timing.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kit.procs import start_exporter
from tests.kit.waits import WaitTimeout, wait_until


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        started = time.monotonic()
        process = start_exporter(Path(logs) / "demo.log", "--demo")
        try:
            session = requests.Session()
            url = process.url
            try:
                wait_until(
                    lambda: session.get(f"{url}/-/ready", timeout=2).status_code == 200,
                    60 - (time.monotonic() - started),
                    "demo ready",
                    every=0.02,
                )
            except WaitTimeout:
                print("demo not ready within 60 s", file=sys.stderr)
                return 1
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
            median_ms = statistics.median(times) * 1000
            print(
                f"/metrics: {args.scrapes} scrapes, median {median_ms:.2f} ms, "
                f"p99 {p99 * 1000:.2f} ms, {size} bytes"
            )
            return 0
        finally:
            process.stop(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
