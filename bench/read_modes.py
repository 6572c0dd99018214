"""Calls per poll cycle with and without one call per template (issue 10, item 7).

Two runs of the simulator (1,000 templates x 3 languages, static data, 50/s) and the exporter
(qps 50) as separate processes on 127.0.0.1:
- `per-template`: the simulator answers one row per language when `Language` is omitted, so the
  exporter proves it on its first cycle and reads each template's languages in one call;
- `per-language`: the simulator refuses an omitted `Language` (`--variant language-required`),
  so the exporter reads each template-language on its own.
For each run the table gives the mode in force (`cams_poll_units{mode}`), the units, the reads
per cycle (`cams_poll_reads`), the GetChatappTemplateMetric calls the simulator counted during
one steady cycle (after the first, once discovery is cached; throttled calls, retried, count
too) and that cycle's duration
(`cams_poll_duration_seconds`). Run: `python bench/read_modes.py [--templates N]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness
from exporter.cams.actions import METRIC_ACTION as METRIC
from tests.kit.procs import Children


def _cycle_end(text: str) -> float:
    return harness.sample_sum(text, "cams_poll_last_success_timestamp_seconds")


def run(name: str, templates: int, variant: str, workdir: Path) -> dict[str, object]:
    children = Children(workdir / name)
    try:
        flags = ["--templates", str(templates), "--languages", "en,es,pt_BR", "--static"]
        if variant:
            flags += ["--variant", variant]
        sim = harness.start_simulator(children, f"{name}-simulator", flags)
        config = workdir / f"{name}.yaml"
        config.write_text(
            harness.exporter_config(
                endpoint=sim.url, names=["bench"], qps=50, list_qps=5, interval_s=90
            )
        )
        exporter = harness.start_exporter(children, f"{name}-exporter", config)
        harness.wait_for("first cycle", lambda: exporter.ready() or None, timeout=900, every=1)
        first_end = _cycle_end(exporter.metrics_text())
        sim.reset()
        # Cycles start every 90 s, so the second has not begun yet: count until it ends.
        harness.wait_for(
            "steady cycle",
            lambda: _cycle_end(exporter.metrics_text()) > first_end or None,
            timeout=900,
            every=1,
        )
        text = exporter.metrics_text()
        modes: dict[str, float] = {}  # active and idle units together, by mode
        for labels, value in harness.samples(text, "cams_poll_units"):
            modes[labels["mode"]] = modes.get(labels["mode"], 0.0) + value
        return {
            "run": name,
            "mode": ", ".join(modes),
            "units": int(sum(modes.values())),
            "reads per cycle": int(harness.sample_sum(text, "cams_poll_reads")),
            "metric calls in the cycle": sim.action(METRIC)["calls"],
            "of them throttled": sim.action(METRIC)["throttled"],
            "cycle (s)": round(harness.sample_sum(text, "cams_poll_duration_seconds"), 1),
        }
    finally:
        children.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=1000)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-read-modes-") as tmp:
        rows = [
            run("per-template", args.templates, "", Path(tmp)),
            run("per-language", args.templates, "language-required", Path(tmp)),
        ]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    took = time.monotonic() - started
    print(f"\n{args.templates} templates x 3 languages, qps 50; took {took:.0f}s")
    return 0


if __name__ == "__main__":
    harness.run_main(main)
