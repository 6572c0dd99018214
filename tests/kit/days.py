"""Days that pass: a simulator and in-process exporters whose clocks move on together, day by
day, the exporter restarted each day (with or without its state file), as issue 24 plays
Meta's 7-day read window.

    with simulators(qps_limit=1000) as make:
        days = DayByDay(make(read_reset=True), make(), config)   # the twin keeps its reads
        for _ in range(10):
            scrape = days.run_day()          # start, poll, scrape, stop
            days.move(1)
        truth = days.truth(origin_ms)        # the official SDK's sums over the twin

The truth is what the official SDK reads from the *twin* simulator (same data, same clock,
no reset): the most the API ever showed of each day. Both simulators' clocks and the
exporter's move together, and stand still in between (live data grows by the second, so a
scrape and the SDK's sums taken a moment later would differ); the SDK signs with the moved
clock too (`sdk_clock`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cams_simulator import Simulator
from exporter.config import Config
from tests.kit.exact import counters
from tests.kit.inproc import PolledExporter
from tests.kit.oracle import Truth, sdk_client, sdk_clock, sdk_sum
from tests.kit.series import Series

DAY_S = 86_400.0


@dataclass
class Day:
    """What one day's exporter served and showed."""

    series: Series
    page: str
    offset_s: float


@dataclass
class DayByDay:
    """A simulator (and its twin without the reset, for the truth) and a config; see above."""

    sim: Simulator
    twin: Simulator
    config: Config
    offset_s: float = 0.0
    days: list[Day] = field(default_factory=list)
    started_s: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.move(0)

    def clock(self) -> float:
        """The exporter's clock: the moment every clock stands at."""
        return self.started_s + self.offset_s

    def move(self, days: float) -> None:
        """Move every clock on by `days` (and stop them there)."""
        self.offset_s += days * DAY_S
        for sim in {id(self.sim): self.sim, id(self.twin): self.twin}.values():
            sim.set_clock_offset(self.offset_s)
            sim.stop_clock(self.clock())

    def run_day(
        self,
        polls: int = 1,
        config: Config | None = None,
        between: Callable[[], None] | None = None,
    ) -> Day:
        """Start an exporter (loading the state file, if the config has one), poll it, scrape
        it over HTTP, read its status page, stop it (writing the state file)."""
        with PolledExporter(config or self.config, clock=self.clock) as exporter:
            for poll in range(polls):
                if poll and between is not None:
                    between()
                exporter.poll()
            page = exporter.get("/").text
            day = Day(exporter.scrape(), page, self.offset_s)
        self.days.append(day)
        return day

    def truth(self, origin_ms: int, sim: Simulator | None = None) -> dict[tuple[str, str], Truth]:
        """The official SDK's sums over origin..now (the moved now) of every unit of the twin
        (or of `sim`)."""
        source = sim or self.twin
        now_ms = int(self.clock() * 1000)
        with sdk_clock(self.clock() - time.time()):
            sdk = sdk_client(source)
            return {
                (t.code, t.language): sdk_sum(sdk, t.code, t.language, origin_ms, now_ms)
                for t in source.templates()
            }

    def reset_clocks(self) -> None:
        """The simulators back on the running wall clock (when a test ends)."""
        self.offset_s = 0.0
        for sim in (self.sim, self.twin):
            sim.set_clock_offset(0)
            sim.stop_clock(None)


def totals(series: Series, truth: dict[tuple[str, str], Truth]) -> tuple[Truth, Truth]:
    """(the exporter's counters, the truth), each summed over every unit of the truth."""
    ours, want = Truth(), Truth()
    for (code, language), unit in truth.items():
        ours.add(counters(series, code, language))
        want.add(unit)
    return ours, want


def unit_problems(series: Series, truth: dict[tuple[str, str], Truth]) -> list[str]:
    """Units whose counters or clicks differ from the truth."""
    problems = []
    for (code, language), want in truth.items():
        got = counters(series, code, language)
        if got.counts() != want.counts() or got.nonzero_clicks() != want.nonzero_clicks():
            problems.append(f"{code}/{language}: ours {got.counts()} truth {want.counts()}")
    return problems
