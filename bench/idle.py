"""Idle polling (issue 29): calls per hour, cycle length and how late a waking template is seen.

For 1,000 and 10,000 template-languages (templates x en, es) with 2% and 20% of them active:

- before: idle polling off (`poll.idle_after: off`), one steady cycle (the second; the first also
  lists): GetChatappTemplateMetric calls counted by the simulator, x 12 cycles an hour;
- after: the defaults (`idle_interval` 1h, `idle_after` 3d) with sender health's per-number
  counters (waking on): the simulator's calls in the first hour (which starts with a read of
  every unit) and in the second, steady hour; the active and idle units as the exporter counts
  them (`cams_poll_units{activity}`); the target of the issue: calls per hour at most
  active x 12 + idle x 1.2;
- cycle length: reads of a cycle / 40, the default qps the reads are paced at (bench/run.py
  measures real cycles within 1.04x of that), before, and the longest of the steady hour after;
- waking: in the third hour a silent template starts sending (the simulator's `wakes`; its
  numbers send only templates), between two cycles the second of which is not its idle slot
  (so that only a wake can read it then). Delay = from its first message (the simulator's data
  model says when it is sent) to the end of the cycle whose snapshot (what /metrics serves)
  first counts it: with sender health (target: the first cycle that starts after the first
  message) and without (a fresh exporter started two hours in; target: within the idle
  interval and a cycle). The wake's cost: the reads of that cycle (every idle unit of the
  space is read).

How it runs: the simulator and the exporter in this process, over real HTTP on 127.0.0.1, on a
simulated clock: the exporter's clock is moved 5 minutes a cycle, and the simulator serves its
counts as of the same moment (`pin_clock`). Cycles run back to back, so the account's qps is set
to 2,000 (past the config's ceiling of 50, on the parsed config) and the simulator allows it;
the cycle lengths above are computed at 40/s, not timed. The reads per cycle are what one
cycle of the exporter asks; the calls per hour are counted on the simulator's side.

Run: `python bench/idle.py [--quick | --smoke]` (--quick: the 1,000-unit rows only; --smoke:
100 units, what tests/artifacts/test_bench_smoke.py runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness
from cams_simulator import Simulator, SimulatorOptions
from cams_simulator.data import DataModel, build_templates
from exporter.cams.actions import METRIC_ACTION, PHONE_METRIC_ACTION
from exporter.cams.model import DAY_MS, UnitKey
from exporter.config import Config
from exporter.templates.activity import slot_offset
from tests.kit.configs import SPACE, Account, days_back, parsed
from tests.kit.inproc import PolledExporter
from tests.kit.sim import SimulatedTime, running

INTERVAL_S, IDLE_INTERVAL_S = 300.0, 3600.0
CYCLES_PER_HOUR = int(3600 / INTERVAL_S)
PACED_QPS = 40.0  # the default accounts[].qps: what a cycle's reads are paced at
BENCH_QPS = 2000.0
LANGUAGES = ("en", "es")
SEED = 1
IDLE_TARGET = 1.2  # calls per idle unit per idle interval, at most
SINCE, _ = days_back(4)


def _config(sim: Simulator, senders: bool, idle: bool) -> Config:
    poll: dict[str, Any] = {
        "interval": "5m",
        "lookback": "3d",
        "counters_since": SINCE,
        "timeout": "30s",
    }
    if not idle:
        poll["idle_after"] = "off"
    extra: dict[str, Any] = {}
    if senders:
        extra["sender_health"] = {
            "health_status": {"enabled": False},
            "phone_number_metrics": {"qps": 50},
        }
    config = parsed(Account(sim.url, qps=50, list_qps=5, extra=extra), poll=poll)
    fast = [dataclasses.replace(a, qps=BENCH_QPS) for a in config.accounts]
    return dataclasses.replace(config, accounts=tuple(fast))


def _waking(templates: int, active: int, day: int) -> int:
    """The silent template that sends most on `day` (in either language): the waking one."""
    model = DataModel(SEED, 0)
    defs = build_templates(templates, SEED)
    return max(
        range(active, templates),
        key=lambda i: max(model.final(defs[i], lang, day, sending=True).sent for lang in LANGUAGES),
    )


def _quiet_cycle(code: str, t0: float, after: int) -> int:
    """A cycle k > `after` (cycles every 5 minutes from `t0`) in which the waking template's
    idle slot does not come, so that only a wake can read it then."""
    offset = slot_offset(UnitKey("main", SPACE, code, LANGUAGES[0], "WHATSAPP"), IDLE_INTERVAL_S)

    def period(k: int) -> int:
        return math.floor((t0 + k * INTERVAL_S - offset) / IDLE_INTERVAL_S)

    return next(k for k in range(after + 1, after + 13) if period(k) == period(k - 1))


def _first_message(templates: int, index: int, start: float) -> float:
    """When the waking template's first message is sent (unix seconds), by the data model: a
    day's count grows linearly from the window's start, floor(final x age / 1 day)."""
    model = DataModel(SEED, 0)
    template = build_templates(templates, SEED)[index]
    start_ms = int(start * 1000)
    day = start_ms // DAY_MS
    begin = max(day * DAY_MS, start_ms)
    finals = [model.final(template, lang, day, sending=True).sent for lang in LANGUAGES]
    return (begin + min(math.ceil(DAY_MS / f) for f in finals if f)) / 1000


def _calls(sim: Simulator, action: str = METRIC_ACTION) -> int:
    actions = sim.stats()["actions"]
    return int(actions.get(action, {}).get("calls", 0))


class Run:
    """One exporter on a simulated clock, one cycle per call of `cycle`."""

    def __init__(self, sim: Simulator, clock: SimulatedTime, config: Config) -> None:
        self.sim, self.clock = sim, clock
        self.polled = PolledExporter(config, clock=clock)
        for sender in self.polled.scheduler.senders:
            sender.refresh_numbers()
        (self.poller,) = self.polled.scheduler.accounts

    def cycle(self, moment: float) -> dict[str, Any]:
        """One cycle at `moment`: the simulator's calls, the reads and the split it reports."""
        self.clock.at(moment)
        self.sim.reset_stats()
        assert self.polled.cycle(rediscover=False), "a poll cycle failed"
        status = self.poller.status
        return {
            "calls": _calls(self.sim),
            "number_calls": _calls(self.sim, PHONE_METRIC_ACTION),
            "reads": status.reads,
            "active": status.units - status.idle_units,
            "idle": status.idle_units,
        }

    def exported(self, codes: set[str]) -> bool:
        """Whether the published snapshot (what /metrics serves) counts a message of `codes`."""
        return any(
            s.key.template_code in codes and s.counts.sent > 0
            for s in self.polled.scheduler.snapshot.series
        )

    def close(self) -> None:
        self.polled.close()


def _options(units: int, share: float, wake: tuple[int, float]) -> SimulatorOptions:
    templates = units // len(LANGUAGES)
    return SimulatorOptions(
        templates=templates,
        languages=LANGUAGES,
        qps_limit=100_000,
        list_qps_limit=1_000,
        number_metric_qps_limit=1_000,
        phone_numbers=3,
        active_share=share,
        wakes=((wake[0], wake[1], wake[1] + 86400),),
        numbers_send_templates=True,
        variants="language-required",  # one read per template-language, as in bench/run.py
    )


def _delay(run: Run, code: str, start: float, first: float, log: Any) -> tuple[float, int, int]:
    """Cycles every 5 minutes from `start` until one exports the waking template: (seconds
    from its first message to the end of that cycle, cycles started after the first message,
    the reads of that cycle)."""
    for k in range(2 * CYCLES_PER_HOUR):
        moment = start + k * INTERVAL_S
        row = run.cycle(moment)
        if run.exported({code}):
            after = sum(1 for j in range(k + 1) if start + j * INTERVAL_S > first)
            return moment + row["reads"] / PACED_QPS - first, after, row["reads"]
    log(f"  the waking template was not exported within {2 * CYCLES_PER_HOUR} cycles")
    return math.inf, 0, 0


def scenario(units: int, share: float, log: Any) -> dict[str, Any]:
    templates = units // len(LANGUAGES)
    active_templates = round(templates * share)
    t0 = math.floor(time.time() / INTERVAL_S) * INTERVAL_S
    hour3 = t0 + 2 * 3600
    index = _waking(templates, active_templates, int(hour3 * 1000) // DAY_MS)
    code = build_templates(templates, SEED)[index].code
    # mid-way between two cycles of hour 3, the second not one of its idle slots
    quiet = _quiet_cycle(code, t0, 2 * CYCLES_PER_HOUR)
    wake_start = t0 + (quiet - 1) * INTERVAL_S + INTERVAL_S / 2
    first = _first_message(templates, index, wake_start)
    options = _options(units, share, (index, wake_start))
    out: dict[str, Any] = {"units": units, "active share": share}
    started = time.monotonic()
    with running(options) as sim:  # before: every unit every cycle
        clock = SimulatedTime(sim, t0)
        run = Run(sim, clock, _config(sim, senders=False, idle=False))
        try:
            run.cycle(t0)
            steady = run.cycle(t0 + INTERVAL_S)
        finally:
            run.close()
        out["before calls/h"] = steady["calls"] * CYCLES_PER_HOUR
        out["before cycle s"] = steady["reads"] / PACED_QPS
    log(f"  before: {time.monotonic() - started:.0f}s")
    with running(options) as sim:  # after, with sender health: hours 1 and 2, then the wake
        clock = SimulatedTime(sim, t0)
        run = Run(sim, clock, _config(sim, senders=True, idle=True))
        try:
            hours = [
                [run.cycle(t0 + (h * CYCLES_PER_HOUR + k) * INTERVAL_S) for k in range(12)]
                for h in range(2)
            ]
            hour1, hour2 = hours
            out["after calls/h, hour 1"] = sum(r["calls"] for r in hour1)
            out["after calls/h, steady"] = sum(r["calls"] for r in hour2)
            out["number calls/h"] = sum(r["number_calls"] for r in hour2)
            out["active"], out["idle"] = hour2[-1]["active"], hour2[-1]["idle"]
            out["after cycle s (max)"] = max(r["reads"] for r in hour2) / PACED_QPS
            delay, after, reads = _delay(run, code, hour3, first, log)
            out["delay with sender health s"], out["cycles after it"] = delay, after
            out["wake cycle reads"], out["wakes"] = reads, run.poller.status.wakes
        finally:
            run.close()
    log(f"  after, sender health: {time.monotonic() - started:.0f}s")
    with running(options) as sim:  # after, without: starts one cycle before hour 3
        clock = SimulatedTime(sim, hour3 - INTERVAL_S)
        run = Run(sim, clock, _config(sim, senders=False, idle=True))
        try:
            run.cycle(clock.now)
            out["delay without s"], _, _ = _delay(run, code, hour3, first, log)
        finally:
            run.close()
    log(f"  after, no sender health: {time.monotonic() - started:.0f}s")
    target = out["active"] * CYCLES_PER_HOUR + out["idle"] * IDLE_TARGET * 3600 / IDLE_INTERVAL_S
    out["target calls/h"] = target
    out["calls ok"] = out["after calls/h, steady"] <= target
    out["wake ok"] = out["cycles after it"] == 1 and out["wakes"] == 1
    out["no-senders ok"] = out["delay without s"] <= IDLE_INTERVAL_S + out["after cycle s (max)"]
    return out


COLUMNS = (
    ("units", "{:,}"),
    ("active share", "{:.0%}"),
    ("active", "{:,}"),
    ("idle", "{:,}"),
    ("before calls/h", "{:,}"),
    ("after calls/h, hour 1", "{:,}"),
    ("after calls/h, steady", "{:,}"),
    ("target calls/h", "{:,.0f}"),
    ("calls ok", "{}"),
    ("number calls/h", "{:,}"),
    ("before cycle s", "{:.1f}"),
    ("after cycle s (max)", "{:.1f}"),
    ("delay with sender health s", "{:.0f}"),
    ("cycles after it", "{}"),
    ("wakes", "{}"),
    ("wake cycle reads", "{:,}"),
    ("wake ok", "{}"),
    ("delay without s", "{:.0f}"),
    ("no-senders ok", "{}"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 1,000-unit rows only")
    parser.add_argument("--smoke", action="store_true", help="100 units, 20%% active (CI)")
    args = parser.parse_args()
    started = time.monotonic()
    rows = []
    sizes = (100,) if args.smoke else (1000,) if args.quick else (1000, 10_000)
    for units in sizes:
        for share in (0.2,) if args.smoke else (0.02, 0.2):
            print(f"{units} units, {share:.0%} active", file=sys.stderr, flush=True)
            rows.append(scenario(units, share, lambda text: print(text, file=sys.stderr)))
    print("| " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(fmt.format(row[name]) for name, fmt in COLUMNS) + " |")
    print(f"\ntook {time.monotonic() - started:.0f}s; {harness.git_state()}")
    return 0 if all(r["calls ok"] and r["wake ok"] and r["no-senders ok"] for r in rows) else 1


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-idle-"):
        harness.run_main(main)
