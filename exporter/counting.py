"""The exact-counter strategies: how one unit's buckets are read and applied to its state.

Two strategies keep the counters exact whatever the API's answer looks like:
- per-bucket (default): one read per unit per poll over [settled boundary, now]; each row is a
  bucket, keyed by its own Start (so UTC, UTC+8 or sparse buckets all work);
- aggregate: if a row ever spans more than one bucket, the API sums the whole range into one
  row. The account switches (one log line, `cams_metric_shape_info`) to reading each day of the
  lookback window separately, and ranges older than the window as sums.

`Counting` holds the account's shape and applies reads to the `CounterStore`. It reads through
a `Fetch` callable (one unit's rows for [start, end)), so it knows nothing of HTTP.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from exporter.config import PollConfig
from exporter.model import DAY_MS, HALF_HOUR_MS, MetricRow, UnitKey
from exporter.state import CounterStore, Tally, UnitState

log = logging.getLogger("cams_exporter.poller")

PER_BUCKET = "per-bucket"
AGGREGATE = "aggregate"

Fetch = Callable[[int, int], Sequence[MetricRow]]


def bucket_ms(granularity: str) -> int:
    """Length of one bucket for a granularity."""
    return HALF_HOUR_MS if granularity == "HALF_HOUR" else DAY_MS


def floor_to(ms: int, step: int) -> int:
    """`ms` rounded down to a multiple of `step` (UTC-aligned buckets)."""
    return ms - ms % step


def _fields(key: UnitKey) -> dict[str, str]:
    return {
        "account": key.account,
        "space": key.space,
        "template": key.template_code,
        "language": key.language,
    }


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
    ) -> None:
        self.account = account
        self.poll = poll
        self.store = store
        self.clock = clock
        self.bucket_ms = bucket_ms(poll.granularity)
        self._lock = threading.Lock()
        self._shape = store.shapes.get(account, PER_BUCKET)
        self._polled_per_bucket: set[UnitKey] = set()

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

    def unit_state(self, key: UnitKey, meta: tuple[str, str, str], now_ms: int) -> UnitState:
        """The unit's state, created at its origin if new; `meta` is (name, category, status)."""
        with self.store.lock:
            state = self.store.units.get(key)
            if state is not None and state.granularity != self.poll.granularity:
                log.warning(
                    "granularity changed to %s: counters restart",
                    self.poll.granularity,
                    extra=_fields(key),
                )
                state = None
            if state is None:
                origin = self._origin_ms(now_ms)
                state = UnitState(origin, origin, granularity=self.poll.granularity)
                self.store.units[key] = state
            if meta[0]:
                state.name, state.category, state.audit_status = meta
            return state

    def poll_unit(self, key: UnitKey, meta: tuple[str, str, str], fetch: Fetch) -> None:
        """Read one unit and apply it to the store; raises CamsError on failure."""
        while True:
            try:
                if self._shape == AGGREGATE:
                    self._poll_aggregate(key, meta, fetch)
                else:
                    self._poll_per_bucket(key, meta, fetch)
                return
            except ShapeChanged:
                continue

    def _poll_per_bucket(self, key: UnitKey, meta: tuple[str, str, str], fetch: Fetch) -> None:
        now_ms = int(self.clock() * 1000)
        state = self.unit_state(key, meta, now_ms)
        if state.settled_until_ms >= now_ms:
            return
        # Always ask for at least two whole buckets plus today's, whatever the lookback: an API
        # that sums the range into one row then shows it at once. Rows before the settled
        # boundary are ignored by the state, so the longer range costs nothing.
        start = min(state.settled_until_ms, floor_to(now_ms, self.bucket_ms) - 2 * self.bucket_ms)
        rows = fetch(start, now_ms)
        wide = [r for r in rows if r.end_ms - r.start_ms > self.bucket_ms * 3 // 2]
        with self._lock:
            if self._shape != PER_BUCKET:
                raise ShapeChanged
            if wide:
                self._switch_to_aggregate(wide[0])
                raise ShapeChanged
            self._polled_per_bucket.add(key)
        with self.store.lock:
            revisions = state.put_rows(rows)
            state.fold(floor_to(now_ms - self._lookback_ms(), self.bucket_ms))
        self._note_revisions(key, revisions)

    def _switch_to_aggregate(self, row: MetricRow) -> None:
        """Called with the lock held: the API sums ranges, so read day by day from now on."""
        log.warning(
            "GetChatappTemplateMetric answered one row for a %.1f-day range: the API "
            "aggregates ranges, switching to per-day reads to keep counters exact",
            (row.end_ms - row.start_ms) / DAY_MS,
            extra={"account": self.account},
        )
        self._shape = AGGREGATE
        with self.store.lock:
            self.store.shapes[self.account] = AGGREGATE
            for key in self._polled_per_bucket:
                self.store.units.pop(key, None)
        self._polled_per_bucket.clear()

    def _aggregate_reads(self, state: UnitState, now_ms: int) -> list[tuple[int, int, int]]:
        """(bucket start, bucket end, query end) of every read an aggregate poll makes: each
        day of the lookback window alone, runs of unseen older days as sums of max_range."""
        step = DAY_MS
        boundary = floor_to(now_ms - self._lookback_ms(), step)
        max_range = max(step, floor_to(int(self.poll.max_range_s * 1000), step))
        cursor = state.settled_until_ms  # day-aligned: origin and boundaries are midnights
        reads: list[tuple[int, int, int]] = []
        gap_start: int | None = None
        while cursor < now_ms:
            end = floor_to(cursor, step) + step
            unseen_old = end <= boundary and cursor not in state.buckets
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
                reads.append((cursor, end, min(end, now_ms)))
            cursor = end
        if gap_start is not None:
            reads.append((gap_start, cursor, min(cursor, now_ms)))
        return reads

    def _poll_aggregate(self, key: UnitKey, meta: tuple[str, str, str], fetch: Fetch) -> None:
        # A day's sum is exact whatever the granularity; reading half hours one by one would
        # cost 48 calls a day for nothing.
        now_ms = int(self.clock() * 1000)
        state = self.unit_state(key, meta, now_ms)
        results = [
            (lower, upper, Tally.of_rows(fetch(lower, query_end)))
            for lower, upper, query_end in self._aggregate_reads(state, now_ms)
        ]
        revisions = 0
        with self.store.lock:
            for lower, upper, tally in results:
                revisions += state.put(lower, upper, tally)
            state.fold(floor_to(now_ms - self._lookback_ms(), DAY_MS))
        self._note_revisions(key, revisions)

    def _note_revisions(self, key: UnitKey, revisions: int) -> None:
        if revisions:
            state = self.store.units.get(key)
            if state is not None and state.revisions_held == revisions:
                log.warning(
                    "the API lowered counts it had reported; holding the higher values "
                    "(logged once per template)",
                    extra=_fields(key),
                )
