"""CAMS answers -> value objects, checked before anything is applied.

`parse_metric_answer` turns a GetChatappTemplateMetric body into `MetricRow` values and
`parse_templates` a ListChatappTemplate page into `Template` values. Both refuse what they cannot
vouch for with `AnomalousAnswer` (never a silent zero): `Success: false`, a missing or null
`Data`, a count that is not a non-negative integer (numeric strings and integral floats are
fine: `"10"`, `10.0`, `"10.0"`), a row whose `End` is not after its `Start`.

`check_rows` then checks one unit's rows against the query they answer: every row inside the
queried range (a bucket may stick out by less than one bucket on either side, as flooring or
a partial last bucket does), a length that fits the granularity (or the aggregate shape), bucket
starts on a time-zone boundary (whole quarter hours) and the same one for every row, no row
overlapping another. Exact duplicates are kept once, and a summary row equal to the sum of the
rows it covers is dropped; anything else that overlaps is an anomaly.

Every text that may become a label value goes through `safe_text`: lone UTF-16 surrogates,
control characters (C0, DEL, C1) and undecodable bytes become U+FFFD, so rendering can never fail.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.cams.errors import AnomalousAnswer
from exporter.cams.model import ButtonCount, MetricRow, Template

REPLACEMENT = "\ufffd"
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_QUARTER_HOUR_MS = 900_000
# Before 1973 in milliseconds, yet a plausible date in seconds: a Start or End sent in seconds.
_SECONDS_LIMIT = 100_000_000_000


def safe_text(value: Any) -> str:
    """`value` as text that is valid UTF-8 and free of control characters (U+FFFD instead)."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(REPLACEMENT, text)


def normal_language(language: str) -> str:
    """A language code compared loosely: case and `_`/`-` do not matter (pt_BR == pt-br)."""
    return language.strip().lower().replace("-", "_")


def count_value(value: Any, what: str = "count") -> int:
    """A non-negative integer count; absent or null is 0. AnomalousAnswer otherwise."""
    if value is None:
        return 0
    number: float
    if isinstance(value, bool):
        raise AnomalousAnswer("bad_count", f"expected {what} to be an integer, got {value!r}")
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip()) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            raise AnomalousAnswer(
                "bad_count", f"expected {what} to be an integer, got {safe_text(value)[:40]!r}"
            ) from None
    else:
        raise AnomalousAnswer(
            "bad_count", f"expected {what} to be an integer, got a {type(value).__name__}"
        )
    if not math.isfinite(number) or number != int(number) or number < 0:
        raise AnomalousAnswer(
            "bad_count", f"expected {what} to be a non-negative integer, got {value!r}"
        )
    return int(number)


def _success_and_data(body: Mapping[str, Any], action: str, key: str) -> list[Any]:
    if body.get("Success") is False:
        raise AnomalousAnswer(
            "success_false", f"{action} answered Code OK but Success false", action=action
        )
    if key not in body or body[key] is None:
        raise AnomalousAnswer(
            "missing_data",
            f"expected {key} in the answer, got {'null' if key in body else 'none'}",
            action=action,
        )
    data = body[key]
    if not isinstance(data, list):
        raise AnomalousAnswer(
            "missing_data",
            f"expected {key} to be a list, got a {type(data).__name__}",
            action=action,
        )
    return data


def _clicks(item: Mapping[str, Any]) -> tuple[ButtonCount, ...]:
    raw = item.get("Cliented")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise AnomalousAnswer(
            "bad_row", f"expected Cliented to be a list, got {type(raw).__name__}"
        )
    clicks = []
    for click in raw:
        if not isinstance(click, Mapping):
            raise AnomalousAnswer("bad_row", "expected each Cliented element to be an object")
        clicks.append(
            ButtonCount(
                button_type=safe_text(click.get("Type") or "unknown"),
                content=safe_text(click.get("ButtonContent") or ""),
                count=count_value(click.get("Count"), "Cliented.Count"),
            )
        )
    return tuple(clicks)


def _bounds(item: Mapping[str, Any]) -> tuple[int, int]:
    """A row's (Start, End) in ms: both present, integers, End after Start."""
    if item.get("Start") is None or item.get("End") is None:
        raise AnomalousAnswer("bad_bounds", "expected each row to carry Start and End")
    start = count_value(item["Start"], "Start")
    end = count_value(item["End"], "End")
    if end <= start:
        raise AnomalousAnswer(
            "bad_bounds", f"expected a row with End > Start, got Start {start} End {end}"
        )
    return start, end


def parse_metric_answer(
    body: Mapping[str, Any], code: str, language: str | None
) -> tuple[MetricRow, ...]:
    """`Data` of a GetChatappTemplateMetric answer as MetricRow values, or AnomalousAnswer.

    Rows without `TemplateCode` or `Language` belong to the queried template and language
    (`language` None: the query named none, and a row must name its own).
    """
    rows = []
    for item in _success_and_data(body, "GetChatappTemplateMetric", "Data"):
        if not isinstance(item, Mapping):
            raise AnomalousAnswer("bad_row", "expected each Data element to be an object")
        row_language = item.get("Language") or language
        if row_language is None:
            raise AnomalousAnswer(
                "missing_language", "expected each row to name its Language, got a row without"
            )
        start, end = _bounds(item)
        rows.append(
            MetricRow(
                template_code=safe_text(item.get("TemplateCode") or code),
                language=safe_text(row_language),
                sent=count_value(item.get("SentCount"), "SentCount"),
                delivered=count_value(item.get("DeliveredCount"), "DeliveredCount"),
                read=count_value(item.get("ReadCount"), "ReadCount"),
                clicks=_clicks(item),
                start_ms=start,
                end_ms=end,
            )
        )
    return tuple(rows)


def parse_templates(body: Mapping[str, Any]) -> tuple[Template, ...]:
    """`ListTemplate` of a ListChatappTemplate answer as Template values, or AnomalousAnswer."""
    out = []
    for item in _success_and_data(body, "ListChatappTemplate", "ListTemplate"):
        if not isinstance(item, Mapping) or not item.get("TemplateCode"):
            continue
        updated = item.get("LastUpdateTime")
        out.append(
            Template(
                code=safe_text(item["TemplateCode"]),
                name=safe_text(item.get("TemplateName") or ""),
                language=safe_text(item.get("Language") or ""),
                category=safe_text(item.get("Category") or ""),
                audit_status=safe_text(item.get("AuditStatus") or ""),
                template_type=safe_text(item.get("TemplateType") or "WHATSAPP"),
                last_update_ms=count_value(updated, "LastUpdateTime")
                if updated is not None
                else None,
            )
        )
    return tuple(out)


# -- one unit's rows against their query -----------------------------------------------------


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
