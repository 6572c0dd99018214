"""CPU per API call on the exporter's side: what each poll call costs under the GIL.

The exporter polls up to 50 calls a second per account, and every millisecond of CPU a call
takes is held under the GIL that the scrape threads wait for (issue 12, item 7: the p99 of
/metrics during a publish). This bench times calls from one thread of this process against the
simulator (a separate process on 127.0.0.1, no latency, no rate limit), with `time.process_time`
(this process's CPU only, the simulator's not counted):

- `CamsClient.metric_chunk`: a whole GetChatappTemplateMetric call, as a poll worker makes it
  (signing, the transport, the answer parsed and checked);
- `Transport.post`: the HTTP exchange alone, with the same signed headers;
- `requests.Session.post`: the same exchange through a requests session, as the transport sent
  it before commit a66cc39 (for comparison).

Run: `python bench/client_cpu.py [--calls 2000]` (about 30 s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from bench import harness
from exporter.cams.actions import API_VERSION, METRIC_ACTION
from exporter.cams.client import CamsClient, ListFilters
from exporter.cams.model import DAY_MS
from exporter.cams.retry import RetryPolicy
from exporter.cams.signing import percent_encode, sign_rpc_v3, utc_timestamp
from exporter.cams.transport import Transport
from exporter.config import StaticCredentials

WARMUP = 50


def _timed(call: Callable[[int], object], count: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call over `count` calls, after a warm-up."""
    for i in range(WARMUP):
        call(i)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(count):
        call(i)
    return (
        1000 * (time.process_time() - cpu) / count,
        1000 * (time.perf_counter() - wall) / count,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per row")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-client-cpu-") as tmp:
        children = harness.Children(Path(tmp))
        try:
            sim = harness.start_simulator(
                children,
                "simulator",
                ["--templates", "50", "--languages", "en,es", "--latency", "0",
                 "--qps-limit", "100000", "--list-qps-limit", "1000"],
            )  # fmt: skip
            rows = run(sim.url, args.calls)
        finally:
            children.stop_all()
    print(f"{args.calls} calls per row, one thread; {harness.git_state()}")
    print("| path | CPU ms/call | wall ms/call |")
    print("|---|---|---|")
    for name, cpu, wall in rows:
        print(f"| {name} | {cpu:.3f} | {wall:.3f} |")
    return 0


def run(url: str, count: int) -> list[tuple[str, float, float]]:
    """The three rows of the table."""
    creds = StaticCredentials("demo", "demo-secret")
    client = CamsClient(endpoint=url, credentials=creds, limiters={}, retry=RetryPolicy(0))
    codes = [t.code for t in client.list_templates(ListFilters(cust_space_id="cams-1")).rows]
    start = (int(time.time() * 1000) // DAY_MS - 2) * DAY_MS
    host = url.split("://", 1)[1].rstrip("/")

    def whole(i: int) -> object:
        code = codes[i % len(codes)]
        return client.metric_chunk(code=code, language="en", start_ms=start, end_ms=start + DAY_MS)

    def signed(i: int) -> tuple[str, dict[str, str]]:
        query = {"TemplateCode": codes[i % len(codes)], "Language": "en", "Granularity": "DAILY",
                 "Start": str(start), "End": str(start + DAY_MS)}  # fmt: skip
        headers = sign_rpc_v3(
            host=host, action=METRIC_ACTION, version=API_VERSION, query=query,
            access_key_id=creds.access_key_id, secret=creds.access_key_secret,
            security_token=None, date=utc_timestamp(),
        )  # fmt: skip
        return "/?" + "&".join(f"{k}={percent_encode(v)}" for k, v in query.items()), headers

    transport = Transport(pool_size=1, user_agent="bench")
    origin = url.rstrip("/")

    def direct(i: int) -> object:
        target, headers = signed(i)
        answer = transport.post(origin, target, headers, 10)
        assert answer.status == 200, answer.body
        return answer

    session = requests.Session()
    session.trust_env = False

    def through_session(i: int) -> object:
        target, headers = signed(i)
        response = session.post(origin + target, headers=headers, timeout=10)
        assert response.status_code == 200, response.content
        return response

    try:
        return [
            ("CamsClient.metric_chunk", *_timed(whole, count)),
            ("Transport.post (signing included)", *_timed(direct, count)),
            ("requests.Session.post (signing included)", *_timed(through_session, count)),
        ]
    finally:
        client.close()
        transport.close()
        session.close()


if __name__ == "__main__":
    harness.run_main(main)
