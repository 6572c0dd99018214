"""Meta's 7-day read window, played over ten days (issue 24): read and click counters against
the truth, and the GetChatappTemplateMetric calls per cycle of both answer shapes.

Table 1. A simulator whose reads and clicks of a day arrive over a week (55% on the day, then
75/85/90/94/97/99/100% on days +1..+7) and, with the reset, answer 0 from day +8 on while sent
and delivered stay. The clocks of the simulator and the exporter move on one day at a time for
ten days; each day an exporter starts (with or without its state file), polls once, is scraped
over HTTP and stops. `counters_since` is the first day. Each row: the read and click counters
summed over every unit after the tenth day, against the truth (the official SDK's sums over a
twin simulator with the same data and clock and no reset: the most the API ever showed), the
sent counter's difference, what the exporter counted (read-window resets held, settled days
that changed when re-read) and the time from which it says its read counters are complete.

Table 2. GetChatappTemplateMetric calls per poll cycle with `lookback: 8d`, per-bucket and
aggregate answer shapes, counted by the simulator: the first cycle, then 12 cycles 5 minutes
apart (an hour of polls, the clocks moved on), each unit reading today and yesterday every poll
and the older days of the window once an hour in the aggregate shape.

Run: `python bench/read_window.py [--templates N] [--days N]` (in-process simulators and
exporters on 127.0.0.1; about a minute).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cams_simulator import SimulatorOptions
from exporter.cams.actions import METRIC_ACTION
from tests.kit.configs import Account, parsed
from tests.kit.days import DayByDay, totals
from tests.kit.inproc import PolledExporter
from tests.kit.series import value
from tests.kit.sim import running


@dataclass(frozen=True)
class Case:
    """One row of table 1."""

    lookback: str
    reset: bool
    state: bool


@dataclass(frozen=True)
class Outcome:
    """What one case ended with."""

    read: int
    read_truth: int
    read_api_now: int
    clicks: int
    clicks_truth: int
    sent_diff: int
    resets: int
    changes: int
    complete_since: str
    origin: str


def _pct(got: int, want: int) -> str:
    return f"{(got - want) * 100 / want:+.1f}%" if want else "n/a"


def _date(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%m-%d")


def play(case: Case, templates: int, days: int, workdir: Path) -> Outcome:
    """Ten (or `days`) days of one case."""
    common = {"templates": templates, "languages": ("en", "es"), "qps_limit": 1000.0}
    with (
        running(SimulatorOptions(**common, read_reset=case.reset)) as sim,  # type: ignore[arg-type]
        running(SimulatorOptions(**common)) as twin,  # type: ignore[arg-type]
    ):
        since = dt.datetime.now(dt.UTC).date()
        origin_ms = int(dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC).timestamp())
        origin_ms *= 1000
        state = workdir / f"{case.lookback}-{case.reset}-{case.state}.json" if case.state else None
        poll = {"interval": "5m", "lookback": case.lookback, "counters_since": since}
        config = parsed(Account(sim.url), poll=poll | {"timeout": "5s"}, state=state)
        world = DayByDay(sim, twin, config)
        try:
            for day in range(days):
                if day:
                    world.move(1)
                last = world.run_day()
            truth = world.truth(origin_ms)
            api_now = world.truth(origin_ms, sim)
        finally:
            world.reset_clocks()
    ours, want = totals(last.series, truth)
    _, shown = totals(last.series, api_now)
    series = last.series
    complete = value(series, "cams_read_counters_complete_since_timestamp_seconds", account="main")
    return Outcome(
        read=ours.read,
        read_truth=want.read,
        read_api_now=shown.read,
        clicks=sum(ours.clicks.values()),
        clicks_truth=sum(want.clicks.values()),
        sent_diff=ours.sent - want.sent,
        resets=int(value(series, "cams_read_window_resets_total", account="main")),
        changes=int(value(series, "cams_settled_bucket_changes_total", account="main")),
        complete_since=_date(complete) if complete else "-",
        origin=_date(origin_ms / 1000),
    )


def table_one(templates: int, days: int, workdir: Path) -> list[str]:
    lines = [
        "| lookback | reset after day +7 | state file | read exported | read truth | diff | "
        "read the API shows now | clicks exported | clicks truth | diff | sent diff | "
        "read-window resets held | settled days changed | reads complete since (origin) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for lookback in ("3d", "8d"):
        for reset in (False, True):
            for state in (True, False):
                case = Case(lookback, reset, state)
                started = time.monotonic()
                o = play(case, templates, days, workdir)
                print(
                    f"  {lookback} reset={reset} state={state}: {time.monotonic() - started:.1f}s",
                    file=sys.stderr,
                )
                lines.append(
                    f"| {lookback} | {'yes' if reset else 'no'} | {'kept' if state else 'none'} "
                    f"| {o.read:,} | {o.read_truth:,} | {_pct(o.read, o.read_truth)} "
                    f"| {o.read_api_now:,} | {o.clicks:,} | {o.clicks_truth:,} "
                    f"| {_pct(o.clicks, o.clicks_truth)} | {o.sent_diff:+d} | {o.resets} "
                    f"| {o.changes} | {o.complete_since} ({o.origin}) |"
                )
    return lines


def calls_per_cycle(shape: str, templates: int) -> tuple[int, list[int], int]:
    """(units, calls of the first cycle, calls of each of 12 cycles 5 minutes apart)."""
    options = SimulatorOptions(
        templates=templates, languages=("en", "es"), qps_limit=1000, shape=shape
    )
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    with running(options) as sim:
        sim.set_variants("language-required")  # one call per unit: the shapes compare alike
        # discovery (and the read-mode check) hourly as by default, but not within the hour
        poll = {"interval": "5m", "lookback": "8d", "timeout": "5s", "discovery_interval": "6h"}
        with PolledExporter(parsed(Account(sim.url), poll=poll), clock=clock) as exporter:
            units = len(sim.templates())
            calls = []
            for cycle in range(13):
                if cycle:
                    offset[0] += 300
                    sim.set_clock_offset(offset[0])
                sim.reset_stats()
                exporter.poll()
                stats = sim.stats()["actions"].get(METRIC_ACTION, {})
                calls.append(int(stats.get("calls", 0)))
            sim.set_clock_offset(0)
    return units, calls[1:], calls[0]


def table_two(templates: int) -> list[str]:
    lines = [
        "| shape | units | calls, first cycle | calls per cycle over the next hour (12 cycles) "
        "| mean per cycle | mean per unit per cycle |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for shape in ("per-bucket", "aggregate"):
        units, calls, first = calls_per_cycle(shape, templates)
        mean = sum(calls) / len(calls)
        lines.append(
            f"| {shape} | {units} | {first} | {' '.join(map(str, calls))} | {mean:.1f} "
            f"| {mean / units:.2f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=10, help="templates (x2 languages)")
    parser.add_argument("--days", type=int, default=10, help="days played (default 10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"Table 1: {args.days} days, {args.templates} templates x 2 languages")
        print("\n".join(table_one(args.templates, args.days, Path(tmp))))
    print()
    print(f"Table 2: lookback 8d, {args.templates} templates x 2 languages, one call per unit")
    print("\n".join(table_two(args.templates)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
