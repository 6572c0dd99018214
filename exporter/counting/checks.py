"""One unit's rows checked against the query they answer, and against the buckets it stored.

`check_rows`: every row inside the queried range (a bucket may stick out by less than one bucket
on either side, as flooring or a partial last bucket does), a length that fits the granularity
(or the aggregate shape), bucket starts on a time-zone boundary (whole quarter hours) and the
same one for every row, no row overlapping another. Exact duplicates are kept once, and a
summary row equal to the sum of the rows it covers is dropped; anything else that overlaps is
an anomaly. `check_against_buckets`: no row that contradicts a bucket the unit already holds.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from exporter.cams.errors import AnomalousAnswer
from exporter.cams.model import MetricRow

_QUARTER_HOUR_MS = 900_000
# Before 1973 in milliseconds, yet a plausible date in seconds: a Start or End sent in seconds.
_SECONDS_LIMIT = 100_000_000_000


@dataclass(frozen=True, slots=True)
class Query:
    """What one GetChatappTemplateMetric call asked for: [start_ms, end_ms) in buckets of
    `bucket_ms`; `aggregate` when the account's API sums a range into one row."""

    start_ms: int
    end_ms: int
    bucket_ms: int
    aggregate: bool = False


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")
    except (OverflowError, OSError, ValueError):
        return str(ms)


def _span(start: int, end: int) -> str:
    return f"[{_iso(start)}, {_iso(end)})"


def _tally_key(row: MetricRow) -> tuple[object, ...]:
    return (row.sent, row.delivered, row.read, tuple(sorted(row.clicks, key=repr)))


def _is_summary(candidate: MetricRow, others: Sequence[MetricRow]) -> bool:
    """Whether `candidate` overlaps all `others` and its counts are exactly their sum (a
    summary of the range, whose last bucket may end after the query's End)."""
    if not others or any(
        r.end_ms <= candidate.start_ms or r.start_ms >= candidate.end_ms for r in others
    ):
        return False
    clicks: dict[tuple[str, str], int] = {}
    for row in others:
        for click in row.clicks:
            key = (click.button_type, click.content)
            clicks[key] = clicks.get(key, 0) + click.count
    mine: dict[tuple[str, str], int] = {}
    for click in candidate.clicks:
        key = (click.button_type, click.content)
        mine[key] = mine.get(key, 0) + click.count
    return (
        candidate.sent == sum(r.sent for r in others)
        and candidate.delivered == sum(r.delivered for r in others)
        and candidate.read == sum(r.read for r in others)
        and {k: v for k, v in mine.items() if v} == {k: v for k, v in clicks.items() if v}
    )


def _dedupe(rows: Sequence[MetricRow]) -> list[MetricRow]:
    """Rows with exact duplicates kept once and a summary row of the others dropped."""
    unique: dict[tuple[object, ...], MetricRow] = {}
    for row in rows:
        unique.setdefault((row.start_ms, row.end_ms, *_tally_key(row)), row)
    kept = sorted(unique.values(), key=lambda r: (r.start_ms, -r.end_ms))
    if len(kept) > 2:
        widest = max(kept, key=lambda r: r.end_ms - r.start_ms)
        others = [r for r in kept if r is not widest]
        if _overlapping(kept) and not _overlapping(others) and _is_summary(widest, others):
            return others
    return kept


def _overlapping(rows: Sequence[MetricRow]) -> tuple[MetricRow, MetricRow] | None:
    """The first two rows (sorted by start) that overlap, or None."""
    ordered = sorted(rows, key=lambda r: (r.start_ms, r.end_ms))
    for before, after in itertools.pairwise(ordered):
        if after.start_ms < before.end_ms:
            return before, after
    return None


def _check_inside(row: MetricRow, query: Query) -> None:
    slack = query.bucket_ms
    overlaps = row.end_ms > query.start_ms and row.start_ms < query.end_ms
    if overlaps and query.start_ms - slack <= row.start_ms and row.end_ms <= query.end_ms + slack:
        return
    detail = (
        f"expected rows inside the queried {_span(query.start_ms, query.end_ms)}, "
        f"got a row {_span(row.start_ms, row.end_ms)}"
    )
    if row.end_ms < _SECONDS_LIMIT and query.start_ms >= _SECONDS_LIMIT:
        detail += " (its Start and End look like seconds, not milliseconds)"
    raise AnomalousAnswer("outside_range", detail)


def _check_length(row: MetricRow, query: Query, offset: int | None) -> int | None:
    """Check one per-bucket row's length and alignment; the alignment offset it shows."""
    bucket = query.bucket_ms
    length = row.end_ms - row.start_ms
    if bucket - 1 <= length <= bucket + 1:  # a whole bucket (End inclusive or exclusive)
        start_offset = row.start_ms % bucket
        if start_offset % _QUARTER_HOUR_MS:
            raise AnomalousAnswer(
                "misaligned",
                f"expected buckets starting on a time-zone boundary, got a bucket "
                f"{_span(row.start_ms, row.end_ms)} starting at {row.start_ms} ms",
            )
        if offset is not None and start_offset != offset:
            raise AnomalousAnswer(
                "misaligned",
                f"expected every bucket aligned like the first (offset {offset} ms), got "
                f"{_span(row.start_ms, row.end_ms)}",
            )
        return start_offset
    at_edge = row.start_ms <= query.start_ms or row.end_ms >= query.end_ms - bucket
    if length < bucket and at_edge:  # clipped to the query, or today's partial bucket
        return offset
    raise AnomalousAnswer(
        "bad_length",
        f"expected rows of one {bucket // 60000}-minute bucket, got a row "
        f"{_span(row.start_ms, row.end_ms)} of {length / 3_600_000:g} h",
    )


def check_rows(rows: Sequence[MetricRow], query: Query) -> tuple[MetricRow, ...]:
    """One unit's rows, deduplicated and checked against `query`; AnomalousAnswer otherwise.

    In per-bucket mode rows longer than 1.5 buckets pass (the caller sees the aggregate shape
    in them); in aggregate mode at most one row is expected, spanning the query.
    """
    kept = _dedupe(rows)
    for row in kept:
        _check_inside(row, query)
    if query.aggregate and len(kept) <= 1:
        return tuple(kept)
    if query.aggregate:  # rows per day again: their sum is the read's, if they tile it
        _check_buckets(kept, query)
        return tuple(kept)
    wide = [r for r in kept if r.end_ms - r.start_ms > query.bucket_ms * 3 // 2]
    pair = _overlapping(kept)
    if wide and pair is None:
        return tuple(kept)  # the aggregate shape: the caller switches and reads again
    if wide:
        raise AnomalousAnswer(
            "overlap",
            f"expected one row per bucket, got a row {_span(wide[0].start_ms, wide[0].end_ms)} "
            f"overlapping {len(kept) - 1} others (and not their exact sum)",
        )
    _check_buckets(kept, query)
    return tuple(kept)


def _check_buckets(rows: Sequence[MetricRow], query: Query) -> None:
    """Per-bucket rows: each one bucket long (or clipped at an edge), aligned alike, apart."""
    offset: int | None = None
    for row in rows:
        offset = _check_length(row, query, offset)
    pair = _overlapping(rows)
    if pair is not None:
        first, second = pair
        raise AnomalousAnswer(
            "overlap",
            f"expected rows that do not overlap, got {_span(first.start_ms, first.end_ms)} "
            f"and {_span(second.start_ms, second.end_ms)}",
        )


def check_against_buckets(
    rows: Sequence[MetricRow], buckets: Mapping[int, int], settled_until_ms: int
) -> None:
    """Rows must line up with the unit's stored buckets ({start: end}): a new row that
    overlaps a stored bucket starting elsewhere means the API changed its alignment."""
    starts = sorted(buckets)
    for row in rows:
        if row.start_ms in buckets or row.end_ms <= settled_until_ms:
            continue
        for start in starts:
            end = buckets[start]
            if start < row.end_ms and end > row.start_ms:
                raise AnomalousAnswer(
                    "alignment_changed",
                    f"expected buckets aligned like the stored {_span(start, end)}, got "
                    f"{_span(row.start_ms, row.end_ms)}",
                )
