"""One unit's history: its counters as they stood at the end of each bucket, from its origin.

The running exporter's counter is the sum of every bucket that ends after its origin (a bucket
that straddles the origin counts whole, as `UnitState.put` keeps it), so the value at a bucket's
end is that sum over the buckets that ended by then. `unit_history` computes it at the origin
(0), at every bucket end up to `until` (buckets not yet complete are left to the live exporter),
and keeps the samples from `since` on. Buckets the API left out (a sparse answer) count as 0,
as they do for the poller.

What the API no longer vouches for is left out, not invented:
- reads and clicks of days past the API's 7-day read window, when its answers show it zeroes
  them (Meta documents the reset; CAMS may pass it through): every old bucket with deliveries
  says 0 reads and 0 clicks. The read and click series then start at the end of the last such
  bucket, at what the API still counts for the days before it, which is what the live exporter
  counts too, so the two meet without a step; the days before carry sent and delivered only.
- nothing older than the retention: the caller does not read a unit whose origin is past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exporter.cams.model import DAY_MS, MetricRow
from exporter.counting.state import Counts, Tally

READ_WINDOW_MS = 7 * DAY_MS  # reads and clicks of a day keep arriving, then may reset to 0
RETENTION_MS = 90 * DAY_MS  # how far back template analytics go (Meta documents 90 days)


@dataclass(frozen=True, slots=True)
class Window:
    """What is written for a unit: samples at [since_ms, until_ms] of counters summed from
    `origin_ms`, on a grid of `step_ms` buckets, judged at `now_ms`."""

    origin_ms: int
    since_ms: int
    until_ms: int
    now_ms: int
    step_ms: int = DAY_MS


@dataclass(frozen=True, slots=True)
class Point:
    """The unit's counters at one moment (the end of a bucket, or the origin)."""

    at_ms: int
    counts: Counts


@dataclass(frozen=True, slots=True)
class UnitHistory:
    """A unit's counters at each sample time; read and click samples only from `reads_from_ms`
    on (None: all of them); `buttons` every (button_type, button) the answers named."""

    points: tuple[Point, ...]
    reads_from_ms: int | None = None
    buttons: tuple[tuple[str, str], ...] = ()

    def reads_at(self, at_ms: int) -> bool:
        """Whether the read and click counters are written at `at_ms`."""
        return self.reads_from_ms is None or at_ms >= self.reads_from_ms


def _grid_offset(rows: Sequence[MetricRow], step: int) -> int:
    """Where the API's buckets start within a step (UTC midnight when no whole bucket shows)."""
    for row in rows:
        if abs(row.end_ms - row.start_ms - step) <= 1:
            return row.start_ms % step
    return 0


def sample_times(window: Window, offset: int) -> list[int]:
    """The origin and every bucket end after it up to `until` (and complete by `now`), kept
    from `since` on."""
    last = min(window.until_ms, window.now_ms)
    step = window.step_ms
    origin = window.origin_ms
    first_end = origin + step - (origin - offset) % step
    times = [origin, *range(first_end, last + 1, step)]
    return [t for t in times if window.since_ms <= t <= last]


def zeroed_reads_until(rows: Sequence[MetricRow], now_ms: int) -> int | None:
    """The end of the last bucket past the read window when the answers show the API zeroes
    the reads and clicks there (deliveries, yet not one read or click in any such bucket);
    None when nothing says so."""
    past = [r for r in rows if r.end_ms + READ_WINDOW_MS <= now_ms]
    if not any(r.delivered for r in past):
        return None
    if any(r.read or any(c.count for c in r.clicks) for r in past):
        return None
    return max(r.end_ms for r in past)


def _counts(tally: Tally) -> Counts:
    return Counts(
        sent=tally.sent,
        delivered=tally.delivered,
        read=tally.read,
        clicks=tuple((t, b, c) for (t, b), c in sorted(tally.clicks.items())),
    )


def unit_history(rows: Sequence[MetricRow], window: Window) -> UnitHistory:
    """The unit's counters at each sample time of `window`, from its checked rows."""
    counted = sorted((r for r in rows if r.end_ms > window.origin_ms), key=lambda r: r.end_ms)
    buttons = sorted(Tally.of_rows(counted).clicks)
    running = Tally(clicks=dict.fromkeys(buttons, 0))
    points: list[Point] = []
    index = 0
    for at in sample_times(window, _grid_offset(counted, window.step_ms)):
        while index < len(counted) and counted[index].end_ms <= at:
            running.add(Tally.of_rows((counted[index],)))
            index += 1
        points.append(Point(at, _counts(running)))
    return UnitHistory(tuple(points), zeroed_reads_until(counted, window.now_ms), tuple(buttons))
