"""Properties of the counter logic (hypothesis), beyond tests/unit/counting/test_state.py.

1. `UnitState` against a plain model, for any sequence of: per-bucket answers (rows, duplicated
   and shuffled), per-day spans (the aggregate strategy's reads, `put`), summed old ranges, folds,
   buckets of any alignment (UTC, UTC+8), revisions, and restarts through the state's JSON:
   the counters always equal the settled sum plus the latest (held) value of every live bucket,
   and never decrease.
2. The same through `CounterStore` with several units and the account shapes, saved to a file
   and loaded back.

The same property through `AccountPoller` against real simulators is in
tests/e2e/test_poller_properties.py.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.cams.model import (
    DAY_MS,
    ButtonCount,
    MetricRow,
    TemplateMeta,
    UnitKey,
    button_type_label,
)
from exporter.counting.state import Tally, UnitState
from exporter.counting.store import CounterStore
from tests.kit.counts import Fields, fields_of_row, nonzero, plus

HOUR_MS = 3_600_000
BUTTONS = (
    ("url_button", "Shop now"),
    ("quick_relpy_button", "Stop"),  # the documented misspelling ...
    ("quick_reply_button", "Stop"),  # ... and the example's spelling: one button
    ("phone_number_button", "Call us"),
)

# -- 1. UnitState against a model ---------------------------------------------------------------

Value = tuple[int, int, int, tuple[tuple[int, int], ...]]  # sent, delivered, read, clicks

value_st: st.SearchStrategy[Value] = st.tuples(
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.lists(st.tuples(st.integers(0, len(BUTTONS) - 1), st.integers(0, 60)), max_size=3).map(
        tuple
    ),
)


def metric_row(start_ms: int, end_ms: int, v: Value) -> MetricRow:
    clicks = tuple(ButtonCount(BUTTONS[i][0], BUTTONS[i][1], count) for i, count in v[3])
    return MetricRow("tpl", "en", v[0], v[1], v[2], clicks, start_ms, end_ms)


def fields(v: Value) -> Fields:
    """The model's view of one answer row: a flat dict (clicks merged by label)."""
    out: Fields = {"sent": v[0], "delivered": v[1], "read": v[2]}
    for i, count in v[3]:
        key = (button_type_label(BUTTONS[i][0]), BUTTONS[i][1])
        out[key] = out.get(key, 0) + count
    return out


def fields_of_total(unit: UnitState) -> Fields:
    total = unit.total()
    out: Fields = {"sent": total.sent, "delivered": total.delivered, "read": total.read}
    for button_type, button, count in total.clicks:
        out[(button_type, button)] = count
    return out


def maximum(a: Fields, b: Fields) -> Fields:
    return {k: max(a.get(k, 0), b.get(k, 0)) for k in a.keys() | b.keys()}


@dataclass
class Model:
    """What the counters must be: settled sum + held maximum of every live bucket."""

    settled_until: int = 0
    settled: Fields = field(default_factory=dict)
    live: dict[int, tuple[int, Fields]] = field(default_factory=dict)  # start -> (end, held)

    def read(self, start: int, end: int, value: Fields) -> None:
        if end <= self.settled_until:
            return  # already settled: a late answer never counts twice
        old_end, old = self.live.get(start, (end, {}))
        self.live[start] = (max(end, old_end), maximum(old, value))

    def fold(self, boundary: int) -> None:
        if boundary <= self.settled_until:
            return
        for start, (end, value) in list(self.live.items()):
            if end <= boundary:
                self.settled = plus(self.settled, value)
                del self.live[start]
        self.settled_until = boundary

    def total(self) -> Fields:
        out = dict(self.settled)
        for _, value in self.live.values():
            out = plus(out, value)
        return out


ALIGNMENTS = (0, -8 * HOUR_MS)  # UTC days, UTC+8 days (start at 16:00 UTC the day before)

op_st = st.one_of(
    # a per-bucket answer: rows of some days in one alignment, duplicated and shuffled
    st.tuples(
        st.just("rows"),
        st.sampled_from(ALIGNMENTS),
        st.lists(st.tuples(st.integers(1, 10), value_st), max_size=8),
        st.integers(0, 2**16),
    ),
    # the aggregate strategy's reads: one `put` per day
    st.tuples(
        st.just("spans"),
        st.sampled_from(ALIGNMENTS),
        st.lists(st.tuples(st.integers(1, 10), value_st), max_size=6),
        st.just(0),
    ),
    # an old range never read before, summed in one call, then folded
    st.tuples(
        st.just("sum"), st.integers(1, 4), st.lists(value_st, min_size=1, max_size=4), st.just(0)
    ),
    st.tuples(st.just("fold"), st.integers(0, 3), st.just(()), st.just(0)),
    st.tuples(st.just("restart"), st.just(0), st.just(()), st.just(0)),
)


def roundtrip(unit: UnitState) -> UnitState:
    return UnitState.from_json(json.loads(json.dumps(unit.to_json())))


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op_st, min_size=1, max_size=25))
def test_unit_counters_follow_the_model_through_any_reads_shapes_and_restarts(
    ops: list[tuple[str, Any, Any, int]],
) -> None:
    unit = UnitState(0, 0)
    model = Model()
    previous: Fields = {}
    for kind, a, b, seed in ops:
        if kind == "rows":
            rows = [metric_row(day * DAY_MS + a, (day + 1) * DAY_MS + a, v) for day, v in b]
            rng = random.Random(seed)
            rows += rng.sample(rows, k=len(rows) // 2)
            rng.shuffle(rows)
            unit.put_rows(rows)
            for r in rows:
                model.read(r.start_ms, max(r.end_ms, r.start_ms + 1), fields_of_row(r))
        elif kind == "spans":
            for day, v in b:
                start = day * DAY_MS + a
                unit.put(start, start + DAY_MS, Tally.of_rows([metric_row(0, DAY_MS, v)]))
                model.read(start, start + DAY_MS, fields(v))
        elif kind == "sum":
            lower = unit.settled_until_ms
            upper = lower + a * DAY_MS
            if any(start < upper for start in unit.buckets):
                continue  # only ranges with nothing live are summed (as the poller does)
            rows = [metric_row(lower, upper, v) for v in b]
            unit.put(lower, upper, Tally.of_rows(rows))
            unit.fold(upper)
            total: Fields = {}
            for v in b:
                total = plus(total, fields(v))
            model.read(lower, upper, total)
            model.fold(upper)
        elif kind == "fold":
            boundary = unit.settled_until_ms + a * DAY_MS
            unit.fold(boundary)
            model.fold(boundary)
        else:
            unit = roundtrip(unit)
        now = nonzero(fields_of_total(unit))
        assert now == nonzero(model.total())
        assert all(now.get(k, 0) >= v for k, v in previous.items()), "a counter went down"
        assert unit.settled_until_ms == model.settled_until
        previous = now


# -- 2. CounterStore: several units, shapes, file round trips --------------------------------------

KEYS = tuple(
    UnitKey("main" if i < 3 else "other", "cams-1", f"tpl{i}", lang, "WHATSAPP")
    for i in range(4)
    for lang in ("en", "pt_BR")
)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(KEYS),
            st.lists(st.tuples(st.integers(0, 6), value_st), max_size=5),
            st.booleans(),  # restart through the file after this step
            st.integers(0, 2),  # days to fold
        ),
        min_size=1,
        max_size=15,
    ),
    shape=st.sampled_from(["per-bucket", "aggregate"]),
)
def test_store_file_round_trips_keep_every_unit_exact(
    steps: list[tuple[UnitKey, list[tuple[int, Value]], bool, int]], shape: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "state.json")
        store = CounterStore()
        store.shapes["main"] = shape
        models: dict[UnitKey, Model] = {}
        previous: dict[UnitKey, Fields] = {}
        for key, answer, restart, fold in steps:
            meta = TemplateMeta(key.template_code)
            unit = store.units.setdefault(key, UnitState(0, 0, meta=meta))
            model = models.setdefault(key, Model())
            unit.put_rows([metric_row(d * DAY_MS, (d + 1) * DAY_MS, v) for d, v in answer])
            for d, v in answer:
                model.read(d * DAY_MS, (d + 1) * DAY_MS, fields(v))
            unit.fold(unit.settled_until_ms + fold * DAY_MS)
            model.fold(model.settled_until + fold * DAY_MS)
            if restart:
                store.save(path)
                store, warning = CounterStore.load(path)
                assert warning is None
                assert store.shapes == {"main": shape}
            assert set(store.units) == set(models)
            for k, m in models.items():
                now = nonzero(fields_of_total(store.units[k]))
                assert now == nonzero(m.total()), k
                assert all(now.get(f, 0) >= v for f, v in previous.get(k, {}).items())
                previous[k] = now
                assert store.units[k].meta.name == k.template_code
