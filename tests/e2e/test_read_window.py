"""Meta's 7-day read window end to end (issue 24): the exporter over real HTTP against
simulators whose reads and clicks arrive over a week (and, with the reset, answer 0 from day
+8 on), the clocks moved on day by day, compared with the official SDK's sums.

- the default config (lookback 8d) ends exact, with and without the reset; the reset is held,
  counted apart and logged once for the account;
- a lookback too short for the API is flagged (counted, logged once, on the status page) within
  a day and a half of the first settled day, in both answer shapes;
- a restart without state whose origin lies past the window says from when its read counters
  are complete, in one line and in a gauge;
- the aggregate shape reads the older days of the window once an hour, not every poll.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.cams.actions import METRIC_ACTION
from exporter.cams.model import DAY_MS
from exporter.counting.store import CounterStore
from tests.kit.configs import Account, days_back, parsed
from tests.kit.days import DayByDay, totals, unit_problems
from tests.kit.inproc import PolledExporter
from tests.kit.logs import captured_logs
from tests.kit.series import Series, value
from tests.kit.sim import SimFactory, day_floor, simulators

HOUR_S = 3600.0


@pytest.fixture
def make_sim() -> Iterator[SimFactory]:
    with simulators(templates=4, languages=("en", "es"), qps_limit=1000, list_qps_limit=100) as m:
        yield m


def origin_today() -> tuple[dt.date, int]:
    return days_back(0)


def account_value(series: Series, name: str) -> float:
    return value(series, name, account="main")


def warnings_about(lines: list[str], text: str) -> list[str]:
    return [line for line in lines if text in line]


@pytest.mark.parametrize("reset", [False, True], ids=["reads-kept", "reads-reset"])
def test_the_default_config_ends_exact_on_reads_that_arrive_over_a_week(
    make_sim: SimFactory, tmp_path: Path, reset: bool
) -> None:
    sim, twin = make_sim(read_reset=reset), make_sim()
    since, origin_ms = origin_today()
    poll = {"interval": "5m", "counters_since": since, "timeout": "5s"}  # lookback: the default
    config = parsed(Account(sim.url), poll=poll, state=tmp_path / "state.json")
    assert config.poll.lookback_s == 8 * 86400
    world = DayByDay(sim, twin, config)
    per_day: list[list[str]] = []  # each day's exporter is a process of its own
    try:
        with captured_logs() as logs:
            for day in range(11):
                if day:
                    world.move(1)
                mark = logs.mark()
                last = world.run_day()
                per_day.append(warnings_about(logs.since(mark), "read window fell"))
            truth = world.truth(origin_ms)
            shown = world.truth(origin_ms, sim)
    finally:
        world.reset_clocks()
    assert unit_problems(last.series, truth) == []
    ours, _ = totals(last.series, truth)
    assert ours.read > 0 and sum(ours.clicks.values()) > 0
    resets = account_value(last.series, "cams_read_window_resets_total")
    assert account_value(last.series, "cams_downward_revisions_held_total") == 0
    assert account_value(last.series, "cams_settled_bucket_changes_total") == 0
    assert account_value(
        last.series, "cams_read_counters_complete_since_timestamp_seconds"
    ) == pytest.approx(origin_ms / 1000)
    if reset:
        _, api_now = totals(last.series, shown)
        assert api_now.read < ours.read, "the simulator did not reset any read"
        assert resets > 0
        # Once for the account (not per template or day) in each process that saw a reset.
        assert max(len(lines) for lines in per_day) == 1, per_day
        line = next(lines[0] for lines in per_day if lines)
        assert "account=main" in line and "level=info" in line
    else:
        assert resets == 0 and not any(per_day)
    assert not warnings_about(logs.lines, "settled day changed")
    assert not warnings_about(logs.lines, "lowered counts")


def first_settled(state: Path) -> bool:
    """Whether the state file remembers a settled day to check."""
    stored, warning = CounterStore.load(str(state))
    assert warning is None
    return any(unit.checks for unit in stored.units.values())


@pytest.mark.parametrize("shape", ["per-bucket", "aggregate"])
def test_a_too_short_lookback_is_flagged_within_a_day_and_a_half(
    make_sim: SimFactory, tmp_path: Path, shape: str
) -> None:
    sim = make_sim(shape=shape)
    since, origin_ms = origin_today()
    state = tmp_path / "state.json"
    poll = {"interval": "5m", "lookback": "3d", "counters_since": since, "timeout": "5s"}
    config = parsed(Account(sim.url), poll=poll, state=state)
    world = DayByDay(sim, sim, config)
    step_days = 0.25
    settled_at: float | None = None
    flagged_at: float | None = None
    try:
        with captured_logs() as logs, PolledExporter(config, clock=world.clock) as exporter:
            while flagged_at is None and world.offset_s < 8 * 86400:
                exporter.poll()
                if settled_at is None and first_settled(state):
                    settled_at = world.offset_s
                series = exporter.scrape()
                if account_value(series, "cams_settled_bucket_changes_total") > 0:
                    flagged_at = world.offset_s
                    page = exporter.get("/").text
                    truth = world.truth(origin_ms)
                    break
                world.move(step_days)
    finally:
        world.reset_clocks()
    assert settled_at is not None, "no day was ever settled"
    assert flagged_at is not None, "the too-short lookback was never flagged"
    assert 86400 <= flagged_at - settled_at <= 1.5 * 86400
    assert series[("cams_up", (("account", "main"),))] == 1
    lines = warnings_about(logs.lines, "settled day changed")
    assert len(lines) == 1, lines
    assert "level=warn" in lines[0] and "poll.lookback 3d is too short" in lines[0]
    assert "a lookback of at least" in lines[0] and "account=main" in lines[0]
    assert "Settled days that changed" in page and "Lookback that catches it" in page
    # The counters keep the settled values: the change is reported, not silently added.
    ours, want = totals(series, truth)
    assert ours.sent == want.sent and ours.read < want.read


def test_a_stateless_restart_past_the_window_says_what_it_cannot_vouch_for(
    make_sim: SimFactory,
) -> None:
    resetting, twin = make_sim(read_reset=True), make_sim()
    since, origin_ms = days_back(10)
    poll = {"interval": "5m", "counters_since": since, "timeout": "5s"}
    world = DayByDay(resetting, twin, parsed(Account(resetting.url), poll=poll))  # clocks stopped
    complete: dict[str, float] = {}
    scraped: dict[str, Series] = {}
    pages: dict[str, str] = {}
    with captured_logs() as logs:
        for name, sim in (("reset", resetting), ("kept", twin)):
            with PolledExporter(parsed(Account(sim.url), poll=poll), clock=world.clock) as exporter:
                exporter.poll()
                scraped[name] = exporter.scrape()
                pages[name] = exporter.get("/").text
            complete[name] = account_value(
                scraped[name], "cams_read_counters_complete_since_timestamp_seconds"
            )
    truth = world.truth(origin_ms)
    world.reset_clocks()
    ours, want = totals(scraped["reset"], truth)
    assert ours.sent == want.sent and ours.delivered == want.delivered
    assert ours.read < want.read, "the reset days' reads should be missing"
    # Days 8 days old and older answered no reads: complete from the end of the newest of them.
    newest_reset_day = day_floor(int(world.clock() * 1000)) - 8 * DAY_MS
    assert complete["reset"] == (newest_reset_day + DAY_MS) / 1000
    assert complete["kept"] == origin_ms / 1000
    assert unit_problems(scraped["kept"], truth) == []
    lines = warnings_about(logs.lines, "are complete only from")
    assert len(lines) == 1, lines
    assert "level=warn" in lines[0] and "state.path" in lines[0]
    when = dt.datetime.fromtimestamp(complete["reset"], dt.UTC).strftime("%Y-%m-%d")
    assert when in lines[0]
    assert "Reads complete since" in pages["reset"] and f"{when}T00:00:00Z" in pages["reset"]


def test_the_aggregate_shape_reads_older_days_of_the_window_once_an_hour(
    make_sim: SimFactory,
) -> None:
    sim = make_sim(shape="aggregate")
    poll = {"interval": "5m", "discovery_interval": "6h"}  # no read-mode check in the hour
    world = DayByDay(sim, sim, parsed(Account(sim.url), poll=poll))
    # Start at the next noon UTC: an hour of polls does not cross midnight (when every day's
    # reads step up, which a day read hourly would show up to an hour late).
    now = world.clock()
    noon = (now // 86400) * 86400 + 12 * HOUR_S
    world.move(((noon if noon > now else noon + 86400) - now) / 86400)
    sim.set_variants("language-required")  # one call per unit and day
    units = len(sim.templates())
    calls: list[int] = []
    try:
        with PolledExporter(world.config, clock=world.clock) as exporter:
            for cycle in range(14):
                if cycle:
                    world.move(300 / 86400)
                sim.reset_stats()
                exporter.poll()
                calls.append(sim.stats()["actions"][METRIC_ACTION]["calls"])
            series = exporter.scrape()
            origin_ms = day_floor(int(world.clock() * 1000)) - 8 * DAY_MS  # the first window's
            truth = world.truth(origin_ms)
    finally:
        world.reset_clocks()
    assert series[("cams_metric_shape_info", (("account", "main"), ("shape", "aggregate")))] == 1
    steady = calls[1:13]  # an hour of polls after the first
    assert min(steady) >= 2 * units, steady  # today and yesterday, every poll
    # The 7 older days of the 8d window once in the hour: 2 + 7/12 calls a unit a poll.
    assert sum(steady) == 12 * 2 * units + 7 * units, steady
    assert unit_problems(series, truth) == []


def test_check_config_warning_also_goes_to_the_exporter_log(make_sim: SimFactory) -> None:
    sim = make_sim(static=True)
    config = parsed(Account(sim.url), poll={"lookback": "3d"})
    with captured_logs(debug=False) as logs, PolledExporter(config) as exporter:
        exporter.poll()
    lines = [line for line in logs.lines if "poll.lookback" in line]
    assert len(lines) == 1 and "level=warn" in lines[0] and "8d" in lines[0]
