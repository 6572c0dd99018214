"""Exact cumulative counters: counts kept per bucket, settled totals, held revisions.

The API reports counts per time bucket, and a bucket keeps changing for days (late reads). So
each unit keeps the latest value of every bucket it has read since its origin: re-reading a
bucket replaces its value, never adds to it. A counter is the settled total (buckets that ended
before the lookback window, folded) plus the live buckets. A re-read that comes back lower than
what was already exported is held, so a counter never goes down, and counted: as a downward
revision, or, when only reads and clicks fell in a bucket past Meta's 7-day read window
(`exporter.cams.model.READ_WINDOW_MS`) while its sent and delivered stayed, as the read-window reset
Meta documents (expected, counted apart).

Every bucket folded after it was read live is remembered (`SettledCheck`, at most
`MAX_CHECKS` per unit, persisted) to be re-read once more later: a settled day the API then
answers differently (other than by the read-window reset) is a `SettledChange`, which says the
lookback was too short for the API. And a bucket read for the first time past the read window
with deliveries but no reads may have been reset before the exporter saw it: the unit's read and
click counters are complete only from the end of such a bucket (`reads_complete_since_ms`).

The units' states are kept and saved by `exporter.counting.store`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.cams.answers import safe_text
from exporter.cams.model import (
    DAY_MS,
    MetricRow,
    TemplateMeta,
    button_type_label,
    past_read_window,
)

log = logging.getLogger("cams_exporter.state")

STATE_VERSION = 1
MAX_CHECKS = 16  # settled days remembered per unit for their re-check (the newest kept)
ClickKey = tuple[str, str]  # (button_type label, button text)
# What a re-read that came back lower than the held value was (`UnitState.put`).
REVISION = "revision"
READ_WINDOW_RESET = "read_window_reset"


@dataclass(frozen=True, slots=True)
class Counts:
    """Cumulative counts of one unit. `clicks` is sorted ((button_type, button, count), ...)."""

    sent: int = 0
    delivered: int = 0
    read: int = 0
    clicks: tuple[tuple[str, str, int], ...] = ()


@dataclass(slots=True)
class Tally:
    """Mutable counts of one bucket or one settled total."""

    sent: int = 0
    delivered: int = 0
    read: int = 0
    clicks: dict[ClickKey, int] = field(default_factory=dict)

    @classmethod
    def of_rows(cls, rows: Iterable[MetricRow]) -> Tally:
        """The sum of some rows (button types normalised to their label)."""
        tally = cls()
        for row in rows:
            tally.sent += row.sent
            tally.delivered += row.delivered
            tally.read += row.read
            for click in row.clicks:
                key = (button_type_label(click.button_type), click.content)
                tally.clicks[key] = tally.clicks.get(key, 0) + click.count
        return tally

    def add(self, other: Tally) -> None:
        """Add another tally into this one."""
        self.sent += other.sent
        self.delivered += other.delivered
        self.read += other.read
        for key, count in other.clicks.items():
            self.clicks[key] = self.clicks.get(key, 0) + count

    def held_max(self, new: Tally) -> tuple[Tally, bool]:
        """`new`, except that any field lower than ours keeps our value; and whether one did."""
        merged = Tally(
            max(self.sent, new.sent), max(self.delivered, new.delivered), max(self.read, new.read)
        )
        merged.clicks = dict(new.clicks)
        for key, count in self.clicks.items():
            merged.clicks[key] = max(count, merged.clicks.get(key, 0))
        revised = (
            new.sent < self.sent
            or new.delivered < self.delivered
            or new.read < self.read
            or any(new.clicks.get(k, 0) < v for k, v in self.clicks.items())
        )
        return merged, revised

    def only_reads_fell(self, new: Tally) -> bool:
        """Whether `new` is lower than this tally in reads or clicks only: sent and delivered
        stayed (or grew). That is what Meta's read-window reset looks like."""
        reads_fell = new.read < self.read or any(
            new.clicks.get(k, 0) < v for k, v in self.clicks.items()
        )
        return reads_fell and new.sent >= self.sent and new.delivered >= self.delivered

    def copy(self) -> Tally:
        """An independent copy."""
        return Tally(self.sent, self.delivered, self.read, dict(self.clicks))

    def summary(self) -> tuple[int, int, int, int]:
        """(sent, delivered, read, clicks summed over buttons)."""
        return self.sent, self.delivered, self.read, sum(self.clicks.values())

    @property
    def active(self) -> bool:
        """Whether anything happened in this bucket."""
        return bool(self.sent or self.delivered or self.read or any(self.clicks.values()))

    def to_json(self) -> list[Any]:
        """Compact JSON form: [sent, delivered, read, [[type, button, count], ...]]."""
        clicks = [[t, b, c] for (t, b), c in sorted(self.clicks.items())]
        return [self.sent, self.delivered, self.read, clicks]

    @classmethod
    def from_json(cls, data: Any) -> Tally:
        """Inverse of to_json; ValueError when malformed."""
        if not isinstance(data, list) or len(data) != 4:
            raise ValueError("tally must be [sent, delivered, read, clicks]")
        sent, delivered, read, clicks = data
        tally = cls(_count(sent), _count(delivered), _count(read))
        if not isinstance(clicks, list):
            raise ValueError("clicks must be a list")
        for item in clicks:
            if not isinstance(item, list) or len(item) != 3:
                raise ValueError("click must be [type, button, count]")
            # Texts an older version stored unsanitised collapse onto one safe label.
            key = (safe_text(item[0]), safe_text(item[1]))
            tally.clicks[key] = tally.clicks.get(key, 0) + _count(item[2])
        return tally


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"count must be a non-negative integer, got {value!r}")
    return value


@dataclass(slots=True)
class Bucket:
    """The latest (held) counts of one bucket [start_ms, end_ms); not persisted: when it was
    first and last read, and whether its read-window reset was counted already."""

    end_ms: int
    tally: Tally
    first_read_ms: int = 0
    read_ms: int = 0
    reset_seen: bool = False


@dataclass(slots=True)
class SettledCheck:
    """Buckets of one day, folded into the settled total after they were read live, to be read
    once more when `due_ms` has come: [start_ms, end_ms) and what was settled for them."""

    start_ms: int
    end_ms: int
    tally: Tally
    folded_ms: int
    due_ms: int

    def to_json(self) -> list[Any]:
        """[start, end, folded, due, tally]."""
        return [self.start_ms, self.end_ms, self.folded_ms, self.due_ms, self.tally.to_json()]

    @classmethod
    def from_json(cls, data: Any) -> SettledCheck:
        """Inverse of to_json; ValueError when malformed."""
        if not isinstance(data, list) or len(data) != 5:
            raise ValueError("check must be [start, end, folded, due, tally]")
        start, end, folded, due, tally = data
        return cls(_count(start), _count(end), Tally.from_json(tally), _count(folded), _count(due))


@dataclass(frozen=True, slots=True)
class SettledChange:
    """A settled day the API answered differently when it was read again: its bucket start,
    its age when settled and when re-read, and (sent, delivered, read, clicks) before and now."""

    start_ms: int
    folded_age_ms: int
    age_ms: int
    before: tuple[int, int, int, int]
    after: tuple[int, int, int, int]


@dataclass(slots=True)
class UnitState:
    """Counters of one unit: settled total + live buckets since `settled_until_ms`."""

    origin_ms: int
    settled_until_ms: int
    granularity: str = "DAILY"
    settled: Tally = field(default_factory=Tally)
    buckets: dict[int, Bucket] = field(default_factory=dict)
    meta: TemplateMeta = field(default_factory=TemplateMeta)  # as last listed, for restarts
    newest_data_ms: int | None = None
    last_success: float | None = None
    last_error: str | None = None
    revisions_held: int = 0
    read_resets_held: int = 0  # buckets whose read-window reset was held (once each)
    settled_changes: int = 0  # settled days the API answered differently when re-read
    # Persisted: settled days to re-read once, by the UTC day of their start.
    checks: dict[int, SettledCheck] = field(default_factory=dict)
    # Persisted: the end of the newest bucket first read past the read window with deliveries
    # and no reads (None: complete from the origin).
    reads_incomplete_until_ms: int | None = None
    changed_at: float | None = None  # unix seconds: when a read last found its counts changed
    # Not persisted: an empty answer settles nothing until a second one agrees.
    empty_answer_at: int | None = None  # settled_until when a per-bucket read came back empty
    empty_reads: set[int] = field(default_factory=set)  # aggregate reads seen empty once

    @property
    def reads_complete_since_ms(self) -> int:
        """From when the read and click counters hold every read the API showed (the origin,
        unless buckets were first read after their reads may have been reset)."""
        return max(self.origin_ms, self.reads_incomplete_until_ms or 0)

    def put(self, start_ms: int, end_ms: int, tally: Tally, *, now_ms: int | None = None) -> str:
        """Replace bucket [start_ms, end_ms) with `tally`, holding any field that came lower.

        Returns "" when nothing fell, else what the fall was (counted): READ_WINDOW_RESET when
        only reads and clicks fell in a bucket past the read window at `now_ms` (counted once
        per bucket), REVISION otherwise (and always without `now_ms`).
        """
        if end_ms <= self.settled_until_ms:
            return ""  # already folded into the settled total
        if tally.active and (self.newest_data_ms is None or start_ms > self.newest_data_ms):
            self.newest_data_ms = start_ms
        now = 0 if now_ms is None else now_ms
        old = self.buckets.get(start_ms)
        if old is None:
            self.buckets[start_ms] = Bucket(end_ms, tally, first_read_ms=now, read_ms=now)
            if (
                now_ms is not None
                and past_read_window(start_ms, now_ms)
                and tally.delivered
                and not tally.read
            ):
                # Reads and clicks of this bucket may have been reset before it was ever read.
                self.reads_incomplete_until_ms = max(self.reads_incomplete_until_ms or 0, end_ms)
            return ""
        merged, revised = old.tally.held_max(tally)
        bucket = Bucket(max(end_ms, old.end_ms), merged, old.first_read_ms, now, old.reset_seen)
        self.buckets[start_ms] = bucket
        if not revised:
            return ""
        if (
            now_ms is not None
            and past_read_window(start_ms, now_ms)
            and old.tally.only_reads_fell(tally)
        ):
            if not bucket.reset_seen:
                bucket.reset_seen = True
                self.read_resets_held += 1
            return READ_WINDOW_RESET
        self.revisions_held += 1
        return REVISION

    def put_rows(self, rows: Iterable[MetricRow], *, now_ms: int | None = None) -> list[str]:
        """Apply per-bucket rows (one per bucket; duplicates merged); what fell, per bucket
        that fell (`put`), held."""
        grouped: dict[int, tuple[int, Tally]] = {}
        for row in rows:
            tally = Tally.of_rows((row,))
            end = max(row.end_ms, row.start_ms + 1)
            if row.start_ms in grouped:
                prev_end, prev = grouped[row.start_ms]
                tally, _ = prev.held_max(tally)
                end = max(end, prev_end)
            grouped[row.start_ms] = (end, tally)
        falls = (
            self.put(start, end, tally, now_ms=now_ms) for start, (end, tally) in grouped.items()
        )
        return [fall for fall in falls if fall]

    def fold(self, boundary_ms: int, *, now_ms: int | None = None, check_at_ms: int = 0) -> None:
        """Move buckets that ended by `boundary_ms` into the settled total.

        The caller must have just read every bucket from `settled_until_ms` up to now, so that
        nothing before `boundary_ms` can still be missing (sparse answers leave out buckets
        with no activity: those are zero). A bucket that straddles the boundary stays live.
        With `now_ms`, each folded bucket that was read live before (not first read by this
        very poll) is remembered, by the UTC day of its start, to be read again once at
        `check_at_ms` (`verify_settled`).
        """
        if boundary_ms <= self.settled_until_ms:
            return
        for start in sorted(self.buckets):
            bucket = self.buckets[start]
            if bucket.end_ms <= boundary_ms:
                self.settled.add(bucket.tally)
                del self.buckets[start]
                if now_ms is not None and bucket.first_read_ms < now_ms:
                    self._remember(start, bucket, now_ms, check_at_ms)
        self.settled_until_ms = boundary_ms

    def _remember(self, start_ms: int, bucket: Bucket, now_ms: int, check_at_ms: int) -> None:
        day = start_ms - start_ms % DAY_MS
        check = self.checks.get(day)
        if check is None:
            self.checks[day] = SettledCheck(
                start_ms, bucket.end_ms, bucket.tally.copy(), now_ms, check_at_ms
            )
        else:  # the next half hour of a day whose earlier ones were folded already
            check.start_ms = min(check.start_ms, start_ms)
            check.end_ms = max(check.end_ms, bucket.end_ms)
            check.tally.add(bucket.tally)
            check.due_ms = max(check.due_ms, check_at_ms)
        while len(self.checks) > MAX_CHECKS:
            del self.checks[min(self.checks)]

    def checks_due(self, now_ms: int) -> list[SettledCheck]:
        """The remembered settled days whose re-read is due, oldest first."""
        return [c for _, c in sorted(self.checks.items()) if c.due_ms <= now_ms]

    def verify_settled(
        self, found: Mapping[int, Tally], covered_from_ms: int, covered_to_ms: int, now_ms: int
    ) -> list[SettledChange]:
        """Compare the due checks that a read of [covered_from_ms, covered_to_ms) covered with
        what it found ({bucket start: counts}, buckets with no activity may be absent); each
        is done with once compared. A day whose counts differ, other than by the read-window
        reset, is a SettledChange (counted). With nothing found at all, a check of a day that
        had activity waits for another read (an empty answer proves nothing)."""
        changes: list[SettledChange] = []
        for day, check in sorted(self.checks.items()):
            covered = covered_from_ms <= check.start_ms and check.end_ms <= covered_to_ms
            if check.due_ms > now_ms or not covered:
                continue
            if not found and check.tally.active:
                continue
            now = Tally()
            for start, tally in found.items():
                if check.start_ms <= start < check.end_ms:
                    now.add(tally)
            del self.checks[day]
            if now.summary() == check.tally.summary() and now.clicks == check.tally.clicks:
                continue
            if past_read_window(check.start_ms, now_ms) and check.tally.only_reads_fell(now):
                continue  # Meta's reset after the read window, expected
            self.settled_changes += 1
            changes.append(
                SettledChange(
                    check.start_ms,
                    check.folded_ms - check.start_ms,
                    now_ms - check.start_ms,
                    check.tally.summary(),
                    now.summary(),
                )
            )
        return changes

    def total(self) -> Counts:
        """The exported counters: settled + every live bucket."""
        total = Tally()
        total.add(self.settled)
        for bucket in self.buckets.values():
            total.add(bucket.tally)
        return Counts(
            sent=total.sent,
            delivered=total.delivered,
            read=total.read,
            clicks=tuple((t, b, c) for (t, b), c in sorted(total.clicks.items())),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form for the state file."""
        return {
            "origin": self.origin_ms,
            "settled_until": self.settled_until_ms,
            "granularity": self.granularity,
            "settled": self.settled.to_json(),
            "buckets": [[s, b.end_ms, b.tally.to_json()] for s, b in sorted(self.buckets.items())],
            "meta": list(self.meta),
            "newest": self.newest_data_ms,
            "last_success": self.last_success,
            "checks": [c.to_json() for _, c in sorted(self.checks.items())],
            "reads_incomplete_until": self.reads_incomplete_until_ms,
            "changed": self.changed_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> UnitState:
        """Inverse of to_json; ValueError when malformed."""
        if not isinstance(data, dict):
            raise ValueError("unit must be an object")
        unit = cls(
            origin_ms=_count(data["origin"]),
            settled_until_ms=_count(data["settled_until"]),
            granularity=str(data.get("granularity", "DAILY")),
            settled=Tally.from_json(data["settled"]),
        )
        for item in data.get("buckets", []):
            start, end, tally = item
            unit.buckets[_count(start)] = Bucket(_count(end), Tally.from_json(tally))
        meta = data.get("meta") or ["", "", ""]
        if not isinstance(meta, list) or len(meta) != len(TemplateMeta._fields):
            raise ValueError("unit meta must be [name, category, audit status]")
        unit.meta = TemplateMeta(*(safe_text(x) for x in meta))
        newest = data.get("newest")
        unit.newest_data_ms = _count(newest) if newest is not None else None
        last = data.get("last_success")
        unit.last_success = float(last) if isinstance(last, int | float) else None
        checks = data.get("checks", [])  # absent in files written before settlement checks
        if not isinstance(checks, list):
            raise ValueError("checks must be a list")
        for item in checks[-MAX_CHECKS:]:
            check = SettledCheck.from_json(item)
            unit.checks[check.start_ms - check.start_ms % DAY_MS] = check
        incomplete = data.get("reads_incomplete_until")
        unit.reads_incomplete_until_ms = _count(incomplete) if incomplete is not None else None
        changed = data.get("changed")  # absent in files of versions before idle polling
        unit.changed_at = float(changed) if isinstance(changed, int | float) else None
        return unit
