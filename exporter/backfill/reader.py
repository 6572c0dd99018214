"""One unit's rows over origin..until, read and checked as the poller reads and checks them.

Per-bucket (the default): one read of the whole range (the client splits it into calls of at
most `poll.max_range`), its rows checked by `exporter.counting.checks` against the query and
against the buckets the state file holds for the unit. An answer with one row for more than a
bucket shows that the API sums ranges: the account switches (once, for every unit after) to
reading each day on its own, as the poller's aggregate strategy does. An empty answer is read
again, and trusted only when the second one agrees. Whatever the checks refuse raises
`AnomalousAnswer`, a failed call `CamsError`: the unit is then not written at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from exporter.cams.model import DAY_MS, ButtonCount, MetricRow
from exporter.counting.checks import Query, check_against_buckets, check_rows
from exporter.counting.state import Tally
from exporter.counting.strategies import Member, floor_to, rows_by_unit

log = logging.getLogger("cams_exporter.backfill")

Fetch = Callable[[int, int], Sequence[MetricRow]]


class Shape:
    """Whether an account's API answers per bucket or sums each range (learned once, shared by
    every worker of the account); thread-safe."""

    def __init__(self, account: str, aggregate: bool = False) -> None:
        self.account = account
        self._aggregate = aggregate
        self._lock = threading.Lock()

    @property
    def aggregate(self) -> bool:
        """True once the API was seen summing a range into one row."""
        with self._lock:
            return self._aggregate

    def saw_aggregate(self, row: MetricRow) -> None:
        """The API answered one row for a range of days: read day by day from now on."""
        with self._lock:
            first = not self._aggregate
            self._aggregate = True
        if first:
            log.warning(
                "GetChatappTemplateMetric answered one row for a %.1f-day range: the API sums "
                "ranges, so each day is read on its own (one call per unit and day)",
                (row.end_ms - row.start_ms) / DAY_MS,
                extra={"account": self.account},
            )


@dataclass(frozen=True, slots=True)
class Stored:
    """What the state file holds for a unit: its live buckets ({start: end}) and the time up to
    which it folded them (rows must line up with them)."""

    buckets: Mapping[int, int]
    settled_until_ms: int


@dataclass(frozen=True, slots=True)
class UnitRows:
    """A unit's checked rows, and the step of the buckets they are (a day when read per day)."""

    rows: tuple[MetricRow, ...]
    step_ms: int


class UnitReader:
    """Reads one unit's rows for [start_ms, end_ms) through `fetch`."""

    def __init__(self, member: Member, fetch: Fetch, bucket_ms: int, shape: Shape) -> None:
        self.member, self.fetch, self.bucket_ms, self.shape = member, fetch, bucket_ms, shape

    def _rows(self, start_ms: int, end_ms: int) -> list[MetricRow]:
        """The unit's rows of one read; an empty answer is asked again once."""
        for _ in range(2):
            rows = rows_by_unit([self.member], self.fetch(start_ms, end_ms))[self.member.key]
            if rows:
                return rows
        return []

    def read(self, start_ms: int, end_ms: int, stored: Stored | None = None) -> UnitRows:
        """The unit's checked rows; AnomalousAnswer or CamsError when they cannot be had."""
        if not self.shape.aggregate:
            query = Query(start_ms, end_ms, self.bucket_ms)
            kept = check_rows(self._rows(start_ms, end_ms), query)
            wide = [r for r in kept if r.end_ms - r.start_ms > self.bucket_ms * 3 // 2]
            if not wide:
                if stored is not None:
                    check_against_buckets(kept, stored.buckets, stored.settled_until_ms)
                return UnitRows(kept, self.bucket_ms)
            self.shape.saw_aggregate(wide[0])
        return UnitRows(self._per_day(start_ms, end_ms), DAY_MS)

    def _per_day(self, start_ms: int, end_ms: int) -> tuple[MetricRow, ...]:
        """Each UTC day (clipped to the range) read on its own; like the poller, its checked
        rows are taken as the day's sum, one row [day start, day end)."""
        out: list[MetricRow] = []
        lower = start_ms
        code, language = self.member.match
        while lower < end_ms:
            upper = min(end_ms, floor_to(lower, DAY_MS) + DAY_MS)
            query = Query(lower, upper, self.bucket_ms, aggregate=True)
            tally = Tally.of_rows(check_rows(self._rows(lower, upper), query))
            clicks = tuple(ButtonCount(t, b, c) for (t, b), c in sorted(tally.clicks.items()))
            out.append(
                MetricRow(
                    code, language, tally.sent, tally.delivered, tally.read, clicks, lower, upper
                )
            )
            lower = upper
        return tuple(out)
