"""The simulated data: templates and their counts per bucket, all computed on demand from hashes.

- N templates, each approved in every configured language; a template-language pair is a *unit*.
- For each unit and day `d` the final counts sent >= delivered >= read and clicks per button
  (<= read) come from a BLAKE2b hash of (seed, code, language, d); about 20% of days are silent.
  Nothing is precomputed per day, so thousands of templates cost nothing until asked for.
- Live mode: at time t a day's counts grow from the day's start, sent linearly over 1 day,
  delivered linearly over 1.5 days, reads and clicks over a week as Meta documents its read
  window (`READ_ARRIVAL`): linearly to 55% of the final count by the end of the day, then 75%,
  85%, 90%, 94%, 97%, 99% and 100% during days +1 to +7 (a step at each midnight), so they never
  decrease and the ordering holds at every moment. `static` mode gives every day up to the
  anchor day its final counts (the anchor day counts as complete, so all 48 of its half hours
  are served).
- `read_reset` plays the end of Meta's window: from day +8 on (8 days after the day's start)
  a day's reads and clicks answer 0 while its sent and delivered stay; in static mode too,
  counted from the end of the anchor day.
- Days before `anchor - history` are silent.
- `Activity` makes most templates idle, as real accounts are: its `silent` templates never send,
  except within a window of their own (from a moment, to the end of a later day), where they
  send every day like the others, from the window's start on.
- `HALF_HOUR` splits each day into 48 buckets that sum exactly to the day's counts; a day's units
  are laid out evenly over its buckets in order, so buckets only grow and future ones stay empty.
- Shapes play the open questions of the API: one row per UTC day (`per-bucket`), one row for the
  query (`aggregate`), days aligned to UTC+8 (`utc8`), zero rows left out (`sparse`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from exporter.cams.model import DAY_MS, HALF_HOUR_MS

UTC8_MS: Final = 8 * 3_600_000
_BUCKETS_PER_DAY: Final = DAY_MS // HALF_HOUR_MS
_DELIVERY_MS: Final = DAY_MS * 3 // 2
# Percent of a day's final reads and clicks the API shows during day +k (k = 0..7): Meta's
# 7-day read window as the issue measured it (day 0 grows linearly up to its 55%).
READ_ARRIVAL: Final = (55, 75, 85, 90, 94, 97, 99, 100)
# From this age on a day's reads and clicks answer 0 when `read_reset` is on.
READ_RESET_AGE_MS: Final = len(READ_ARRIVAL) * DAY_MS
_ZERO_DAY_SHARE: Final = 0.2
_MARKETING_WORDS: Final = (
    ("promo", "offer", "flash", "vip", "loyalty", "seasonal", "weekend", "launch"),
    ("spring", "summer", "autumn", "winter", "holiday", "member", "friday", "brand"),
    ("sale", "deal", "coupon", "drop", "reward", "event", "discount", "preview"),
)
_UTILITY_WORDS: Final = (
    ("order", "shipping", "account", "payment", "booking", "delivery", "service", "invoice"),
    ("status", "confirmed", "update", "reminder", "receipt", "notice", "change", "alert"),
    ("info", "details", "summary", "check", "message", "digest", "note", "ready"),
)
_LAST_UPDATE_BASE_MS: Final = 1_704_067_200_000  # 2024-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class Button:
    """One button of a template as `Cliented` reports it."""

    type: str  # url_button | quick_relpy_button | quick_reply_button | phone_number_button
    content: str


@dataclass(frozen=True, slots=True)
class TemplateDef:
    """One simulated template (all its languages share code, name, category and buttons)."""

    index: int
    code: str
    name: str
    category: str
    buttons: tuple[Button, ...]
    last_update_ms: int


@dataclass(frozen=True, slots=True)
class Counts:
    """Counts of one bucket (or a sum of buckets); `clicks` follows the template's buttons."""

    sent: int
    delivered: int
    read: int
    clicks: tuple[int, ...]

    def is_zero(self) -> bool:
        """True when nothing at all happened."""
        return not (self.sent or self.delivered or self.read or any(self.clicks))

    def plus(self, other: Counts) -> Counts:
        """Element-wise sum."""
        return Counts(
            self.sent + other.sent,
            self.delivered + other.delivered,
            self.read + other.read,
            tuple(a + b for a, b in zip(self.clicks, other.clicks, strict=True)),
        )


def _digest(*parts: object) -> bytes:
    """32 stable bytes for the given parts (never Python's randomised hash())."""
    text = "|".join(str(part) for part in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=32).digest()


def _uniforms(digest: bytes) -> tuple[float, ...]:
    """Eight floats in [0, 1) from a 32-byte digest."""
    return tuple(int.from_bytes(digest[i : i + 4], "big") / 2**32 for i in range(0, 32, 4))


def build_templates(count: int, seed: int) -> tuple[TemplateDef, ...]:
    """The simulated templates: deterministic from the seed, every 4th one UTILITY."""
    out = []
    for index in range(count):
        code = hashlib.md5(f"{seed}:{index}".encode(), usedforsecurity=False).hexdigest()
        digest = _digest("template", seed, index)
        utility = index % 4 == 3
        words = _UTILITY_WORDS if utility else _MARKETING_WORDS
        name = "_".join(group[digest[i] % len(group)] for i, group in enumerate(words))
        mask = digest[3] % 8
        buttons = []
        if mask & 1:
            buttons.append(Button("url_button", "Shop now"))
        if mask & 2:
            spelling = "quick_relpy_button" if digest[4] % 2 else "quick_reply_button"
            buttons.append(Button(spelling, "Stop promotions"))
        if mask & 4:
            buttons.append(Button("phone_number_button", "Call us"))
        out.append(
            TemplateDef(
                index=index,
                code=code,
                name=f"{name}_{index + 1:03d}",
                category="UTILITY" if utility else "MARKETING",
                buttons=tuple(buttons),
                last_update_ms=_LAST_UPDATE_BASE_MS + int.from_bytes(digest[8:12]) % (365 * DAY_MS),
            )
        )
    return tuple(out)


def _grow(final: int, age_ms: int, period_ms: int) -> int:
    """floor(final * min(1, age/period)) in exact integer arithmetic."""
    if age_ms >= period_ms:
        return final
    if age_ms <= 0:
        return 0
    return final * age_ms // period_ms


def _arrived(final: int, age_ms: int) -> int:
    """Reads (or clicks) of a day `age_ms` after its start, of `final` in all: day 0 grows
    linearly to READ_ARRIVAL[0] percent, day +k shows READ_ARRIVAL[k] percent (exact integers)."""
    if age_ms <= 0:
        return 0
    if age_ms < DAY_MS:
        return final * READ_ARRIVAL[0] * age_ms // (100 * DAY_MS)
    day = age_ms // DAY_MS
    if day >= len(READ_ARRIVAL):
        return final
    return final * READ_ARRIVAL[day] // 100


def _split(final: int, current: int, k: int) -> int:
    """Units of a day (final total, current total) that fall into its half-hour bucket k."""
    low = -(-k * final // _BUCKETS_PER_DAY)
    high = -(-(k + 1) * final // _BUCKETS_PER_DAY)
    return min(max(current, low), high) - low


@dataclass(frozen=True, slots=True)
class Activity:
    """Which templates send: every one but the `silent` codes, which send only within their
    window in `windows` (code -> (start ms, stop ms): from start to the end of stop's day)."""

    silent: frozenset[str] = frozenset()
    windows: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def sends(self, code: str) -> bool:
        """Whether the template ever sends."""
        return code not in self.silent or code in self.windows


@dataclass(frozen=True, slots=True)
class Horizon:
    """How far a simulator's counts reach: buckets begun by `now_ms`, from day `first_day` on
    (earlier days are silent); `static`: each day's counts are final at once; `read_reset`:
    reads and clicks of days READ_RESET_AGE_MS old at `now_ms` answer 0."""

    now_ms: int
    first_day: int
    static: bool
    read_reset: bool = False


class DataModel:
    """Counts per (unit, bucket), computed on demand from hashes."""

    def __init__(self, seed: int, day_offset_ms: int, activity: Activity | None = None) -> None:
        self._seed = seed
        self.day_offset_ms = day_offset_ms  # day d covers [d*DAY - offset, (d+1)*DAY - offset)
        self.activity = activity or Activity()

    def day_of(self, t_ms: int) -> int:
        return (t_ms + self.day_offset_ms) // DAY_MS

    def day_start(self, day: int) -> int:
        return day * DAY_MS - self.day_offset_ms

    def final(
        self, template: TemplateDef, language: str, day: int, sending: bool = False
    ) -> Counts:
        """The day's final counts for one unit (`sending`: never one of the silent days)."""
        n = len(template.buttons)
        u = _uniforms(_digest(self._seed, template.code, language, day))
        if u[0] < _ZERO_DAY_SHARE and not sending:
            return Counts(0, 0, 0, (0,) * n)
        volume = _uniforms(_digest("volume", self._seed, template.code, language))[0]
        base = 20 * 150**volume  # 20 .. 3000 messages on a typical day
        sent = max(1, int(base * (0.4 + 1.2 * u[1])))
        delivered = int(sent * (0.80 + 0.19 * u[2]))
        read = int(delivered * (0.25 + 0.6 * u[3]))
        clicks = tuple(int(read * (0.02 + 0.3 * u[4 + i])) for i in range(n))
        return Counts(sent, delivered, read, clicks)

    @staticmethod
    def at_age(final: Counts, age_ms: int) -> Counts:
        """Counts of a day `age_ms` after its start (live mode)."""
        return Counts(
            _grow(final.sent, age_ms, DAY_MS),
            _grow(final.delivered, age_ms, _DELIVERY_MS),
            _arrived(final.read, age_ms),
            tuple(_arrived(c, age_ms) for c in final.clicks),
        )

    @staticmethod
    def reset(counts: Counts) -> Counts:
        """The counts once the read window has passed: reads and clicks 0, the rest kept."""
        return Counts(counts.sent, counts.delivered, 0, (0,) * len(counts.clicks))

    @staticmethod
    def half_hour(final: Counts, current: Counts, k: int) -> Counts:
        """The part of a day's current counts in its half-hour bucket k."""
        return Counts(
            _split(final.sent, current.sent, k),
            _split(final.delivered, current.delivered, k),
            _split(final.read, current.read, k),
            tuple(_split(f, c, k) for f, c in zip(final.clicks, current.clicks, strict=True)),
        )

    def buckets(
        self,
        template: TemplateDef,
        language: str,
        size_ms: int,
        start_ms: int,
        end_ms: int,
        horizon: Horizon,
    ) -> list[tuple[int, Counts]]:
        """(bucket start, counts) of every bucket of `size_ms` overlapping [start_ms, end_ms)
        that has begun by the horizon's `now_ms`; days before its `first_day` are silent."""
        now_ms, first_day, static = horizon.now_ms, horizon.first_day, horizon.static
        offset = self.day_offset_ms
        first_bucket = (start_ms + offset) // size_ms
        end_bucket = min(-(-(end_ms + offset) // size_ms), (now_ms + offset) // size_ms + 1)
        zero = Counts(0, 0, 0, (0,) * len(template.buttons))
        days: dict[int, tuple[Counts, Counts]] = {}

        silent = template.code in self.activity.silent
        window = self.activity.windows.get(template.code) if silent else None

        def day_counts(day: int) -> tuple[Counts, Counts]:
            if day not in days:
                begin = self.day_start(day)
                if day < first_day or (silent and window is None):
                    days[day] = (zero, zero)
                elif window is not None and (begin + DAY_MS <= window[0] or begin > window[1]):
                    days[day] = (zero, zero)  # outside a silent template's window
                else:
                    if window is not None:
                        begin = max(begin, window[0])  # it starts sending mid-day
                    final = self.final(template, language, day, sending=window is not None)
                    current = final if static else self.at_age(final, now_ms - begin)
                    if horizon.read_reset and now_ms - self.day_start(day) >= READ_RESET_AGE_MS:
                        current = self.reset(current)
                    days[day] = (final, current)
            return days[day]

        out: list[tuple[int, Counts]] = []
        for bucket in range(first_bucket, end_bucket):
            if size_ms == DAY_MS:
                counts = day_counts(bucket)[1]
            else:
                day, k = divmod(bucket, _BUCKETS_PER_DAY)
                final, current = day_counts(day)
                counts = self.half_hour(final, current, k)
            out.append((bucket * size_ms - offset, counts))
        return out


def metric_row(
    template: TemplateDef, language: str, counts: Counts, start: int, end: int, sparse: bool
) -> dict[str, Any]:
    """One `Data` element of GetChatappTemplateMetric, as the API spells it."""
    return {
        "TemplateCode": template.code,
        "Language": language,
        "SentCount": counts.sent,
        "DeliveredCount": counts.delivered,
        "ReadCount": counts.read,
        "Cliented": [
            {"Type": button.type, "ButtonContent": button.content, "Count": count}
            for button, count in zip(template.buttons, counts.clicks, strict=True)
            if count or not sparse
        ],
        "Start": start,
        "End": end,
    }


def shaped_rows(
    template: TemplateDef,
    language: str,
    buckets: list[tuple[int, Counts]],
    size_ms: int,
    shape: str,
    start_ms: int,
    end_ms: int,
) -> list[dict[str, Any]]:
    """The `Data` rows of some buckets in one of the answer shapes."""
    if shape == "aggregate":
        if not buckets:
            return []
        total = Counts(0, 0, 0, (0,) * len(template.buttons))
        for _, counts in buckets:
            total = total.plus(counts)
        return [metric_row(template, language, total, start_ms, end_ms, sparse=False)]
    sparse = shape == "sparse"
    return [
        metric_row(template, language, counts, bucket_start, bucket_start + size_ms, sparse)
        for bucket_start, counts in buckets
        if not (sparse and counts.is_zero())
    ]
