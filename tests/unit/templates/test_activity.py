"""The idle schedule and waking, without HTTP: which units a cycle reads, and when.

- spread: idle units read at one moment come due once each over the next idle interval, in
  about equal numbers per cycle, and then once per interval, never twice;
- activation: a read that changes a unit's counts makes it active at once; it is idle again
  after `idle_after` without change; a template that never sent is idle from the start but read
  at once while it has no successful read; per-template groups are idle only as a whole;
- restart: the schedule's inputs (`changed_at`, `last_success`) survive the state file, so the
  same units are due before and after;
- waking: a space whose numbers grew by more than its templates is woken, one whose templates
  explain the growth is not; a wake that finds nothing makes the next one wait 1, 2, 4 cycles.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from exporter.cams.model import DAY_MS, MetricRow, NumberKey, UnitKey
from exporter.config import PollConfig, Space
from exporter.config.schema import Filters
from exporter.counting.state import UnitState
from exporter.counting.store import CounterStore
from exporter.templates.activity import Schedule, slot_offset
from exporter.templates.discovery import Unit
from exporter.templates.waking import Waking

HOUR = 3600.0
POLL = PollConfig(interval_s=300.0, idle_interval_s=HOUR, idle_after_s=3 * 86400.0)
SPACE = Space("cams-1", None, True, Filters(), ())
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def key(n: int, language: str = "en", space: str = "cams-1") -> UnitKey:
    return UnitKey("main", space, f"tpl{n:05d}", language, "WHATSAPP")


def unit(k: UnitKey) -> Unit:
    return Unit(k, SPACE)


def rows(day: int, sent: int) -> list[MetricRow]:
    return [MetricRow("x", "en", sent, sent, 0, (), day * DAY_MS, (day + 1) * DAY_MS)]


def read_at(state: UnitState, at: float, sent: int | None = None) -> bool:
    """A successful read at `at` (with new counts when `sent` is given): changed?"""
    before = state.total()
    if sent is not None:
        state.put_rows(rows(int(at * 1000) // DAY_MS, sent))
    state.last_success = at
    return Schedule.observe(state, before, at)


def idle_states(count: int, read: float) -> dict[UnitKey, UnitState]:
    """`count` units that never sent, all read successfully at `read`."""
    out = {}
    for n in range(count):
        state = UnitState(0, 0)
        state.last_success = read
        out[key(n)] = state
    return out


def test_idle_reads_are_spread_over_the_interval_once_each() -> None:
    schedule = Schedule(POLL)
    states = idle_states(1200, T0)
    groups = [[unit(k)] for k in states]
    per_cycle: list[int] = []
    reads: Counter[UnitKey] = Counter()
    now = T0
    for _ in range(24):  # two idle intervals of 5-minute cycles
        now += POLL.interval_s
        plan = schedule.plan(groups, states, now)
        assert plan.idle == frozenset(states)
        assert plan.units_read == plan.idle_due
        per_cycle.append(plan.units_read)
        for group in plan.groups:
            for u in group:
                reads[u.key] += 1
                states[u.key].last_success = now
    assert set(reads.values()) == {2}, "every idle unit is read once per interval, never twice"
    # 1200 units over 12 cycles: 100 a cycle on average; no cycle takes a large share of them
    assert sum(per_cycle[:12]) == 1200
    assert max(per_cycle) <= 140, per_cycle
    assert min(per_cycle) >= 60, per_cycle


def test_the_slot_is_stable_and_shared_by_a_templates_languages() -> None:
    assert slot_offset(key(1, "en"), HOUR) == slot_offset(key(1, "es"), HOUR)
    assert 0 <= slot_offset(key(1), HOUR) < HOUR
    assert slot_offset(key(1), HOUR) != slot_offset(key(2), HOUR)


def test_a_changed_unit_is_active_at_once_and_idle_after_the_quiet_period() -> None:
    schedule = Schedule(POLL)
    state = UnitState(0, 0)
    assert schedule.unit_idle(state, T0), "a template that never sent is idle from the start"
    assert schedule.due(key(1), state, T0), "...but read at once while it was never read"
    assert not read_at(state, T0), "a read that finds nothing changes nothing"
    assert schedule.unit_idle(state, T0 + 60)
    assert not schedule.due(key(1), state, T0 + 1), "read in this slot already"
    assert read_at(state, T0 + 600, sent=5), "it starts sending"
    assert state.changed_at == T0 + 600
    assert not schedule.unit_idle(state, T0 + 600)
    after = POLL.idle_after_s or 0.0
    assert not read_at(state, T0 + 900)
    assert not schedule.unit_idle(state, T0 + 600 + after - 1)
    assert schedule.unit_idle(state, T0 + 600 + after)


def test_a_unit_first_seen_with_old_activity_is_dated_by_its_newest_bucket() -> None:
    schedule = Schedule(POLL)
    state = UnitState(0, 0)
    state.put_rows(rows(int(T0 * 1000) // DAY_MS - 10, 7))  # sent ten days ago
    assert schedule.unit_idle(state, T0)
    fresh = UnitState(0, 0)
    fresh.put_rows(rows(int(T0 * 1000) // DAY_MS, 7))  # sent today
    assert not schedule.unit_idle(fresh, T0 + 3600)


def test_a_template_group_is_idle_only_when_every_language_is() -> None:
    schedule = Schedule(POLL)
    states = idle_states(2, T0)
    en, es = key(7, "en"), key(7, "es")
    states[en], states[es] = UnitState(0, 0), UnitState(0, 0)
    states[en].last_success = states[es].last_success = T0
    read_at(states[es], T0 + 60, sent=3)
    group = [unit(en), unit(es)]
    plan = schedule.plan([group, [unit(key(0))], [unit(key(1))]], states, T0 + 120)
    assert en not in plan.idle and es not in plan.idle
    assert tuple(group) in plan.groups, "an active language keeps its template's read"


def test_idle_polling_off_reads_everything_every_cycle() -> None:
    schedule = Schedule(PollConfig(idle_after_s=None))
    states = idle_states(50, T0)
    plan = schedule.plan([[unit(k)] for k in states], states, T0 + 300)
    assert plan.idle == frozenset()
    assert plan.units_read == 50


def test_the_schedule_survives_a_restart_with_the_state_file(tmp_path: Path) -> None:
    schedule = Schedule(POLL)
    store = CounterStore()
    store.units.update(idle_states(300, T0))
    for n in range(0, 300, 7):  # some of them send
        read_at(store.units[key(n)], T0 + 10, sent=n + 1)
    path = tmp_path / "state.json"
    store.save(str(path))
    loaded, warning = CounterStore.load(str(path))
    assert warning is None
    groups = [[unit(k)] for k in store.units]
    for later in (T0 + 300, T0 + 1800, T0 + 5 * 86400):
        before = schedule.plan(groups, store.units, later)
        after = schedule.plan(groups, loaded.units, later)
        assert before == after
    assert loaded.units[key(7)].changed_at == T0 + 10


# -- waking --------------------------------------------------------------------------------------


def number(space: str, n: int) -> NumberKey:
    return NumberKey("main", space, f"+6580000{n:03d}")


def sent(store: CounterStore, k: UnitKey | NumberKey, total: int) -> None:
    table = store.numbers if isinstance(k, NumberKey) else store.units
    state = table.setdefault(k, UnitState(0, 0))  # type: ignore[arg-type]
    state.put_rows(rows(20_000, total))


def test_numbers_growing_past_the_templates_wake_the_space() -> None:
    store = CounterStore()
    waking = Waking("main", store, POLL.interval_s)
    active, idle, other = key(1), key(2), key(3, space="cams-2")
    for k, total in ((active, 100), (idle, 0), (other, 0)):
        sent(store, k, total)
    sent(store, number("cams-1", 1), 100)
    sent(store, number("cams-2", 1), 0)
    assert waking.look({idle, other}, 0.0) == set(), "the first look only takes the baseline"
    # the active template sent 50, the numbers 50: explained
    sent(store, active, 150)
    sent(store, number("cams-1", 1), 150)
    assert waking.look({idle, other}, 0.0) == set()
    # the numbers sent 70 while the active template sent 50: an idle one is sending
    sent(store, active, 200)
    sent(store, number("cams-1", 1), 220)
    assert waking.look({idle, other}, 0.0) == {"cams-1"}
    sent(store, idle, 20)  # the wake read finds it
    waking.settle({"cams-1": True})
    sent(store, active, 250)
    sent(store, idle, 30)
    sent(store, number("cams-1", 1), 280)
    assert waking.look({other}, 0.0) == set(), "the woken template explains the growth now"
    assert waking.wakes == 1


def test_growth_the_numbers_read_late_can_explain_does_not_wake() -> None:
    store = CounterStore()
    waking = Waking("main", store, POLL.interval_s)
    active, idle = key(1), key(2)
    sent(store, active, 0)
    sent(store, idle, 0)
    sent(store, number("cams-1", 1), 0)
    waking.look({idle}, 0.0)
    sent(store, active, 1000)
    sent(store, number("cams-1", 1), 1010)  # read 1% of the cycle after the active one
    assert waking.look({idle}, 0.02) == set()
    sent(store, active, 2000)
    sent(store, number("cams-1", 1), 2100)
    assert waking.look({idle}, 0.02) == {"cams-1"}


def test_a_new_number_or_unit_is_not_growth() -> None:
    store = CounterStore()
    waking = Waking("main", store, POLL.interval_s)
    idle = key(2)
    sent(store, idle, 0)
    sent(store, number("cams-1", 1), 10)
    waking.look({idle}, 0.0)
    sent(store, number("cams-1", 2), 5000)  # a number listed since: its history is not news
    assert waking.look({idle}, 0.0) == set()


def test_fruitless_wakes_wait_longer_each_time() -> None:
    store = CounterStore()
    waking = Waking("main", store, POLL.interval_s)
    idle = key(2)
    sent(store, idle, 0)
    total = 0
    sent(store, number("cams-1", 1), total)
    waking.look({idle}, 0.0)
    woken_at = []
    for cycle in range(16):  # the numbers count messages that are not templates
        total += 10
        sent(store, number("cams-1", 1), total)
        if waking.look({idle}, 0.0):
            woken_at.append(cycle)
            waking.settle({"cams-1": False})
    assert woken_at == [0, 2, 5, 10], "waits of 1, 2, 4 cycles after each fruitless wake"
