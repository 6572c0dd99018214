"""Benchmark of issue 14: a template metric cycle takes the same time with sender health on.

Run from the repository root:

    python bench/sender_health.py           # 1,000 template-language units, 10 numbers, ~4 min
    python bench/sender_health.py --smoke   # 40 units, 3 numbers, ~1.5 min

Every scenario runs the CAMS simulator (`python -m exporter simulate --latency 0.15
--phone-numbers N`, 50/s GetChatappTemplateMetric, 10/s QueryChatappPhoneNumbers, 5/s
GetWhatsappHealthStatus per key) and the exporter (`python -m exporter --config.file ...`, qps
40) as separate processes on 127.0.0.1. As in bench/run.py, *cycle* is the second poll cycle's
`cams_poll_duration_seconds` (discovery cached, lookback 3d); the simulator's stats are reset
in the gap before it, so the calls per action, the busiest 1-second window and the throttled
answers are those of the *window* (the end of that gap and the second cycle), counted on the
simulator's side. *limit* is the cycle's GetChatappTemplateMetric calls / qps (one call per
template-language, or per template once the exporter has proven that one call answers for
every language).

Scenarios:
- `off`: no `sender_health` block (templates only, as before issue 14);
- `on`: `sender_health: true`, every default (numbers every 5m at 1/s; health status every 15m
  at 2/s, whose first round is not spread, so it runs through both cycles);
- `ceilings`: every sender action at its documented ceiling (numbers every 10s at 10/s, health
  status at 5/s): the most the sender threads can ask of the same process.

It prints one table and writes everything to bench/results/sender-health-<UTC stamp>.json
(git-ignored), with the processes' logs beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/sender_health.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness
from exporter.cams.actions import HEALTH_ACTION as HEALTH
from exporter.cams.actions import METRIC_ACTION as METRIC
from exporter.cams.actions import PHONE_NUMBERS_ACTION as NUMBERS

LIST_QPS = 4.0
SCENARIOS: dict[str, str | None] = {
    "off": None,
    "on": "true",
    "ceilings": "{phone_numbers: {interval: 10s, qps: 10}, health_status: {qps: 5}}",
}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _cycle_values(text: str) -> tuple[float, float, int]:
    """(cams_poll_duration_seconds, last success, accounts with a duration) of one scrape."""
    duration = harness.sample_sum(text, "cams_poll_duration_seconds")
    last = harness.sample_sum(text, "cams_poll_last_success_timestamp_seconds")
    return duration, last, sum(1 for _ in harness.samples(text, "cams_poll_duration_seconds"))


def scenario(
    name: str,
    sender_health: str | None,
    load: harness.Load,
    *,
    numbers: int,
    log_dir: Path,
) -> dict[str, Any]:
    """Discovery and the first cycle, then the second cycle measured on its own."""
    units, qps, latency = load.units, load.qps, load.latency
    cycle_est = units * 1.03 / qps + latency
    interval = max(10, math.ceil(math.ceil(units / 100) * 1.03 / LIST_QPS + cycle_est * 1.05 + 8))
    children = harness.Children(log_dir / name)
    try:
        flags = ["--templates", str(load.templates), "--languages", ",".join(load.languages)]
        flags += ["--latency", f"{latency:g}", "--phone-numbers", str(numbers)]
        sim = harness.start_simulator(children, "simulator", flags)
        text = harness.exporter_config(
            endpoint=sim.url, names=["main"], qps=qps, list_qps=LIST_QPS, interval_s=interval
        )
        if sender_health is not None:
            text += f"    sender_health: {sender_health}\n"
        config = children.log_dir / "config.yaml"
        config.write_text(text, encoding="utf-8")
        exporter: harness.ExporterProcess = harness.start_exporter(children, "exporter", config)
        harness.wait_for("first cycle (ready)", exporter.ready, timeout=cycle_est * 2 + 60)

        def published() -> tuple[float, float, int] | None:
            values = _cycle_values(exporter.metrics_text())
            return values if values[2] >= 1 else None

        first = harness.wait_for("the first cycle on /metrics", published, timeout=30)
        sim.reset()
        reset_at = time.monotonic()
        cpu0 = exporter.child.cpu_s() or 0.0

        def second_done() -> tuple[float, float, int] | None:
            values = _cycle_values(exporter.metrics_text())
            return values if values[1] != first[1] else None  # a newer cycle ended

        second = harness.wait_for(
            "second cycle", second_done, timeout=interval + cycle_est * 2 + 60, every=0.5
        )
        window = time.monotonic() - reset_at
        metric, health, listed = sim.action(METRIC), sim.action(HEALTH), sim.action(NUMBERS)
        cycle = second[0]
        result = {
            "scenario": name,
            "sender_health": sender_health,
            "units": units,
            "numbers": numbers,
            "qps": qps,
            "latency_s": latency,
            "poll_interval_s": interval,
            "cycle_s": cycle,
            "window_s": window,
            "limit_s": metric["calls"] / qps,
            "ratio": cycle / (metric["calls"] / qps),
            "metric_calls": metric["calls"],
            "metric_max_calls_in_1s": metric["max_calls_in_1s"],
            "metric_throttled": metric["throttled"],
            "health_calls": health["calls"],
            "health_max_calls_in_1s": health["max_calls_in_1s"],
            "health_throttled": health["throttled"],
            "numbers_calls": listed["calls"],
            "exporter_cpu_s": (exporter.child.cpu_s() or 0.0) - cpu0,
            "peak_rss_mb": exporter.child.peak_rss_mb(),
        }
        _log(
            f"{name}: cycle {cycle:.2f}s (limit {metric['calls'] / qps:.1f}s),"
            f" {metric['calls']} metric calls, {health['calls']} health calls,"
            f" {listed['calls']} listings"
        )
        return result
    finally:
        children.stop_all()


def table(results: list[dict[str, Any]]) -> str:
    base = next((r["cycle_s"] for r in results if r["scenario"] == "off"), None)
    head = (
        "| scenario | units | numbers | cycle s | limit s (calls/qps) | ratio | vs off |"
        " window s | metric calls | max metric calls/1s | throttled | health calls |"
        " max health calls/1s | QueryChatappPhoneNumbers calls | exporter CPU s | peak RSS MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        versus = f"{r['cycle_s'] / base:.3f}" if base else "-"
        lines.append(
            f"| {r['scenario']} | {r['units']} | {r['numbers']} | {r['cycle_s']:.2f} |"
            f" {r['limit_s']:.2f} | {r['ratio']:.3f} | {versus} | {r['window_s']:.1f} |"
            f" {r['metric_calls']} |"
            f" {r['metric_max_calls_in_1s']} | {r['metric_throttled'] + r['health_throttled']} |"
            f" {r['health_calls']} | {r['health_max_calls_in_1s']} | {r['numbers_calls']} |"
            f" {r['exporter_cpu_s']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="40 units and 3 numbers")
    parser.add_argument(
        "--results-dir", type=Path, default=harness.ROOT / "bench" / "results", help="JSON and logs"
    )
    parser.add_argument("--only", default="", help="comma-separated scenarios (off,on,ceilings)")
    args = parser.parse_args(argv)
    if args.smoke:
        load, numbers = harness.Load(20, ("en", "es"), qps=20.0, latency=0.05), 3
    else:
        load, numbers = harness.Load(500, ("en", "es"), qps=40.0, latency=0.15), 10
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    log_dir = args.results_dir / f"sender-health-{stamp}-logs"
    wanted = {s for s in args.only.split(",") if s} or set(SCENARIOS)
    started = time.monotonic()
    results = []
    for name, sender_health in SCENARIOS.items():
        if name in wanted:
            results.append(scenario(name, sender_health, load, numbers=numbers, log_dir=log_dir))
    machine = harness.machine_info()
    document = {
        "started": stamp,
        "command": "python bench/sender_health.py" + (" --smoke" if args.smoke else ""),
        "machine": machine,
        "duration_s": time.monotonic() - started,
        "scenarios": results,
    }
    path = args.results_dir / f"sender-health-{stamp}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    print(
        f"cams-exporter sender-health bench, {stamp}, {document['duration_s']:.0f}s;"
        f" {machine['cpus']} CPUs ({machine['cpu_model']}), Python {machine['python']},"
        f" commit {machine['git_commit']}\n"
    )
    print(table(results))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    harness.run_main(main)
