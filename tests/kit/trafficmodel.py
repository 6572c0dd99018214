"""A traffic model of one template-language unit, as the exporter exposes it to Prometheus.

The CAMS API counts per UTC day and the exporter re-reads the trailing days at every poll, so
each counter moves at each poll (every `POLL_S`, 5 minutes) by whatever happened since the last
one: today's sends and deliveries, and the reads of every day whose messages are still being
read ("late reads", spread over about 48 hours). This module plays that, step by step:

- sends: the expected sends of each poll come from `SendWindow`s (a burst, a working day...),
  spread evenly over the window and rounded with a carry, so a window sends exactly its count;
- deliveries: each poll's sends are delivered with probability `delivery_rate` (a binomial
  draw), 90% at once and the rest later (an exponential delay of mean 3 hours);
- reads: each poll's deliveries are read with the read rate in force at that time (a binomial
  draw), and those reads arrive over the audience's `ReadShape`, a mix of exponential delays
  (typically 40% within about 15 minutes, 35% within hours, 25% over the next two days), more
  slowly at night if the unit says so (`Unit.night_reads`: an audience asleep from 23:00 to
  07:00 UTC);
- the counters are sampled every `sample_s` (Prometheus' scrapes, coarser in the promtool tests)
  and hold the value of the last poll at or before each sample;
- an outage (`Unit.frozen_from_h`): from then on the counters stand still, and so does the time of
  the unit's last successful read (`cams_template_last_success_timestamp_seconds`), unless the
  reads go on succeeding with the same numbers (`Unit.reads_fail`).

Everything is deterministic from `seed` (random.Random). No numpy: the delays are exponential
mixes, so each step only updates a few pending amounts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

POLL_S = 300
HOUR_S = 3600
DAY_S = 86400
# promtool's clock starts at the Unix epoch: day 0 is Thursday 1 January 1970 (UTC).
WEEKDAYS = ("Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed")


def weekday(day: int) -> str:
    """Name of day `day` of the promtool clock (day 0 is a Thursday)."""
    return WEEKDAYS[day % 7]


@dataclass(frozen=True)
class ReadShape:
    """When the reads of a delivery arrive: a mix of exponential delays (weights sum to 1)."""

    weights: tuple[float, ...]
    means_h: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.means_h) or not self.weights:
            raise ValueError("a read shape needs as many weights as means")
        if abs(sum(self.weights) - 1) > 1e-9 or min(self.weights) < 0:
            raise ValueError(f"read shape weights must be >= 0 and sum to 1, got {self.weights}")
        if min(self.means_h) <= 0:
            raise ValueError("read shape means must be > 0")

    def slower(self, factor: float) -> ReadShape:
        """The same audience reading `factor` times more slowly."""
        return ReadShape(self.weights, tuple(m * factor for m in self.means_h))

    def arrived(self, age_h: float) -> float:
        """Share of a delivery's reads that has arrived `age_h` hours after it."""
        if age_h <= 0:
            return 0.0
        return sum(
            w * (1 - math.exp(-age_h / m)) for w, m in zip(self.weights, self.means_h, strict=True)
        )


TYPICAL = ReadShape(weights=(0.40, 0.35, 0.25), means_h=(0.25, 4.0, 16.0))
SLOW = TYPICAL.slower(2)


@dataclass(frozen=True)
class SendWindow:
    """`count` messages sent evenly over [start_h, start_h + hours) (hours from t=0)."""

    start_h: float
    hours: float
    count: float

    def __post_init__(self) -> None:
        if self.hours <= 0 or self.count < 0:
            raise ValueError(f"bad send window {self}")


@dataclass(frozen=True)
class Rate:
    """A rate (read / delivered, or delivered / sent) in force from `from_h` on."""

    from_h: float
    rate: float

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError(f"a rate must be within 0..1, got {self.rate}")


def rate_at(changes: Sequence[Rate], t_h: float) -> float:
    """The rate of `changes` (sorted by from_h) in force at `t_h`."""
    rate = changes[0].rate
    for change in changes:
        if change.from_h <= t_h:
            rate = change.rate
    return rate


@dataclass(frozen=True)
class Unit:
    """One template-language and its traffic."""

    template_code: str
    language: str = "en"
    account: str = "main"
    space: str = "cams-1"
    category: str = "MARKETING"
    template_name: str = ""
    windows: tuple[SendWindow, ...] = ()
    # read / delivered of the messages delivered from each time on
    read_rates: tuple[Rate, ...] = (Rate(0, 0.6),)
    shape: ReadShape = TYPICAL
    # delivered / sent of the messages sent from each time on
    delivery_rates: tuple[Rate, ...] = (Rate(0, 0.95),)
    seed: int = 1
    # Extra labels of cams_template_info (a user's relabelling, e.g. cams_always_on="true").
    info_labels: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # The last poll whose numbers move (hours): the counters stand still after it. With
    # `reads_fail`, the reads of the unit fail from then on (an outage: the exporter keeps its
    # last numbers); without, they succeed with the same numbers. Either way the unit's
    # cams_template_last_success_timestamp_seconds is part of its series.
    frozen_from_h: float | None = None
    reads_fail: bool = True
    # How fast the audience reads at night (23:00 to 07:00), against the day: 1.0 reads around
    # the clock; 0.1 reads ten times more slowly at night (the reads wait for the morning).
    night_reads: float = 1.0

    def __post_init__(self) -> None:
        for changes in (self.read_rates, self.delivery_rates):
            if not changes or list(changes) != sorted(changes, key=lambda c: c.from_h):
                raise ValueError(f"{self.template_code}: rates must be given in time order")


@dataclass(frozen=True)
class Counters:
    """Cumulative counters of one unit at each sample time (`sample_s` apart, from t=0)."""

    sample_s: int
    sent: tuple[int, ...]
    delivered: tuple[int, ...]
    read: tuple[int, ...]


# Late deliveries: 10% of the delivered messages arrive after an exponential delay (3 h mean).
_LATE_DELIVERY_SHARE = 0.10
_LATE_DELIVERY_MEAN_H = 3.0


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw: exact below 50 trials, a rounded normal approximation above."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if n < 50:
        return sum(1 for _ in range(n) if rng.random() < p)
    mean = n * p
    sd = math.sqrt(n * p * (1 - p))
    return min(n, max(0, round(rng.gauss(mean, sd))))


def sends_per_poll(windows: Iterable[SendWindow], polls: int) -> list[int]:
    """Messages sent in each poll interval (poll k covers ((k-1)*POLL_S, k*POLL_S])."""
    expected = [0.0] * polls
    for w in windows:
        start = w.start_h * HOUR_S
        end = start + w.hours * HOUR_S
        rate = w.count / (end - start)
        first = max(1, int(start // POLL_S) + 1)
        for k in range(first, polls):
            lo, hi = (k - 1) * POLL_S, k * POLL_S
            if lo >= end:
                break
            overlap = min(hi, end) - max(lo, start)
            if overlap > 0:
                expected[k] += rate * overlap
    out, carry = [], 0.0
    for value in expected:
        carry += value
        whole = math.floor(carry + 1e-9)
        out.append(whole)
        carry -= whole
    return out


def simulate(unit: Unit, days: float, sample_s: int = 900) -> Counters:
    """The unit's counters over `days`, sampled every `sample_s` (a multiple of POLL_S)."""
    if sample_s % POLL_S:
        raise ValueError(f"sample_s must be a multiple of {POLL_S}")
    polls = int(days * DAY_S // POLL_S) + 1
    rng = random.Random(f"{unit.seed}/{unit.template_code}/{unit.language}")
    sends = sends_per_poll(unit.windows, polls)
    late_keep = math.exp(-POLL_S / (_LATE_DELIVERY_MEAN_H * HOUR_S))
    read_keep = [math.exp(-POLL_S / (m * HOUR_S)) for m in unit.shape.means_h]
    late_pending = 0.0
    read_pending = [0.0] * len(read_keep)
    sent = delivered = 0
    read_f = 0.0
    sent_at, delivered_at, read_at = [], [], []
    for k in range(polls):
        # reads and late deliveries that arrive during this poll interval (of earlier polls)
        arrivals = 0.0
        # the interval ((k-1)*POLL_S, k*POLL_S] is at night if it starts at night
        awake = 1.0 if 7 <= ((k - 1) * POLL_S / HOUR_S) % 24 < 23 else unit.night_reads
        for i, keep in enumerate(read_keep):
            moved = read_pending[i] * (1 - keep**awake)
            read_pending[i] -= moved
            arrivals += moved
        read_f += arrivals
        late = late_pending * (1 - late_keep)
        late_pending -= late
        # this poll's sends, delivered now or later
        t_h = k * POLL_S / HOUR_S
        new_sent = sends[k]
        will_deliver = binomial(rng, new_sent, rate_at(unit.delivery_rates, t_h))
        now = will_deliver - binomial(rng, will_deliver, _LATE_DELIVERY_SHARE)
        late_pending += will_deliver - now
        # whole late deliveries: keep the fraction pending
        late_whole = math.floor(late + 1e-9)
        late_pending += late - late_whole
        new_delivered = now + late_whole
        will_read = binomial(rng, new_delivered, rate_at(unit.read_rates, t_h))
        for i, weight in enumerate(unit.shape.weights):
            read_pending[i] += will_read * weight
        sent += new_sent
        delivered += new_delivered
        sent_at.append(sent)
        delivered_at.append(delivered)
        read_at.append(min(delivered, math.floor(read_f + 1e-6)))
    if unit.frozen_from_h is not None:
        last = min(polls - 1, int(unit.frozen_from_h * HOUR_S // POLL_S))
        for values in (sent_at, delivered_at, read_at):
            values[last + 1 :] = [values[last]] * (polls - last - 1)
    step = sample_s // POLL_S
    return Counters(
        sample_s=sample_s,
        sent=tuple(sent_at[::step]),
        delivered=tuple(delivered_at[::step]),
        read=tuple(read_at[::step]),
    )


# --------------------------------------------------------------------------------------------
# Schedules


def daily(
    first_day: int,
    last_day: int,
    hour: float | Sequence[float],
    hours: float,
    count: float,
    weekdays: Iterable[str] = WEEKDAYS,
    weekend_factor: float = 1.0,
) -> tuple[SendWindow, ...]:
    """One send window a day on `first_day`..`last_day` (inclusive) for the given weekdays.

    `hour` is the start hour of every day, or a sequence cycled over the sending days (moving
    send times). Saturday and Sunday send `weekend_factor` times the count.
    """
    days = set(weekdays)
    hours_of = list(hour) if isinstance(hour, Sequence) else [hour]
    out = []
    n = 0
    for day in range(first_day, last_day + 1):
        if weekday(day) not in days:
            continue
        factor = weekend_factor if weekday(day) in ("Sat", "Sun") else 1.0
        start = day * 24 + hours_of[n % len(hours_of)]
        out.append(SendWindow(start, hours, count * factor))
        n += 1
    return tuple(out)


# --------------------------------------------------------------------------------------------
# promtool input series


def _labels(unit: Unit, **extra: str) -> str:
    pairs = {
        "account": unit.account,
        "space": unit.space,
        "template_code": unit.template_code,
        "language": unit.language,
        "template_type": "WHATSAPP",
        **extra,
    }
    return ",".join(f'{k}="{v}"' for k, v in pairs.items())


def encode(values: Sequence[int]) -> str:
    """promtool's expanding notation: runs of equal increments as `a+bxn`, plain values else."""
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        if i + 1 < len(values):
            step = values[i + 1] - values[i]
            while j + 1 < len(values) and values[j + 1] - values[j] == step:
                j += 1
        run = j - i
        if run >= 2:
            step = values[i + 1] - values[i]
            parts.append(f"{values[i]}x{run}" if step == 0 else f"{values[i]}+{step}x{run}")
            i = j + 1
        else:
            parts.append(str(values[i]))
            i += 1
    return " ".join(parts)


def decode(text: str) -> list[float]:
    """The values promtool reads from `encode`'s notation (for the model's own tests)."""
    out: list[float] = []
    for part in text.split():
        if "x" in part:
            head, times = part.split("x")
            start, _, step = head.partition("+")
            a, b = float(start), float(step or 0)
            out.extend(a + b * i for i in range(int(times) + 1))
        else:
            out.append(float(part))
    return out


def input_series(unit: Unit, counters: Counters, sent_only: bool = False) -> list[dict[str, str]]:
    """promtool `input_series` for the unit: its three counters and its cams_template_info.

    `sent_only` leaves out delivered and read (scenarios about sends alone run cheaper).
    """
    samples = len(counters.sent)
    info_extra = dict(unit.info_labels)
    info = _labels(
        unit,
        template_name=unit.template_name or unit.template_code,
        category=unit.category,
        audit_status="pass",
        **info_extra,
    )
    series = [
        {"series": "cams_template_info{" + info + "}", "values": f"1x{samples - 1}"},
        {
            "series": "cams_template_messages_sent_total{" + _labels(unit) + "}",
            "values": encode(counters.sent),
        },
    ]
    if unit.frozen_from_h is not None:
        last_read_s = int(unit.frozen_from_h * HOUR_S // POLL_S) * POLL_S
        times = [i * counters.sample_s for i in range(samples)]
        if unit.reads_fail:
            times = [min(t, last_read_s) for t in times]
        series.append(
            {
                "series": "cams_template_last_success_timestamp_seconds{" + _labels(unit) + "}",
                "values": encode(times),
            }
        )
    if sent_only:
        return series
    return [
        *series,
        {
            "series": "cams_template_messages_delivered_total{" + _labels(unit) + "}",
            "values": encode(counters.delivered),
        },
        {
            "series": "cams_template_messages_read_total{" + _labels(unit) + "}",
            "values": encode(counters.read),
        },
    ]
