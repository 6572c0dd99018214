"""The recording rules over backfilled history, end to end: `cams-exporter backfill` over the
simulator's static history, `promtool tsdb create-blocks-from openmetrics`, then the rule passes
of prometheus/backfill/ with `create-blocks-from rules` against Debian's Prometheus, whose
baselines must equal what the official SDK's daily rows give.

A module of its own: at two minutes it is the longest test of the suite, and xdist schedules a
module on one worker, so beside tests/e2e/test_backfill.py's other tests it ran after them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cams_simulator import SimulatorOptions
from exporter.cams.model import DAY_MS
from tests.kit.backfilled import (
    DAYS,
    STATIC,
    backfill,
    config_for,
    promtool,
    sdk_days,
)
from tests.kit.configs import days_back
from tests.kit.procs import ROOT
from tests.kit.sim import running

# -- the recording rules over the imported days ----------------------------------------------------


# the last value of a series recorded every 10 minutes: one sample (ranges include both ends)
LAST_10M = "599s"
# The past days checked. Day k's baseline reads the week that ended the day before it, at
# offsets of up to 2 days: the passes evaluate the rules over the CHECKED + 9 days before the
# junction. promtool writes a block per rule and per 2 hours, which Prometheus then reads: 3 days
# (12 days of rules) took 80 s of CPU against 113 s for the whole past week (16 days).
CHECKED = 3


def test_the_rules_over_the_imported_days_give_the_baselines_of_the_past_days(
    tmp_path: Path, prometheus_on: Any
) -> None:
    """`create-blocks-from rules` with prometheus/backfill/pass-N.yml, one pass after the other
    (each pass's blocks loaded before the next), over the 12 days before the junction: for each
    of the past 3 days, the template's own read rate over the week before yesterday, its
    delivery threshold and its baseline exist, each from the SDK's daily rows."""
    passes = sorted((ROOT / "prometheus" / "backfill").glob("pass-*.yml"))
    assert [p.name for p in passes] == [f"pass-{n}.yml" for n in range(1, len(passes) + 1)]
    with running(SimulatorOptions(**STATIC)) as sim:
        config = config_for(tmp_path, sim.url)
        _, origin_ms = days_back(DAYS)
        now_ms = int(time.time() * 1000)
        junction_ms = now_ms - now_ms % DAY_MS
        om = tmp_path / "history.om"
        done = backfill("--config.file", str(config), "--output", str(om))
        assert done.returncode == 0, done.stderr
        data = tmp_path / "data"
        blocks = promtool("tsdb", "create-blocks-from", "openmetrics", str(om), str(data))
        assert blocks.returncode == 0, blocks.stderr
        truth = sdk_days(sim, origin_ms, junction_ms)
    prom = prometheus_on(data, "127.0.0.1:9")  # scrapes nothing: the imported days only
    prom.start()
    start_s = (junction_ms - (CHECKED + 9) * DAY_MS) // 1000
    for n, rules in enumerate(passes, start=1):
        out = tmp_path / f"rules-{n}"
        made = promtool(
            "tsdb", "create-blocks-from", "rules", "-q",
            f"--url={prom.url}", f"--start={start_s}", f"--end={junction_ms // 1000}",
            f"--output-dir={out}", str(rules),
            timeout=600,
        )  # fmt: skip
        assert made.returncode == 0, (rules.name, made.stderr[-2000:])
        prom.stop()
        moved = [shutil.move(str(block), data / block.name) for block in out.iterdir()]
        assert moved, f"{rules.name} made no block"
        prom.start()

    def window(unit: tuple[str, str], last_day_ms: int, name: str) -> int:
        """The SDK's count of the 7 days that end at `last_day_ms` (a midnight)."""
        days = truth[unit]
        return sum(
            getattr(days[d], name) for d in range(last_day_ms - 7 * DAY_MS, last_day_ms, DAY_MS)
        )

    owned: set[tuple[str, str]] = set()
    for k in range(1, CHECKED + 1):
        # 23:00 of each of the past days: the day before it ended 47 h after the last point
        # of its window, when the expected reads of that point have all but caught up with it
        at_ms = junction_ms - k * DAY_MS - 3_600_000
        last_ms = at_ms - DAY_MS - 23 * 3_600_000  # the window's end: a midnight
        at = at_ms / 1000
        # each group evaluates every 10 minutes at an offset of its own: its last value there
        own = prom.by_unit(f"last_over_time(cams:template_read_rate:own[{LAST_10M}])", at)
        delivery = prom.by_unit(
            f"last_over_time(cams:template_delivery_rate:threshold[{LAST_10M}])", at
        )
        baseline = {
            (r["metric"]["template_code"], r["metric"]["language"]): r["metric"]["baseline"]
            for r in prom.query(f"last_over_time(cams:template_read_rate:baseline[{LAST_10M}])", at)
        }
        assert baseline.keys() == truth.keys(), k  # every template is judged, every day
        for unit in truth:
            delivered, sent = window(unit, last_ms, "delivered"), window(unit, last_ms, "sent")
            if sent >= 200:
                assert delivery[unit] == pytest.approx(0.8 * min(1, delivered / sent)), unit
            if delivered >= 300:  # over 200 expected reads, settled 47 h after the window
                ratio = min(1.0, window(unit, last_ms, "read") / delivered)
                assert own[unit] == pytest.approx(ratio, abs=0.03), (k, unit)
                assert baseline[unit] in ("own", "peers"), (k, unit)
                owned.add(unit)
            elif delivered < 150:  # under 200 expected reads: no rate of its own
                assert unit not in own, (k, unit)
        assert {u for u, source in baseline.items() if source == "own"} <= own.keys()
    assert len(owned) >= 2, "no template with a settled week of its own to judge"

    # the live rules (prometheus/recording.yml) a day after the junction read the imported
    # days' series at their usual offsets: the own read rate's week is the imported one
    live = {
        rule["record"]: rule["expr"]
        for group in yaml.safe_load((ROOT / "prometheus" / "recording.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    at = (junction_ms + DAY_MS - 3_600_000) / 1000
    reads = prom.by_unit(live["cams:template_messages_read:increase7d_offset1d"], at)
    expected = prom.by_unit(live["cams:template_reads_expected:increase7d_offset1d"], at)
    settled = [u for u in truth if window(u, junction_ms - DAY_MS, "delivered") >= 300]
    assert settled
    for unit in settled:
        read, delivered = (window(unit, junction_ms - DAY_MS, n) for n in ("read", "delivered"))
        assert reads[unit] / expected[unit] == pytest.approx(read / delivered, abs=0.03), unit
    last_hour = prom.query(
        f"last_over_time(cams:template_read_rate:baseline[{LAST_10M}])",
        (junction_ms - 3_600_000) / 1000,
    )
    assert any(r["metric"]["baseline"] == "own" for r in last_hour)
