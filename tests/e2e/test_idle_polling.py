"""Idle polling over real HTTP, on a simulated clock, against a mostly idle simulated account.

The simulator (in this process) has 6 templates in 2 languages; only the first 2 templates
send, the others never do, except one that starts sending at a chosen moment (for two days),
and its phone numbers send nothing but those templates. The exporter is polled by hand, its
clock moved by the test: the simulator serves its counts as of the same moment (pinned), and its
signature window follows the exporter's clock except while the official SDK reads the truth.

- with sender health: the first cycle reads every unit; for an hour the 8 idle units are read
  once each at their slots, beside the 4 active ones every cycle; the template that starts
  sending is read in the very next cycle (its space's numbers outgrew its templates), becomes
  active, and is idle again a day after its counts last changed; the counters equal the SDK's
  sums at every step, and after a restart with the state file the idle units are not read again
  before their slots;
- without sender health: the waking template is seen at its next idle slot, within the hour.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import pytest

from cams_simulator import Simulator, SimulatorOptions
from cams_simulator.data import build_templates
from exporter.cams.model import UnitKey
from exporter.config import Config
from exporter.templates.activity import slot_offset
from tests.kit.configs import SPACE, Account, days_back, parsed
from tests.kit.exact import exact_problems
from tests.kit.inproc import PolledExporter
from tests.kit.series import SENT, Series, value
from tests.kit.sim import SimulatedTime, running

SINCE, ORIGIN_MS = days_back(4)
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
TEMPLATES, LANGUAGES = 6, ("en", "es")
ACTIVE_TEMPLATES = 2
WAKING = 4  # a silent template that sends well (hundreds a day in each language)
POLL = {
    "interval": "5m",
    "idle_interval": "1h",
    "idle_after": "1d",
    "max_range": "30d",
    "timeout": "5s",
    "counters_since": SINCE,
}
SENDERS = {
    "health_status": {"enabled": False},
    "phone_numbers": {"interval": "5m"},
    "phone_number_metrics": {"qps": 50},
}


def options(start: float) -> SimulatorOptions:
    return SimulatorOptions(
        templates=TEMPLATES,
        languages=LANGUAGES,
        qps_limit=1000,
        list_qps_limit=50,
        phone_numbers=2,
        active_share=ACTIVE_TEMPLATES / TEMPLATES,
        wakes=((WAKING, start, start + DAY),),
        numbers_send_templates=True,
        variants="language-required",  # one read per template-language
    )


def config(sim: Simulator, state: Path, senders: bool) -> Config:
    extra = {"sender_health": SENDERS} if senders else {}
    return parsed(Account(sim.url, extra=extra), poll=POLL, state=state)


def waking_keys() -> list[UnitKey]:
    code = build_templates(TEMPLATES, 1)[WAKING].code
    return [UnitKey("main", SPACE, code, language, "WHATSAPP") for language in LANGUAGES]


def quiet_cycle(start: float, after: int) -> int:
    """A cycle k > `after` (cycles every 5 minutes from `start`) in which the waking
    template's idle slot does not come: only a wake can read it then."""
    offset = slot_offset(waking_keys()[0], HOUR)

    def period(k: int) -> int:
        return math.floor((start + k * 5 * MINUTE - offset) / HOUR)

    return next(k for k in range(after + 1, after + 13) if period(k) == period(k - 1))


def cycle(polled: PolledExporter, clock: SimulatedTime, moment: float) -> Series:
    clock.at(moment)
    assert polled.cycle(rediscover=False), "a poll cycle failed"
    return polled.scrape()


def assert_exact(sim: Simulator, clock: SimulatedTime, series: Series) -> None:
    with clock.oracle():
        problems = exact_problems(sim, series, ORIGIN_MS, now_ms=int(clock.now * 1000))
    assert not problems, problems[:3]


def units(series: Series, activity: str) -> float:
    return value(series, "cams_poll_units", account="main", activity=activity)


def sent(series: Series, key: UnitKey) -> float:
    return value(series, SENT, template_code=key.template_code, language=key.language)


def idle_flag(series: Series, key: UnitKey) -> float:
    name = "cams_template_idle_interval_seconds"
    return value(series, name, template_code=key.template_code, language=key.language)


def last_read(series: Series, key: UnitKey) -> float:
    name = "cams_template_last_success_timestamp_seconds"
    return value(series, name, template_code=key.template_code, language=key.language)


def test_idle_units_are_read_hourly_and_a_waking_one_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start = time.time()
    first_quiet = quiet_cycle(start, 13)
    wake_at = start + (first_quiet - 1) * 5 * MINUTE + 30  # just after the cycle before it
    state = tmp_path / "state.json"
    with running(options(wake_at)) as sim:
        clock = SimulatedTime(sim, start)
        polled = PolledExporter(config(sim, state, senders=True), clock=clock)
        try:
            (sender,) = polled.scheduler.senders
            sender.refresh_numbers()
            (poller,) = polled.scheduler.accounts
            assert poller.waking is not None, "per-number counters on: waking on"
            series = cycle(polled, clock, start)
            assert value(series, "cams_poll_reads", account="main") == 12
            assert (units(series, "active"), units(series, "idle")) == (4, 8)
            assert sum(idle_flag(series, key) for key in waking_keys()) == 2 * HOUR
            assert_exact(sim, clock, series)
            page = polled.get("/").text  # the status page says the same
            assert "4 active, 8 idle (read every 1h); this cycle reads 12; waking on" in page
            assert page.count("<td>idle</td>") == 8 and page.count("<td>active</td>") == 4

            # an hour of 5-minute cycles: the active units every cycle, each idle one once
            reads = []
            for k in range(1, 13):
                series = cycle(polled, clock, start + k * 5 * MINUTE)
                reads.append(value(series, "cams_poll_reads", account="main"))
            assert sum(reads) == 12 * 4 + 8, reads
            assert all(4 <= r < 12 for r in reads), reads
            for k in range(13, first_quiet):
                series = cycle(polled, clock, start + k * 5 * MINUTE)
            assert all(sent(series, key) == 0 for key in waking_keys())

            # it starts sending: the next cycle's numbers show it, and it is read at once
            moment = start + first_quiet * 5 * MINUTE
            with caplog.at_level(logging.INFO, logger="cams_exporter"):
                series = cycle(polled, clock, moment)
            assert any("sent more than the active templates" in r.message for r in caplog.records)
            assert value(series, "cams_poll_wakes_total", account="main") == 1
            for key in waking_keys():
                assert sent(series, key) > 0, "the waking template was not read at once"
                assert last_read(series, key) == moment
                assert idle_flag(series, key) == 0, "it is active now"
            assert (units(series, "active"), units(series, "idle")) == (6, 6)
            assert f"woken: {SPACE}" in polled.get("/").text
            assert_exact(sim, clock, series)

            # it sends for two days, its reads go on for the 7 days of Meta's read window after
            # each (the default lookback, 8d, reads them): active all along ...
            for moment in (wake_at + k * DAY for k in (1, 3, 5, 7, 9)):
                series = cycle(polled, clock, moment)
                assert units(series, "active") == 6
                assert_exact(sim, clock, series)
            # ... and idle a day after its counts last changed
            series = cycle(polled, clock, wake_at + 10 * DAY + MINUTE)
            assert (units(series, "active"), units(series, "idle")) == (4, 8)
            assert all(idle_flag(series, key) == HOUR for key in waking_keys())
            assert_exact(sim, clock, series)
            served = series
        finally:
            polled.close()

        # a restart with the state file: counters resume, the schedule carries on
        polled = PolledExporter(config(sim, state, senders=True), clock=clock)
        try:
            before = polled.scrape()
            assert {k: v for k, v in before.items() if k[0] == SENT} == {
                k: v for k, v in served.items() if k[0] == SENT
            }
            polled.scheduler.senders[0].refresh_numbers()
            series = cycle(polled, clock, clock.now + MINUTE)
            assert value(series, "cams_poll_reads", account="main") < 12, "idle ones wait"
            assert (units(series, "active"), units(series, "idle")) == (4, 8)
            assert_exact(sim, clock, series)
        finally:
            polled.close()


def test_without_sender_health_a_waking_template_is_seen_at_its_idle_slot(
    tmp_path: Path,
) -> None:
    start = time.time()
    first_quiet = quiet_cycle(start, 1)
    wake_at = start + (first_quiet - 1) * 5 * MINUTE + 30
    with running(options(wake_at)) as sim:
        clock = SimulatedTime(sim, start)
        polled = PolledExporter(config(sim, tmp_path / "state.json", senders=False), clock=clock)
        try:
            assert polled.scheduler.accounts[0].waking is None
            for k in range(first_quiet):
                cycle(polled, clock, start + k * 5 * MINUTE)
            seen = None
            for k in range(first_quiet, first_quiet + 14):
                moment = start + k * 5 * MINUTE
                series = cycle(polled, clock, moment)
                if all(sent(series, key) > 0 for key in waking_keys()):
                    seen = moment
                    break
                assert all(sent(series, key) == 0 for key in waking_keys())
            assert seen is not None, "not seen within the idle interval and a cycle"
            assert seen - wake_at <= HOUR + 5 * MINUTE
            assert seen > start + first_quiet * 5 * MINUTE, "seen at its slot, not at once"
            assert_exact(sim, clock, series)
        finally:
            polled.close()
