"""What one scrape costs the exporter's process, apart from HTTP: `Exporter.metrics` in process.

    python bench/scrape_cost.py [--templates 45] [--calls 3000]

The simulator (static data, 4 languages) and an exporter in this process, polled once; then
`--calls` calls of each step of a scrape's own work, timed with `time.perf_counter`: the whole
`Exporter.metrics` (the kept template bytes, the live self-metrics, the process metrics), the
process metrics alone (client_python's `ProcessCollector` reads /proc and renders on every
scrape), the kept exposition alone. Prints one table in microseconds per call.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cams_simulator import SimulatorOptions
from tests.kit.configs import Account, parsed
from tests.kit.inproc import PolledExporter
from tests.kit.sim import running


def per_call_us(step: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=45)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    options = SimulatorOptions(
        templates=args.templates, languages=("en", "es", "pt", "id"), static=True
    )
    with running(options) as sim, PolledExporter(parsed(Account(sim.url))) as polled:
        polled.poll()
        exporter = polled.exporter
        body = b"".join(exporter.exposition.render(False)[0])
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        rows = [
            ("Exporter.metrics (text)", lambda: exporter.metrics(False)),
            ("Exporter.metrics (OpenMetrics)", lambda: exporter.metrics(True)),
            ("process metrics only", lambda: exporter._process.render(False)),
            ("kept exposition only", lambda: exporter.exposition.render(False)),
        ]
        print(f"{series} series (without process_*), {args.calls} calls each")
        print("| step | us per call |\n|---|---|")
        for name, step in rows:
            print(f"| {name} | {per_call_us(step, args.calls):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
