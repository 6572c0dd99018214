"""Counter state: per-bucket replacement, held revisions, folding, persistence."""

from __future__ import annotations

import json
import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.cams.model import DAY_MS, ButtonCount, MetricRow, TemplateMeta, UnitKey
from exporter.counting.state import CounterStore, Tally, UnitState

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
    revisions = unit.put_rows([row(0, 9, 8, 5, clicks=3)])
    total = unit.total()
    assert revisions == 1
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
