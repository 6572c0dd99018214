"""Counter state: per-bucket replacement, held revisions, folding, persistence."""

from __future__ import annotations

import json
import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.cams.model import DAY_MS, ButtonCount, MetricRow, TemplateMeta, UnitKey
from exporter.counting.state import (
    MAX_CHECKS,
    READ_WINDOW_RESET,
    REVISION,
    SettledChange,
    Tally,
    UnitState,
)
from exporter.counting.store import CounterStore

KEY = UnitKey("main", "cams-1", "tpl", "en", "WHATSAPP")


def row(day: int, sent: int, delivered: int, read: int, clicks: int = 0) -> MetricRow:
    buttons = (ButtonCount("quick_relpy_button", "Stop", clicks),) if clicks else ()
    return MetricRow("tpl", "en", sent, delivered, read, buttons, day * DAY_MS, (day + 1) * DAY_MS)


def test_rereading_a_bucket_replaces_it() -> None:
    unit = UnitState(0, 0)
    unit.put_rows([row(0, 10, 8, 2), row(1, 5, 5, 1)])
    unit.put_rows([row(0, 10, 9, 6), row(1, 7, 6, 3)])
    total = unit.total()
    assert (total.sent, total.delivered, total.read) == (17, 15, 9)


def test_downward_revision_is_held_and_counted() -> None:
    unit = UnitState(0, 0)
    unit.put_rows([row(0, 10, 8, 5, clicks=4)])
    falls = unit.put_rows([row(0, 9, 8, 5, clicks=3)])
    total = unit.total()
    assert falls == [REVISION]
    assert unit.revisions_held == 1
    assert (total.sent, total.read) == (10, 5)
    assert total.clicks == (("quick_reply", "Stop", 4),)


def test_both_quick_reply_spellings_are_one_button() -> None:
    both = MetricRow(
        "tpl",
        "en",
        1,
        1,
        1,
        (
            ButtonCount("quick_relpy_button", "Stop", 2),
            ButtonCount("quick_reply_button", "Stop", 3),
        ),
        0,
        DAY_MS,
    )
    assert Tally.of_rows([both]).clicks == {("quick_reply", "Stop"): 5}


def test_fold_moves_old_buckets_and_keeps_the_total() -> None:
    unit = UnitState(0, 0)
    unit.put_rows([row(d, d + 1, d, 0) for d in range(5)])
    before = unit.total()
    unit.fold(3 * DAY_MS)
    assert sorted(unit.buckets) == [3 * DAY_MS, 4 * DAY_MS]
    assert unit.settled_until_ms == 3 * DAY_MS
    assert unit.total() == before
    # A late answer for an already settled bucket cannot count twice.
    unit.put_rows([row(1, 100, 100, 100)])
    assert unit.total() == before


def test_bucket_straddling_the_boundary_stays_live() -> None:
    unit = UnitState(0, 0)
    offset = 16 * 3_600_000  # UTC+8 midnight
    unit.put(offset, offset + DAY_MS, Tally(3, 2, 1))
    unit.fold(DAY_MS)
    assert offset in unit.buckets
    assert unit.total().sent == 3


def test_store_roundtrip_and_atomic_save(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "state.json")
    store = CounterStore()
    unit = UnitState(0, 0, meta=TemplateMeta("promo", "MARKETING", "pass"))
    unit.put_rows([row(0, 10, 8, 5, clicks=4), row(1, 3, 2, 1)])
    unit.fold(DAY_MS)
    store.units[KEY] = unit
    store.shapes["main"] = "aggregate"
    store.save(path)
    assert [p for p in os.listdir(str(tmp_path)) if p.endswith(".tmp")] == []
    loaded, warning = CounterStore.load(path)
    assert warning is None
    assert loaded.shapes == {"main": "aggregate"}
    assert loaded.units[KEY].total() == unit.total()
    assert loaded.units[KEY].meta == TemplateMeta("promo", "MARKETING", "pass")


def test_corrupt_or_unreadable_state_gives_a_warning_and_a_fresh_start(tmp_path: object) -> None:
    base = str(tmp_path)
    cases = {
        "garbage.json": b"{not json",
        "wrong.json": json.dumps({"version": 99}).encode(),
        "badunit.json": json.dumps({"version": 1, "units": {"x": {}}}).encode(),
        "negative.json": json.dumps(
            {
                "version": 1,
                "units": {
                    json.dumps(["a", "", "c", "en", "W"]): {
                        "origin": 0,
                        "settled_until": 0,
                        "settled": [-1, 0, 0, []],
                    }
                },
            }
        ).encode(),
        "badmeta.json": json.dumps(
            {
                "version": 1,
                "units": {
                    json.dumps(["a", "", "c", "en", "W"]): {
                        "origin": 0,
                        "settled_until": 0,
                        "settled": [0, 0, 0, []],
                        "meta": ["promo", "MARKETING"],
                    }
                },
            }
        ).encode(),
        "textmeta.json": json.dumps(
            {
                "version": 1,
                "units": {
                    json.dumps(["a", "", "c", "en", "W"]): {
                        "origin": 0,
                        "settled_until": 0,
                        "settled": [0, 0, 0, []],
                        "meta": "abc",  # would unpack into three one-letter fields
                    }
                },
            }
        ).encode(),
    }
    for name, content in cases.items():
        path = os.path.join(base, name)
        with open(path, "wb") as handle:
            handle.write(content)
        store, warning = CounterStore.load(path)
        assert store.units == {}
        assert warning is not None and "starting fresh" in warning and "\n" not in warning
    store, warning = CounterStore.load(os.path.join(base, "missing.json"))
    assert store.units == {} and warning is None


bucket_value = st.tuples(
    st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 50)
)


@settings(max_examples=200, deadline=None)
@given(
    reads=st.lists(
        st.lists(st.tuples(st.integers(0, 6), bucket_value), min_size=0, max_size=10),
        min_size=1,
        max_size=12,
    ),
    restart_at=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_counters_equal_the_held_sum_and_never_decrease(
    reads: list[list[tuple[int, tuple[int, int, int, int]]]], restart_at: int, seed: int
) -> None:
    """Any sequence of re-reads (duplicated, shuffled, revised) plus a restart from JSON."""
    rng = random.Random(seed)
    unit = UnitState(0, 0)
    held: dict[int, tuple[int, int, int, int]] = {}
    previous = (0, 0, 0, 0)
    for step, answer in enumerate(reads):
        rows = [row(day, s, d, r, c) for day, (s, d, r, c) in answer]
        rows += rng.sample(rows, k=len(rows) // 2)  # duplicates
        rng.shuffle(rows)
        unit.put_rows(rows)
        for day, value in answer:
            old = held.get(day, (0, 0, 0, 0))
            held[day] = tuple(max(a, b) for a, b in zip(old, value, strict=True))  # type: ignore[assignment]
        # Duplicated rows within one answer are merged by maximum too.
        if step == restart_at:
            unit = UnitState.from_json(json.loads(json.dumps(unit.to_json())))
        total = unit.total()
        clicks = sum(c for _, _, c in total.clicks)
        now = (total.sent, total.delivered, total.read, clicks)
        expected = tuple(sum(v[i] for v in held.values()) for i in range(4))
        assert now == expected
        assert all(a >= b for a, b in zip(now, previous, strict=True))
        previous = now


def test_a_listing_blank_takes_the_state_files_value() -> None:
    listed = TemplateMeta("promo", "", "pass")  # a listing row without its category
    remembered = TemplateMeta("old name", "MARKETING", "pending")
    assert listed.filled_from(remembered) == TemplateMeta("promo", "MARKETING", "pass")
    assert TemplateMeta().filled_from(remembered) == remembered
    assert listed.filled_from(TemplateMeta()) == listed


# --------------------------------------------------------------------------------------------
# Meta's 7-day read window: resets past it, settlement re-checks, counters complete since

HOUR = 3_600_000


def test_a_fall_of_reads_past_the_read_window_is_a_reset_held_and_counted_apart() -> None:
    unit = UnitState(0, 0)
    unit.put_rows([row(0, 10, 8, 5, clicks=4)], now_ms=7 * DAY_MS + HOUR)  # day +7: inside
    now = 8 * DAY_MS + HOUR  # day +8: the day began more than 7 days ago
    assert unit.put_rows([row(0, 10, 8, 0, clicks=0)], now_ms=now) == [READ_WINDOW_RESET]
    total = unit.total()
    assert (total.sent, total.delivered, total.read) == (10, 8, 5)
    assert total.clicks == (("quick_reply", "Stop", 4),)
    assert (unit.read_resets_held, unit.revisions_held) == (1, 0)
    # Read again every poll of that day: held each time, counted once per bucket.
    assert unit.put_rows([row(0, 10, 8, 0)], now_ms=now + HOUR) == [READ_WINDOW_RESET]
    assert (unit.read_resets_held, unit.revisions_held) == (1, 0)
    # Lower but not zero counts as the reset too (Meta's counts may drop part-way).
    unit.put_rows([row(1, 6, 6, 3)], now_ms=now)
    assert unit.put_rows([row(1, 6, 6, 1)], now_ms=now + DAY_MS) == [READ_WINDOW_RESET]
    assert (unit.read_resets_held, unit.revisions_held, unit.total().read) == (2, 0, 8)


def test_a_fall_inside_the_window_or_of_sent_stays_a_downward_revision() -> None:
    unit = UnitState(0, 0)
    unit.put_rows([row(0, 10, 8, 5), row(1, 10, 8, 5)], now_ms=DAY_MS)
    # Inside the window (day +6): reads falling is a revision, as before.
    assert unit.put_rows([row(0, 10, 8, 2)], now_ms=6 * DAY_MS) == [REVISION]
    # Past the window, but sent fell too: not the documented reset.
    assert unit.put_rows([row(1, 9, 8, 0)], now_ms=9 * DAY_MS + HOUR) == [REVISION]
    # Without a clock (the old callers) every fall is a revision.
    assert unit.put_rows([row(0, 10, 8, 0)]) == [REVISION]
    assert (unit.revisions_held, unit.read_resets_held) == (3, 0)
    assert unit.total().read == 10


def folded_unit() -> tuple[UnitState, int]:
    """Days 0..4 read live on day 4, then day 5 polled: days 0 and 1 settled with checks due a
    day later."""
    unit = UnitState(0, 0)
    unit.put_rows([row(d, 10 + d, 8 + d, 5 + d, clicks=1) for d in range(5)], now_ms=4 * DAY_MS)
    now = 5 * DAY_MS + HOUR
    unit.put_rows([row(d, 10 + d, 8 + d, 5 + d, clicks=1) for d in range(6)], now_ms=now)
    unit.fold(2 * DAY_MS, now_ms=now, check_at_ms=now + DAY_MS)
    return unit, now


def test_a_fold_remembers_the_days_read_live_and_the_recheck_counts_a_change() -> None:
    unit, folded_at = folded_unit()
    assert sorted(unit.checks) == [0, DAY_MS]
    assert unit.checks_due(folded_at) == []
    later = folded_at + DAY_MS
    assert [c.start_ms for c in unit.checks_due(later)] == [0, DAY_MS]
    found = {0: Tally(10, 8, 5, {("quick_reply", "Stop"): 1}), DAY_MS: Tally(11, 9, 9)}
    changes = unit.verify_settled(found, 0, later, later)
    assert changes == [SettledChange(DAY_MS, folded_at - DAY_MS, later - DAY_MS,
                                     (11, 9, 6, 1), (11, 9, 9, 0))]  # fmt: skip
    assert unit.settled_changes == 1
    assert unit.checks == {}, "each settled day is re-read once"
    assert unit.total().read == sum(5 + d for d in range(6)), "the settled values stay"


def test_a_recheck_waits_for_its_time_and_for_a_read_covering_it() -> None:
    unit, folded_at = folded_unit()
    changed = {0: Tally(99, 99, 99), DAY_MS: Tally(99, 99, 99)}
    assert unit.verify_settled(changed, 0, folded_at, folded_at) == []  # not due yet
    later = folded_at + DAY_MS
    # A read from day 1 on covers day 1 only: compared (and changed), day 0 waits.
    assert [c.start_ms for c in unit.verify_settled(changed, DAY_MS, later, later)] == [DAY_MS]
    assert sorted(unit.checks) == [0]
    # An empty answer proves nothing for a day that had activity.
    assert unit.verify_settled({}, 0, later, later) == []
    assert sorted(unit.checks) == [0]


def test_a_recheck_past_the_window_expects_the_reset() -> None:
    unit = UnitState(0, 0)
    unit.put_rows([row(0, 10, 8, 5, clicks=2)], now_ms=8 * DAY_MS)
    now = 9 * DAY_MS + HOUR
    unit.put_rows([row(0, 10, 8, 0)], now_ms=now)  # the reset, held
    unit.fold(DAY_MS, now_ms=now, check_at_ms=now + DAY_MS)
    later = now + DAY_MS
    assert unit.verify_settled({0: Tally(10, 8, 0)}, 0, later, later) == []
    assert (unit.settled_changes, unit.checks) == (0, {})


def test_checks_are_bounded_and_persisted() -> None:
    unit = UnitState(0, 0)
    days = MAX_CHECKS + 5
    unit.put_rows([row(d, 1, 1, 1) for d in range(days)], now_ms=days * DAY_MS)
    now = (days + 1) * DAY_MS
    unit.fold(days * DAY_MS, now_ms=now, check_at_ms=now + DAY_MS)
    assert sorted(unit.checks) == [d * DAY_MS for d in range(5, days)], "the newest are kept"
    again = UnitState.from_json(json.loads(json.dumps(unit.to_json())))
    assert again.checks == unit.checks
    # A state file written before checks existed has none.
    older = unit.to_json()
    del older["checks"], older["reads_incomplete_until"]
    assert UnitState.from_json(older).checks == {}


def test_a_first_read_in_one_poll_is_not_remembered() -> None:
    """A backfill reads and folds old days in one poll: nothing was settled early there."""
    unit = UnitState(0, 0)
    now = 20 * DAY_MS
    unit.put_rows([row(d, 1, 1, 1) for d in range(20)], now_ms=now)
    unit.fold(10 * DAY_MS, now_ms=now, check_at_ms=now + DAY_MS)
    assert unit.checks == {}


def test_half_hours_of_one_day_are_checked_as_one() -> None:
    unit = UnitState(0, 0, granularity="HALF_HOUR")
    half = DAY_MS // 48
    for k in range(4):
        unit.put(k * half, (k + 1) * half, Tally(1, 1, 1), now_ms=HOUR)
    now = 2 * HOUR
    unit.fold(2 * half, now_ms=now, check_at_ms=now + DAY_MS)
    unit.fold(4 * half, now_ms=now + half, check_at_ms=now + half + DAY_MS)
    (check,) = unit.checks.values()
    assert (check.start_ms, check.end_ms, check.tally.summary()) == (0, 4 * half, (4, 4, 4, 0))
    assert check.due_ms == now + half + DAY_MS
    found = {k * half: Tally(1, 1, 1) for k in range(4)}
    assert unit.verify_settled(found, 0, now + 2 * DAY_MS, now + 2 * DAY_MS) == []


def test_reads_first_read_past_the_window_make_the_counters_complete_later() -> None:
    unit = UnitState(0, 0)  # origin: day 0
    now = 10 * DAY_MS + HOUR  # days 0..2 are past the window
    unit.put_rows(
        [row(0, 10, 8, 0), row(1, 0, 0, 0), row(2, 10, 8, 0), row(3, 10, 8, 0), row(4, 5, 5, 2)],
        now_ms=now,
    )
    # Days 2 and 3 (10 and 7 days and an hour old: past the window) came with deliveries and
    # no reads: they may have been reset before they were ever read. Day 4 is inside.
    assert unit.reads_complete_since_ms == 4 * DAY_MS
    again = UnitState.from_json(json.loads(json.dumps(unit.to_json())))
    assert again.reads_complete_since_ms == 4 * DAY_MS
    # Re-reading those buckets later does not move it again; a live unit stays complete.
    live = UnitState(0, 0)
    live.put_rows([row(0, 10, 8, 3)], now_ms=DAY_MS)
    live.put_rows([row(0, 10, 8, 0)], now_ms=9 * DAY_MS)
    assert live.reads_complete_since_ms == 0
