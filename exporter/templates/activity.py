"""Which units a cycle reads: active ones every cycle, idle ones once per `poll.idle_interval`.

A unit is *idle* when none of its counts changed for `poll.idle_after`: `UnitState.changed_at`
is when a read last found them changed (kept in the state file); a unit no read has seen change
yet is dated by the end of its newest bucket with activity, and one with no activity at all (a
template that never sent) is idle from the start. In per-template mode a group (every language of
a template) is idle only when all its languages are.

An idle unit is read once per idle interval, at a slot of its own: a stable hash of its template
places it at an offset in the interval, and it is due once the clock has passed that offset
since its last successful read. So the idle reads of an account are spread evenly over the
interval (no cycle gets them all), every idle unit is read at least once per interval plus one
cycle, and a unit that was never read (new, or no state) is read at once. Any read covers
everything since the unit's settled boundary, so the counters stay exact whatever the gap, and a
read that finds a change makes the unit active at once (`observe`). Everything the schedule
needs is in the units' state, so it carries over a restart with the state file.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter.cams.model import UnitKey
from exporter.config import PollConfig
from exporter.counting.state import Counts, UnitState
from exporter.counting.strategies import bucket_ms
from exporter.templates.discovery import Unit

ACTIVE = "active"
IDLE = "idle"


def slot_offset(key: UnitKey, interval_s: float) -> float:
    """Seconds into every idle interval at which the unit's template is due: a stable hash of
    account, space, code and type (never Python's randomised hash()). Every language of a
    template shares it, so a per-template read never straddles two slots."""
    text = "\x1f".join((key.account, key.space, key.template_code, key.template_type))
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * interval_s


@dataclass(frozen=True, slots=True)
class Plan:
    """What a cycle reads (before any wake), and the split behind it."""

    groups: tuple[tuple[Unit, ...], ...]  # the reads, in the order given
    idle: frozenset[UnitKey]  # the units idle now
    units: int  # every unit of the account
    idle_due: int  # idle units among `groups` (slot come, never read, or last read failed)

    @property
    def units_read(self) -> int:
        """Units the reads cover."""
        return sum(len(group) for group in self.groups)


class Schedule:
    """The active/idle split and the idle slots of one account; holds nothing of its own."""

    def __init__(self, poll: PollConfig) -> None:
        self.interval_s = poll.idle_interval_s
        self.after_s = poll.idle_after_s
        self.bucket_s = bucket_ms(poll.granularity) / 1000

    @property
    def enabled(self) -> bool:
        """False with `poll.idle_after: off`: every unit is read every cycle."""
        return self.after_s is not None

    def last_change(self, state: UnitState, now: float) -> float | None:
        """When the unit's counts last changed as far as known (None: it never sent)."""
        if state.changed_at is not None:
            return state.changed_at
        if state.newest_data_ms is not None:
            return min(now, state.newest_data_ms / 1000 + self.bucket_s)
        return None

    def unit_idle(self, state: UnitState | None, now: float) -> bool:
        """Whether one unit, on its own, is idle (a unit not read yet is: it is due anyway)."""
        if self.after_s is None:
            return False
        if state is None:
            return True
        changed = self.last_change(state, now)
        return changed is None or now - changed >= self.after_s

    def due(self, key: UnitKey, state: UnitState | None, now: float) -> bool:
        """Whether an idle unit's slot came since its last successful read (or it has none)."""
        if state is None or state.last_success is None:
            return True
        interval = self.interval_s
        offset = slot_offset(key, interval)
        last = math.floor((state.last_success - offset) / interval)
        return math.floor((now - offset) / interval) > last

    def idle_units(
        self, groups: Sequence[Sequence[Unit]], states: Mapping[UnitKey, UnitState], now: float
    ) -> frozenset[UnitKey]:
        """The units idle now (call with the store's lock held): a group's units are idle only
        when every one of them is."""
        if not self.enabled:
            return frozenset()
        idle: set[UnitKey] = set()
        for group in groups:
            if all(self.unit_idle(states.get(unit.key), now) for unit in group):
                idle.update(unit.key for unit in group)
        return frozenset(idle)

    def plan(
        self, groups: Sequence[Sequence[Unit]], states: Mapping[UnitKey, UnitState], now: float
    ) -> Plan:
        """The reads of a cycle starting at `now` (call with the store's lock held): every
        active group, and the idle groups that are due."""
        idle = self.idle_units(groups, states, now)
        chosen: list[tuple[Unit, ...]] = []
        idle_due = 0
        for group in groups:
            if group[0].key not in idle:
                chosen.append(tuple(group))
            elif any(self.due(unit.key, states.get(unit.key), now) for unit in group):
                chosen.append(tuple(group))
                idle_due += len(group)
        return Plan(tuple(chosen), idle, sum(len(group) for group in groups), idle_due)

    @staticmethod
    def observe(state: UnitState, before: Counts | None, now: float) -> bool:
        """After a successful read (store lock held): date a change of the unit's counts, and
        say whether there was one. A unit without counts before (`before` None: its first read)
        is dated by its data instead (`last_change`)."""
        if before is None or state.total() == before:
            return False
        state.changed_at = now
        return True
