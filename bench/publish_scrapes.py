"""Scrapes of a 100k-series exporter while it polls and publishes (issue 12, item 7).

The simulator (4 accounts' worth of templates: 875 templates x 4 languages each, 50/s per
account) and the exporter (4 accounts at qps 50, poll.interval 10s, so cycles follow one another
and every account publishes about every 80 s) run as separate processes on 127.0.0.1. After the
first cycle, sequential keep-alive GETs of /metrics (plain text, and gzip every other one) run
for the measurement window, which spans several publishes of every account (each publish
writes the state file and renders the ~100k-series exposition). The table gives the median, p99
and max of each format over the window, and how many publishes it spanned.

Run: `python bench/publish_scrapes.py [--seconds 180]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness

ACCOUNTS = 4
TEMPLATES = 875
LANGUAGES = ("en", "es", "pt", "id")


def simulator_flags(templates: int) -> list[str]:
    """The simulator of the publish scenarios (also bench/exposition.py's): `templates` per
    account in 4 languages, 50 ms latency, qps 50 per account."""
    return [
        "--templates", str(templates), "--languages", ",".join(LANGUAGES),
        "--latency", "0.05", "--qps-limit", str(50 * ACCOUNTS),
        "--list-qps-limit", str(5 * ACCOUNTS), "--variant", "language-required",
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="measurement window")
    parser.add_argument("--log-dir", type=Path, help="keep the children's logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        children = harness.Children(args.log_dir or Path(tmp))
        try:
            sim = harness.start_simulator(children, "simulator", simulator_flags(TEMPLATES))
            config = Path(tmp) / "config.yaml"
            names = [f"acct{i}" for i in range(ACCOUNTS)]
            text = harness.exporter_config(
                endpoint=sim.url, names=names, qps=50, list_qps=5, interval_s=10
            )
            state = Path(tmp) / "state.json"
            config.write_text(text + f"state:\n  path: {state}\n")
            exporter = harness.start_exporter(children, "exporter", config)
            harness.wait_for("first cycle", lambda: exporter.ready() or None, timeout=900, every=2)
            series = sum(1 for line in exporter.metrics_text().splitlines() if line[:1] != "#")
            publishes = harness.sample_sum(exporter.metrics_text(), "cams_state_writes_total")
            times, _ = harness.scrape_alternately(exporter.port, args.seconds)
            after = exporter.metrics_text()
            spanned = harness.sample_sum(after, "cams_state_writes_total") - publishes
            pauses = {
                labels["generation"]: value
                for labels, value in harness.samples(after, "cams_exporter_gc_pause_seconds_sum")
            }
            slow_by_gen = {
                labels["generation"]: value
                for labels, value in harness.samples(after, "cams_exporter_gc_pause_seconds_count")
            }
            for labels, value in harness.samples(after, "cams_exporter_gc_pause_seconds_bucket"):
                if labels["le"] == "0.05":
                    slow_by_gen[labels["generation"]] -= value
            slow = sum(slow_by_gen.values())
        finally:
            children.stop_all()
    print(f"{series} series, {ACCOUNTS} accounts, {args.seconds:.0f} s window, "
          f"{spanned:.0f} publishes in it")  # fmt: skip
    total = ", ".join(f"gen {g}: {v:.1f} s" for g, v in sorted(pauses.items()))
    by_gen = ", ".join(f"gen {g}: {v:.0f}" for g, v in sorted(slow_by_gen.items()))
    print(f"GC pauses since start: {total}; {slow:.0f} collections over 50 ms ({by_gen})")
    print("| format | scrapes | median ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for fmt, values in times.items():
        print(
            f"| {fmt} | {len(values)} | {harness.percentile(values, 50) * 1000:.1f} | "
            f"{harness.percentile(values, 99) * 1000:.1f} | {max(values) * 1000:.1f} |"
        )
    return 0


if __name__ == "__main__":
    harness.run_main(main)
