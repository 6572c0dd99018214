"""The traffic model behind the campaign promtool tests behaves like the exporter's counters.

What the rules rely on, checked on the model's own output: counters only grow, a window sends
exactly its count, increments land at polls, reads trail deliveries by hours to about two days
(and twice as long for a slow audience) with the shape the model claims, the read and delivery
rates come out as configured, small volumes are noisy but seeded, and the promtool encoding
round-trips.
"""

from __future__ import annotations

import itertools
import random

import pytest

from tests.kit.trafficmodel import (
    DAY_S,
    HOUR_S,
    POLL_S,
    SLOW,
    TYPICAL,
    Rate,
    ReadShape,
    SendWindow,
    Unit,
    daily,
    decode,
    encode,
    input_series,
    sends_per_poll,
    simulate,
    weekday,
)


def burst(count: float = 50_000, **kw: object) -> Unit:
    """One 1-hour burst at 10:00 on day 0."""
    return Unit("t_burst", windows=(SendWindow(10, 1, count),), **kw)  # type: ignore[arg-type]


def test_day_zero_is_a_thursday_like_promtools_epoch() -> None:
    assert [weekday(d) for d in range(8)] == [
        "Thu",
        "Fri",
        "Sat",
        "Sun",
        "Mon",
        "Tue",
        "Wed",
        "Thu",
    ]


def test_counters_only_grow_and_read_le_delivered_le_sent() -> None:
    unit = Unit(
        "t_mix",
        windows=daily(0, 6, [8, 20], 3, 7000, weekend_factor=0.3),
        read_rates=(Rate(0, 0.7), Rate(72, 0.2)),
    )
    c = simulate(unit, 7, sample_s=POLL_S)
    for series in (c.sent, c.delivered, c.read):
        assert all(b >= a for a, b in itertools.pairwise(series))
    assert all(r <= d <= s for s, d, r in zip(c.sent, c.delivered, c.read, strict=True))


def test_a_window_sends_exactly_its_count_spread_over_its_polls() -> None:
    polls = int(2 * DAY_S / POLL_S)
    sends = sends_per_poll([SendWindow(10, 2, 1000), SendWindow(30.5, 0.5, 7)], polls)
    assert sum(sends) == 1007
    busy = [k for k, n in enumerate(sends) if n]
    # 10:00-12:00 is polls 121..144; 30:30-31:00 is polls 367..372
    assert busy[0] == 121 and busy[-1] == 372
    assert max(sends[121:145]) - min(sends[121:145]) <= 1


def test_increments_land_at_polls_only() -> None:
    """Sampled every poll, each sample is the counter after that poll; sampled every 15
    minutes, it is the same counter at every third poll."""
    unit = burst()
    fine = simulate(unit, 2, sample_s=POLL_S)
    coarse = simulate(unit, 2, sample_s=900)
    assert coarse.read == fine.read[::3]
    assert coarse.delivered == fine.delivered[::3]
    with pytest.raises(ValueError, match="multiple"):
        simulate(unit, 1, sample_s=400)


def _read_share_after(unit: Unit, hours: float) -> float:
    """Share of the burst's eventual reads (at 5 days) that arrives after `hours` from it."""
    c = simulate(unit, 5, sample_s=POLL_S)
    final = c.read[-1]
    at = c.read[int((10 + 1 + hours) * HOUR_S / POLL_S)]
    return (final - at) / final


def test_late_reads_trail_a_burst_by_hours_to_about_two_days() -> None:
    unit = burst()
    within_an_hour = 1 - _read_share_after(unit, 0)
    after_a_day = _read_share_after(unit, 24)
    after_two_days = _read_share_after(unit, 48)
    assert 0.3 < within_an_hour < 0.7
    assert 0.03 < after_a_day < 0.15
    assert after_two_days < 0.03
    # a slow audience: the same shape, stretched twice
    slow = burst(shape=SLOW)
    assert _read_share_after(slow, 24) > 2 * after_a_day
    assert _read_share_after(slow, 48) > 2 * after_two_days


def test_reads_arrive_with_the_shape_the_model_claims() -> None:
    unit = burst(100_000, read_rates=(Rate(0, 1.0),), delivery_rates=(Rate(0, 1.0),))
    c = simulate(unit, 6, sample_s=POLL_S)
    final = c.read[-1]
    end = int(11 * HOUR_S / POLL_S)  # the burst's last poll
    for age_h in (0.5, 2, 6, 12, 24, 36):
        got = c.read[end + int(age_h * HOUR_S / POLL_S)] / final
        # deliveries spread over the burst hour (and 10% of them later): compare with the
        # shape at the ages of the first and of the last delivery
        assert TYPICAL.arrived(age_h - 3) - 0.02 <= got <= TYPICAL.arrived(age_h + 1) + 0.02


def test_rates_come_out_as_configured() -> None:
    """Days 0-4 and 5-9 each send 20,000 a day; by day 14 every read has arrived."""
    change = 5 * 24
    windows = daily(0, 9, 9, 8, 20_000)
    reads = simulate(
        Unit("t_reads", windows=windows, read_rates=(Rate(0, 0.6), Rate(change, 0.25))), 14, 3600
    )
    deliveries = simulate(
        Unit("t_deliveries", windows=windows, delivery_rates=(Rate(0, 0.95), Rate(change, 0.5))),
        14,
        3600,
    )
    # sends of days 0-4 are delivered by day 5 but for a few late ones
    first = deliveries.delivered[change] / deliveries.sent[change]
    assert first == pytest.approx(0.95, abs=0.01)
    assert deliveries.delivered[-1] / deliveries.sent[-1] == pytest.approx(0.725, abs=0.01)
    assert reads.read[-1] / reads.delivered[-1] == pytest.approx((0.6 + 0.25) / 2, abs=0.01)


def test_small_volumes_are_noisy_and_seeded() -> None:
    unit = Unit("t_small", windows=daily(0, 13, 7, 14, 105))
    one = simulate(unit, 14, sample_s=3600)
    again = simulate(unit, 14, sample_s=3600)
    other = simulate(Unit("t_small", windows=unit.windows, seed=2), 14, sample_s=3600)
    assert one == again
    assert one.read != other.read
    daily_reads = [one.read[(d + 1) * 24] - one.read[d * 24] for d in range(2, 13)]
    assert len(set(daily_reads)) > 5  # binomial noise, not a constant
    assert 40 < sum(daily_reads) / len(daily_reads) < 80  # 100 delivered a day, 60% read


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        ReadShape((0.5, 0.4), (1.0, 2.0))
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        Rate(0, 1.5)
    with pytest.raises(ValueError, match="time order"):
        Unit("t", read_rates=(Rate(5, 0.5), Rate(1, 0.6)))
    with pytest.raises(ValueError, match="send window"):
        SendWindow(0, 0, 10)


def test_encode_decode_round_trip() -> None:
    rng = random.Random(7)
    for _ in range(200):
        values = [0]
        for _ in range(rng.randrange(1, 40)):
            values.append(values[-1] + rng.choice([0, 0, 0, 3, 3, rng.randrange(100)]))
        assert decode(encode(values)) == values
    assert encode([5, 5, 5, 5]) == "5x3"
    assert encode([0, 2, 4, 6, 7]) == "0+2x3 7"


def test_input_series_name_the_unit_and_its_info() -> None:
    unit = Unit(
        "t_info",
        account="acc",
        space="sp",
        category="UTILITY",
        windows=(SendWindow(1, 1, 10),),
        info_labels=(("cams_always_on", "true"),),
    )
    series = input_series(unit, simulate(unit, 1, sample_s=3600))
    names = [s["series"].split("{")[0] for s in series]
    assert names == [
        "cams_template_info",
        "cams_template_messages_sent_total",
        "cams_template_messages_delivered_total",
        "cams_template_messages_read_total",
    ]
    assert 'category="UTILITY"' in series[0]["series"]
    assert 'cams_always_on="true"' in series[0]["series"]
    for s in series:
        assert 'account="acc",space="sp",template_code="t_info",language="en"' in s["series"]
    assert len(decode(series[1]["values"])) == 25
    sent_only = input_series(unit, simulate(unit, 1, sample_s=3600), sent_only=True)
    assert [s["series"].split("{")[0] for s in sent_only] == names[:2]


def test_an_outage_stands_the_counters_still_and_stops_the_last_read_time() -> None:
    windows = daily(0, 3, 0, 24, 3000)
    moving = Unit("t_out", windows=windows)
    outage = Unit("t_out", windows=windows, frozen_from_h=36, reads_fail=True)
    same = Unit("t_out", windows=windows, frozen_from_h=36, reads_fail=False)
    a, b = simulate(moving, 3, sample_s=3600), simulate(outage, 3, sample_s=3600)
    for before, after in ((a.sent, b.sent), (a.delivered, b.delivered), (a.read, b.read)):
        assert after[:37] == before[:37]  # the same traffic up to the last moving poll (36 h)
        assert set(after[36:]) == {before[36]}  # then standing still
        assert before[-1] > before[36]
    assert simulate(same, 3, sample_s=3600) == b
    assert "cams_template_last_success_timestamp_seconds" not in str(input_series(moving, a))

    def last_read(unit: Unit) -> list[float]:
        (series,) = [
            s
            for s in input_series(unit, b)
            if s["series"].startswith("cams_template_last_success_timestamp_seconds{")
        ]
        assert 'template_code="t_out",language="en"' in series["series"]
        return decode(series["values"])

    hours = [i * 3600.0 for i in range(len(b.sent))]
    assert last_read(same) == hours  # read at every poll, the same numbers
    assert last_read(outage) == [min(t, 36 * 3600.0) for t in hours]  # no read after 36 h


def test_an_audience_asleep_at_night_reads_later_not_less() -> None:
    """`night_reads`: a burst at 20:00 read ten times more slowly from 23:00 to 07:00 has read
    less by the morning than the same burst to an audience awake around the clock, gets about
    the same reads by the end, and reads almost nothing during the night's hours."""
    evening = (SendWindow(20, 2, 20_000),)
    awake = simulate(Unit("t_awake", windows=evening), 4, sample_s=POLL_S)
    asleep = simulate(Unit("t_awake", windows=evening, night_reads=0.1), 4, sample_s=POLL_S)
    at = {h: int(h * HOUR_S // POLL_S) for h in (23, 24 + 3, 24 + 7, 4 * 24)}
    assert awake.read[at[23]] == asleep.read[at[23]]  # the same until 23:00
    night_awake = awake.read[at[24 + 7]] - awake.read[at[23]]
    night_asleep = asleep.read[at[24 + 7]] - asleep.read[at[23]]
    assert night_asleep < 0.3 * night_awake
    assert asleep.read[at[24 + 3]] < 0.9 * awake.read[at[24 + 3]]
    assert asleep.read[at[4 * 24]] == pytest.approx(awake.read[at[4 * 24]], rel=0.02)
    assert asleep.delivered == awake.delivered
