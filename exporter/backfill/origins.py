"""Where each backfilled counter starts and ends, so that the live one continues it.

The live exporter sums a unit's buckets from its origin: the origin the state file holds for it
when it has already counted the unit, else `poll.counters_since` (else the start of its first
lookback window, which a backfill cannot know in advance: such a unit has no history to add).
The state file is read, never written or locked: `CounterStore.load` would tidy its directory,
so the file is opened and parsed here directly.

A unit the running exporter has already counted was scraped by Prometheus from some day on;
a backfilled point after it would sit among scraped ones that saw fewer late counts, and read as
a counter reset. So for those units the samples end `SETTLE_MS` (the read window and a day)
before `--until`, the day the exporter was first scraped: the days before it were final then.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from exporter.backfill.history import READ_WINDOW_MS, RETENTION_MS
from exporter.backfill.reader import Stored
from exporter.cams.model import DAY_MS
from exporter.counting.state import UnitState
from exporter.counting.store import CounterStore

SETTLE_MS = READ_WINDOW_MS + DAY_MS


def midnight_ms(day: dt.date) -> int:
    """The first millisecond of a UTC date."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def day_text(ms: int) -> str:
    """The UTC date of a millisecond (the date of an instant, e.g. a bucket end)."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def moment_text(ms: int) -> str:
    """A UTC instant: the date alone at midnight, else date and time."""
    if ms % DAY_MS == 0:
        return day_text(ms)
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%MZ")


def read_state(path: str) -> tuple[CounterStore | None, str | None]:
    """The state file's counters (None when there is no file), or a one-line problem."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"state.path: {path} is unreadable ({exc.strerror or type(exc).__name__})"
    try:
        return CounterStore.from_json(json.loads(raw)), None
    except (ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return None, f"state.path: {path} is not a state file the exporter can read ({reason})"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one subject's counters start, whether the running exporter already counts it
    (its state holds it), and what that state holds of it."""

    origin_ms: int
    counted: bool = False
    stored: Stored | None = None


@dataclass(frozen=True, slots=True)
class Span:
    """The whole run's choices: samples from `since_ms` (None: each origin) to `until_ms`, the
    fixed origin (`counters_since`, None when unset), the granularity, and now."""

    since_ms: int | None
    until_ms: int
    counters_since_ms: int | None
    granularity: str
    now_ms: int

    @property
    def retention_start_ms(self) -> int:
        """The oldest day the API still holds (by the documented 90 days)."""
        return self.now_ms - self.now_ms % DAY_MS - RETENTION_MS

    def origin(self, state: UnitState | None) -> Origin | None:
        """A subject's origin: the state's (when it counts it at this granularity), else the
        fixed one; None when neither exists."""
        if state is not None and state.granularity == self.granularity:
            stored = Stored({s: b.end_ms for s, b in state.buckets.items()}, state.settled_until_ms)
            return Origin(state.origin_ms, True, stored)
        if self.counters_since_ms is None:
            return None
        return Origin(self.counters_since_ms)

    def last_ms(self, origin: Origin) -> int:
        """The last moment a subject's samples may take: `--until` (complete buckets only),
        `SETTLE_MS` earlier for one the running exporter already counts."""
        last = min(self.until_ms, self.now_ms)
        return last - SETTLE_MS if origin.counted else last

    def first_ms(self, origin: Origin) -> int:
        """The first moment a subject's samples may take: its origin, or `--since` if later."""
        return max(origin.origin_ms, self.since_ms or origin.origin_ms)
