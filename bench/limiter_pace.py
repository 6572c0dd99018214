"""The pace the rate limiter allows, by answer latency: what counting a call until its answer costs.

The limiter counts each call in its 1-second window from its grant until a second after its
answer (`exporter/cams/ratelimit.py`: with public HTTP APIs, a call in flight may reach the
server at any moment until its answer), so with answers taking L seconds it allows at most
rate / (1 + margin + L) calls a second. This bench measures it: a `CamsClient` with a
GetChatappTemplateMetric limiter of `--qps` and `--workers` threads calls the simulator (its
own process, `--latency L` before each answer, its 1-second windows counted as requests arrive)
for `--seconds` per latency, and prints the calls a second the simulator saw, their ratio to
qps, the busiest 1-second window of arrivals (never above qps) and the bound above.

Run: `python bench/limiter_pace.py [--qps 40] [--workers 16] [--seconds 8]` (about a minute).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness
from exporter.cams.actions import LIST_ACTION, METRIC_ACTION
from exporter.cams.client import CamsClient, ListFilters
from exporter.cams.ratelimit import RateLimiter, RatePolicy
from exporter.cams.retry import RetryPolicy
from exporter.config import StaticCredentials
from tests.kit.calls import call_metric_for

LATENCIES = (0.0, 0.05, 0.15, 0.3)


def measure(
    sim: harness.SimulatorProcess, qps: float, workers: int, seconds: float
) -> dict[str, float]:
    """Calls from `workers` threads for `seconds`, as the simulator counted them."""
    client = CamsClient(
        endpoint=sim.url,
        credentials=StaticCredentials("demo", "demo-secret"),
        limiters={METRIC_ACTION: RateLimiter(qps), LIST_ACTION: RateLimiter(5)},
        retry=RetryPolicy(max_retries=0),
        pool_size=workers,
    )
    try:
        template = client.list_templates(ListFilters(cust_space_id="cams-demo")).rows[0]
        sim.reset()
        errors = call_metric_for(client, template, seconds, workers)
        stats = sim.action(METRIC_ACTION)
    finally:
        client.close()
    return {
        "calls": stats["calls"],
        "per_s": stats["calls"] / seconds,
        "max_1s": stats["max_calls_in_1s"],
        "throttled": stats["throttled"],
        "errors": len(errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qps", type=float, default=40.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    margin = RatePolicy().margin
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-limiter-pace-") as tmp:
        children = harness.Children(Path(tmp))
        try:
            for latency in LATENCIES:
                sim = harness.start_simulator(
                    children,
                    f"simulator-{latency:g}",
                    ["--templates", "4", "--static", "--latency", f"{latency:g}"],
                )
                rows.append((latency, measure(sim, args.qps, args.workers, args.seconds)))
                sim.stop()
        finally:
            children.stop_all()
    print(
        f"qps {args.qps:g}, {args.workers} workers, {args.seconds:g} s per row; "
        f"{harness.git_state()}"
    )
    print("| latency s | calls | calls/s | calls/s / qps | bound qps/(1+margin+L) | "
          "max calls in 1 s | throttled | errors |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for latency, r in rows:
        bound = args.qps / (1 + margin + latency)
        print(
            f"| {latency:g} | {r['calls']:.0f} | {r['per_s']:.1f} | {r['per_s'] / args.qps:.3f} "
            f"| {bound:.1f} | {r['max_1s']:.0f} | {r['throttled']:.0f} | {r['errors']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    harness.run_main(main)
