"""The exact-counter strategies: how a group of units' buckets are read, checked and applied.

A *group* is what one read covers: one template-language unit, or every language of a template
when the API proved it answers one row per language without `Language`
(`exporter.templates.grouping`).
Two strategies keep the counters exact whatever the API's answer looks like:
- per-bucket (default): one read per group per poll over [settled boundary, now]; each row is a
  bucket, keyed by its own Start (so UTC, UTC+8 or sparse buckets all work);
- aggregate: if a unit's answer is one row spanning more than one bucket, the API sums the whole
  range into one row. The account switches (one log line, `cams_metric_shape_info`) to reading
  each day of the lookback window separately, and runs of older days as sums. Each day costs
  a call there, so only today and yesterday are read every poll; the older days of the window
  (whose reads still trickle in for a week) once an hour, each unit at its own minute.

Every day folded into the settled total after it was read live is read once more about a day
later (`UnitState.checks`, at a time spread per unit): per-bucket, by starting the poll's one
read earlier (no extra call); aggregate, by one read of that day. A day the API then answers
differently (other than by Meta's read-window reset) is counted and logged once per account
(`exporter.counting.readwindow`): the lookback is too short for the API. Falls of reads and
clicks past the read window while sent and delivered stay are held and counted apart as resets.

Every unit's rows are checked against the query (`answers.check_rows`) and against the unit's
stored buckets before anything is applied; a unit whose rows fail keeps its last good counts
and the failure names the anomaly. Days are settled (folded into the total) only after a
checked answer covered them; an empty answer settles nothing until a second one agrees.
`Counting` knows nothing of HTTP: it reads through a `Fetch` callable.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.cams.answers import normal_language
from exporter.cams.errors import AnomalousAnswer
from exporter.cams.model import DAY_MS, HALF_HOUR_MS, MetricRow, NumberKey, TemplateMeta, UnitKey
from exporter.config import PollConfig
from exporter.counting.checks import Query, check_against_buckets, check_rows
from exporter.counting.readwindow import ReadWindowLog
from exporter.counting.state import READ_WINDOW_RESET, REVISION, SettledChange, Tally, UnitState
from exporter.counting.store import CounterStore

log = logging.getLogger("cams_exporter.poller")

PER_BUCKET = "per-bucket"
AGGREGATE = "aggregate"

Fetch = Callable[[int, int], Sequence[MetricRow]]
Read = tuple[int, int, int]  # (bucket start, bucket end, query end)

HOUR_MS = 3_600_000
# A settled day is read again this long after it was folded, plus up to CHECK_SPREAD_MS (a
# fixed share per unit and day, so that an account's checks do not all fall in one cycle).
CHECK_AFTER_MS = DAY_MS
CHECK_SPREAD_MS = 6 * HOUR_MS
# Aggregate shape: days younger than this are read every poll, older days of the lookback
# window once per OLDER_DAYS_EVERY_MS.
EVERY_POLL_MS = 2 * DAY_MS
OLDER_DAYS_EVERY_MS = HOUR_MS


def spread(key: object, salt: int, span_ms: int) -> int:
    """A stable share of `span_ms` for a key (and a salt such as a day): the same in every
    process, so that restarts keep each unit's minute."""
    digest = hashlib.blake2b(f"{key!r}|{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % max(1, span_ms)


def bucket_ms(granularity: str) -> int:
    """Length of one bucket for a granularity."""
    return HALF_HOUR_MS if granularity == "HALF_HOUR" else DAY_MS


def floor_to(ms: int, step: int) -> int:
    """`ms` rounded down to a multiple of `step` (UTC-aligned buckets)."""
    return ms - ms % step


def unit_fields(key: UnitKey) -> dict[str, str]:
    """The log fields of a unit."""
    return {
        "account": key.account,
        "space": key.space,
        "template": key.template_code,
        "language": key.language,
    }


Key = Hashable  # a UnitKey for template units, a NumberKey for phone numbers


@dataclass(frozen=True, slots=True)
class Member:
    """One counted thing of a group: its key, what the exporter shows about it, the (code,
    language) its rows carry (the language compared loosely) and its log fields."""

    key: Key
    meta: TemplateMeta
    match: tuple[str, str]
    fields: Mapping[str, str]

    @classmethod
    def of_unit(cls, key: UnitKey, meta: TemplateMeta) -> Member:
        """A template-language unit."""
        return cls(key, meta, (key.template_code, normal_language(key.language)), unit_fields(key))

    @classmethod
    def of_number(cls, key: NumberKey) -> Member:
        """A phone number (its rows carry the number as their code, no language)."""
        fields = {"account": key.account, "space": key.space, "template": key.phone_number}
        return cls(key, TemplateMeta(), (key.phone_number, ""), fields)


def rows_by_unit(
    members: Sequence[Member], rows: Sequence[MetricRow]
) -> dict[Key, list[MetricRow]]:
    """Each member's rows: same code, language equal up to case and `_`/`-`. Rows of other
    templates or languages are left out."""
    index = {m.match: m.key for m in members}
    out: dict[Key, list[MetricRow]] = {m.key: [] for m in members}
    for row in rows:
        key = index.get((row.template_code, normal_language(row.language)))
        if key is not None:
            out[key].append(row)
    return out


class ShapeChanged(Exception):
    """The API answered in the aggregate shape while the account was in per-bucket mode."""


class Counting:
    """The counting strategy of one account and its switch; thread-safe."""

    def __init__(
        self,
        account: str,
        poll: PollConfig,
        store: CounterStore,
        *,
        clock: Callable[[], float] = time.time,
        table: MutableMapping[Any, UnitState] | None = None,
        shape_key: str | None = None,
        action: str = "GetChatappTemplateMetric",
        read_window: ReadWindowLog | None = None,
    ) -> None:
        self.account, self.poll, self.store, self.clock = account, poll, store, clock
        self.action = action
        self.read_window = read_window or ReadWindowLog(clock)
        self.bucket_ms = bucket_ms(poll.granularity)
        self._table: MutableMapping[Any, UnitState] = store.units if table is None else table
        self._shape_key = shape_key or account  # where the learned shape is stored
        self._lock = threading.Lock()
        self._shape = store.shapes.get(self._shape_key, PER_BUCKET)
        self._polled_per_bucket: set[Key] = set()

    @property
    def shape(self) -> str:
        """`per-bucket` or `aggregate`: how the API answers, as far as the account has seen."""
        return self._shape

    def _lookback_ms(self) -> int:
        return int(self.poll.lookback_s * 1000)

    def _origin_ms(self, now_ms: int) -> int:
        since = self.poll.counters_since
        if since is not None:
            return int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp() * 1000)
        # In aggregate mode the exporter reads whole days, so its windows start at midnight.
        step = DAY_MS if self._shape == AGGREGATE else self.bucket_ms
        return floor_to(now_ms - self._lookback_ms(), step)

    def unit_state(self, member: Member, now_ms: int) -> UnitState:
        """The unit's state, created at its origin if new."""
        key = member.key
        with self.store.lock:
            state = self._table.get(key)
            if state is not None and state.granularity != self.poll.granularity:
                log.warning(
                    "granularity changed to %s: counters restart",
                    self.poll.granularity,
                    extra=dict(member.fields),
                )
                state = None
            if state is None:
                origin = self._origin_ms(now_ms)
                state = UnitState(origin, origin, granularity=self.poll.granularity)
                self._table[key] = state
            if member.meta.name:
                state.meta = member.meta
            return state

    def poll_group(self, members: Sequence[Member], fetch: Fetch) -> dict[Key, AnomalousAnswer]:
        """Read a group once and apply what checks out; the units whose answer did not.

        Raises CamsError when the read itself failed (then no unit changed).
        """
        while True:
            try:
                if self._shape == AGGREGATE:
                    return self._poll_aggregate(members, fetch)
                return self._poll_per_bucket(members, fetch)
            except ShapeChanged:
                continue

    # -- per-bucket ------------------------------------------------------------------------

    def _poll_per_bucket(
        self, members: Sequence[Member], fetch: Fetch
    ) -> dict[Key, AnomalousAnswer]:
        now_ms = int(self.clock() * 1000)
        states = {m.key: self.unit_state(m, now_ms) for m in members}
        open_states = [s for s in states.values() if s.settled_until_ms < now_ms]
        if not open_states:
            return {}
        # Always ask for at least two whole buckets plus today's, whatever the lookback: an API
        # that sums the range into one row then shows it at once. Rows before a unit's settled
        # boundary are ignored by its state, so the longer range costs nothing.
        # A settled day due for its re-check starts the read earlier: no extra call.
        with self.store.lock:
            due = [c.start_ms for s in open_states for c in s.checks_due(now_ms)]
        start = min(
            min(s.settled_until_ms for s in open_states),
            floor_to(now_ms, self.bucket_ms) - 2 * self.bucket_ms,
            *due,
        )
        query = Query(start, now_ms, self.bucket_ms)
        grouped = rows_by_unit(members, fetch(start, now_ms))
        failed: dict[Key, AnomalousAnswer] = {}
        checked: dict[Key, tuple[MetricRow, ...]] = {}
        fields = {m.key: m.fields for m in members}
        for key, rows in grouped.items():
            state = states[key]
            try:
                kept = check_rows(rows, query)
                if any(r.end_ms - r.start_ms > self.bucket_ms * 3 // 2 for r in kept):
                    with self._lock:
                        if self._shape == PER_BUCKET:
                            self._switch_to_aggregate(kept[0])
                    raise ShapeChanged
                with self.store.lock:
                    ends = {s: b.end_ms for s, b in state.buckets.items()}
                check_against_buckets(kept, ends, state.settled_until_ms)
            except AnomalousAnswer as anomaly:
                failed[key] = anomaly
                continue
            checked[key] = kept
        with self._lock:
            if self._shape != PER_BUCKET:
                raise ShapeChanged
            self._polled_per_bucket.update(checked)
        boundary = floor_to(now_ms - self._lookback_ms(), self.bucket_ms)
        for key, kept_rows in checked.items():
            state = states[key]
            found: dict[int, Tally] = {}
            for row in kept_rows:
                found.setdefault(row.start_ms, Tally()).add(Tally.of_rows((row,)))
            with self.store.lock:
                changes = state.verify_settled(found, start, now_ms, now_ms)
                falls = state.put_rows(kept_rows, now_ms=now_ms)
                if kept_rows or state.empty_answer_at == state.settled_until_ms:
                    state.fold(boundary, now_ms=now_ms, check_at_ms=self._check_at(key, now_ms))
                    state.empty_answer_at = None
                else:  # nothing at all: settle nothing until a second answer agrees
                    state.empty_answer_at = state.settled_until_ms
            self._note_falls(key, falls, changes, fields[key])
        return failed

    def _check_at(self, key: Key, now_ms: int) -> int:
        """When days folded now are read again: a day later, at the unit's own time."""
        return now_ms + CHECK_AFTER_MS + spread(key, now_ms // DAY_MS, CHECK_SPREAD_MS)

    def _switch_to_aggregate(self, row: MetricRow) -> None:
        """Called with the lock held: the API sums ranges, so read day by day from now on."""
        log.warning(
            "%s answered one row for a %.1f-day range: the API aggregates ranges, switching "
            "to per-day reads to keep counters exact",
            self.action,
            (row.end_ms - row.start_ms) / DAY_MS,
            extra={"account": self.account},
        )
        self._shape = AGGREGATE
        with self.store.lock:
            self.store.shapes[self._shape_key] = AGGREGATE
            for key in self._polled_per_bucket:
                self._table.pop(key, None)
        self._polled_per_bucket.clear()

    # -- aggregate -------------------------------------------------------------------------

    def _aggregate_reads(self, key: Key, state: UnitState, now_ms: int) -> list[Read]:
        """Every read an aggregate poll of one unit makes: today and yesterday alone, each older
        day of the lookback window alone when its hourly re-read is due (or it was never read),
        runs of unseen older days as sums of at most max_range."""
        step = DAY_MS
        boundary = floor_to(now_ms - self._lookback_ms(), step)
        max_range = max(step, floor_to(int(self.poll.max_range_s * 1000), step))
        recent = floor_to(now_ms, step) - EVERY_POLL_MS + step  # yesterday's start
        phase = spread(key, 0, OLDER_DAYS_EVERY_MS)
        cursor = state.settled_until_ms  # day-aligned: origin and boundaries are midnights
        reads: list[Read] = []
        gap_start: int | None = None
        while cursor < now_ms:
            end = floor_to(cursor, step) + step
            bucket = state.buckets.get(cursor)
            unseen_old = end <= boundary and bucket is None
            if unseen_old:
                if gap_start is None:
                    gap_start = cursor
                if end - gap_start >= max_range:
                    reads.append((gap_start, end, end))
                    gap_start = None
            else:
                if gap_start is not None:
                    reads.append((gap_start, cursor, cursor))
                    gap_start = None
                hour_now = (now_ms - phase) // OLDER_DAYS_EVERY_MS
                read_recently = (
                    bucket is not None
                    and cursor < recent
                    and (bucket.read_ms - phase) // OLDER_DAYS_EVERY_MS == hour_now
                )
                if not read_recently:
                    reads.append((cursor, end, min(end, now_ms)))
            cursor = end
        if gap_start is not None:
            reads.append((gap_start, cursor, min(cursor, now_ms)))
        return reads

    def _poll_aggregate(
        self, members: Sequence[Member], fetch: Fetch
    ) -> dict[Key, AnomalousAnswer]:
        # A day's sum is exact whatever the granularity; reading half hours one by one would
        # cost 48 calls a day for nothing. Each distinct read is made once for the group.
        now_ms = int(self.clock() * 1000)
        states = {m.key: self.unit_state(m, now_ms) for m in members}
        plans = {key: self._aggregate_reads(key, state, now_ms) for key, state in states.items()}
        with self.store.lock:  # a settled day due for its re-check: one read of that day
            checks = {
                key: [(c.start_ms, c.end_ms, min(c.end_ms, now_ms)) for c in s.checks_due(now_ms)]
                for key, s in states.items()
            }
        answers: dict[Read, dict[Key, list[MetricRow]]] = {}
        fields = {m.key: m.fields for m in members}
        wanted = {r for plan in plans.values() for r in plan}
        wanted.update(r for due in checks.values() for r in due)
        for read in sorted(wanted):
            answers[read] = rows_by_unit(members, fetch(read[0], read[2]))
        boundary = floor_to(now_ms - self._lookback_ms(), DAY_MS)
        failed: dict[Key, AnomalousAnswer] = {}
        for key, plan in plans.items():
            state = states[key]
            try:
                results = [self._aggregate_tally(read, answers[read][key], state) for read in plan]
                rechecked = [
                    (read, self._aggregate_tally(read, answers[read][key], state))
                    for read in checks[key]
                ]
            except AnomalousAnswer as anomaly:
                failed[key] = anomaly
                continue
            falls: list[str] = []
            changes: list[SettledChange] = []
            with self.store.lock:
                for (lower, upper, _), found in rechecked:
                    if found is not None:
                        changes += state.verify_settled({lower: found}, lower, upper, now_ms)
                for (lower, upper, _), tally in zip(plan, results, strict=True):
                    if tally is not None and (
                        fall := state.put(lower, upper, tally, now_ms=now_ms)
                    ):
                        falls.append(fall)
                if all(tally is not None for tally in results):
                    state.fold(boundary, now_ms=now_ms, check_at_ms=self._check_at(key, now_ms))
            self._note_falls(key, falls, changes, fields[key])
        return failed

    def _aggregate_tally(self, read: Read, rows: list[MetricRow], state: UnitState) -> Tally | None:
        """The checked sum one aggregate read gives a unit (None: empty, not yet confirmed)."""
        lower, _, query_end = read
        kept = check_rows(rows, Query(lower, query_end, self.bucket_ms, aggregate=True))
        if not kept:
            with self.store.lock:
                if lower not in state.empty_reads:
                    state.empty_reads.add(lower)  # settle nothing until a second read agrees
                    return None
                state.empty_reads.discard(lower)
        return Tally.of_rows(kept)

    def _note_falls(
        self,
        key: Key,
        falls: Sequence[str],
        changes: Sequence[SettledChange],
        fields: Mapping[str, str],
    ) -> None:
        """Log what one unit's poll held or found: revisions once per unit, resets and settled
        changes once per account."""
        self._note_revisions(key, falls.count(REVISION), fields)
        self.read_window.resets(self.account, falls.count(READ_WINDOW_RESET))
        self.read_window.changes(fields, changes, self.poll.lookback_s, self.bucket_ms)

    def _note_revisions(self, key: Key, revisions: int, fields: Mapping[str, str]) -> None:
        if revisions:
            state = self._table.get(key)
            if state is not None and state.revisions_held == revisions:
                log.warning(
                    "the API lowered counts it had reported; holding the higher values "
                    "(logged once per template or number)",
                    extra=dict(fields),
                )
