"""A competing application on the same access key: GetChatappTemplateMetric at a fixed rate.

    python bench/competitor.py --endpoint http://127.0.0.1:PORT --rate 25 --duration 30 --out F

Sends signed calls (exporter.cams.client.CamsClient, key demo / demo-secret) paced at `--rate` per
second for `--duration` seconds, never slowing down when throttled and never retrying (a batch
job that does not care), then writes every attempt as [unix time, code] to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from exporter.cams.client import LIST_ACTION, METRIC_ACTION, CamsClient, RequestEvent
from exporter.cams.errors import CamsError
from exporter.cams.ratelimit import RateLimiter
from exporter.cams.retry import RetryPolicy
from exporter.config import StaticCredentials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    if not args.endpoint.startswith(("http://127.", "http://localhost")):
        parser.error("--endpoint must be on loopback")

    events: list[tuple[float, str]] = []
    lock = threading.Lock()

    def observe(event: RequestEvent) -> None:
        with lock:
            events.append((time.time(), event.code))

    # min_rate = rate: throttling never slows this client down (on_throttled cannot lower it).
    limiter = RateLimiter(args.rate, min_rate=args.rate)
    client = CamsClient(
        endpoint=args.endpoint,
        credentials=StaticCredentials("demo", "demo-secret", None),
        limiters={METRIC_ACTION: limiter, LIST_ACTION: RateLimiter(1.0)},
        timeout_s=5.0,
        retry=RetryPolicy(max_retries=0),
        observer=observe,
        pool_size=args.threads,
    )
    deadline = time.monotonic() + args.duration
    started = time.time()

    def work(_: int) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(CamsError):
                client.metric_chunk(
                    code="competitor",
                    language="en",
                    start_ms=int((time.time() - 86400) * 1000),
                    end_ms=int(time.time() * 1000),
                )

    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(work, range(args.threads)))
    client.close()
    args.out.write_text(
        json.dumps({"started": started, "stopped": time.time(), "events": events}),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
