"""Waking: a space whose phone numbers sent more than its templates account for has an idle
template sending, so its idle templates are read at once rather than at their idle slots.

With sender health's per-number counters (`CounterStore.numbers`), each cycle reads its active
and due units first, then every number of the account (`AccountPoller` is handed that read),
then `Waking.look` compares, per space, the growth of the numbers' sent counters since the last
look with the growth of the space's WhatsApp templates' sent counters over the same time. Growth
the templates do not explain accumulates; once it exceeds what the active templates can have
sent while the first reads ran (the numbers are read after them, so they may be that much
ahead), the space's idle units are read in the same cycle. Their growth then explains it
(`settle`). Only units and numbers seen at the previous look count (a new one's history is not
growth), and the unexplained growth never goes below zero (numbers read late catch up).

If the numbers also count messages that are not templates, a wake finds no idle unit changed:
the unexplained growth is dropped and that space's next wake waits 1, 2, 4... cycles (up to a
day) while wakes keep finding nothing; one that finds a change ends the wait. Either way, idle
units are still read at their slots, so the idle interval bounds how late a wake is seen.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass, field

from exporter.cams.model import UnitKey
from exporter.counting.store import CounterStore

WHATSAPP = "WHATSAPP"  # the numbers send WhatsApp templates only
MAX_WAIT_S = 86400.0


def _growth(now: Mapping[Hashable, int], before: Mapping[Hashable, int]) -> int:
    """How much the counters seen both times grew."""
    return sum(value - before[key] for key, value in now.items() if key in before)


@dataclass
class _Watch:
    """One space: the sent counters at the last look, and the growth not explained yet."""

    numbers: dict[Hashable, int] = field(default_factory=dict)
    units: dict[Hashable, int] = field(default_factory=dict)
    unexplained: int = 0
    wait: int = 0  # looks left before the next wake may happen
    backoff: int = 0  # the wait after the next wake that finds nothing


class Waking:
    """The wake decisions of one account's spaces; used by its poller thread only."""

    def __init__(self, account: str, store: CounterStore, interval_s: float) -> None:
        self.account, self.store = account, store
        self.max_wait = max(1, math.ceil(MAX_WAIT_S / interval_s))
        self._watches: dict[str, _Watch] = {}
        self.wakes = 0  # spaces woken so far

    def _sent(self) -> tuple[dict[str, dict[Hashable, int]], dict[str, dict[Hashable, int]]]:
        """(numbers, WhatsApp units) of the account by space: their sent counters now."""
        numbers: dict[str, dict[Hashable, int]] = {}
        units: dict[str, dict[Hashable, int]] = {}
        with self.store.lock:
            for number, state in self.store.numbers.items():
                if number.account == self.account:
                    numbers.setdefault(number.space, {})[number] = state.total().sent
            for key, state in self.store.units.items():
                if key.account == self.account and key.template_type.upper() == WHATSAPP:
                    units.setdefault(key.space, {})[key] = state.total().sent
        return numbers, units

    def look(self, idle: Collection[UnitKey], ahead: float) -> set[str]:
        """The spaces whose idle units to read now. `idle`: the units idle in this cycle;
        `ahead`: the share of the time since the last look by which the numbers' read followed
        the first reads (0..1)."""
        numbers, units = self._sent()
        idle_spaces = {key.space for key in idle if key.template_type.upper() == WHATSAPP}
        wake: set[str] = set()
        for space, sent in numbers.items():
            unit_sent = units.get(space, {})
            watch = self._watches.get(space)
            if watch is None:
                self._watches[space] = _Watch(dict(sent), dict(unit_sent))
                continue
            active = {k: v for k, v in unit_sent.items() if k not in idle}
            margin = math.ceil(_growth(active, watch.units) * min(1.0, max(0.0, ahead)))
            grown = _growth(sent, watch.numbers) - _growth(unit_sent, watch.units)
            watch.unexplained = max(0, watch.unexplained + grown)
            watch.numbers, watch.units = dict(sent), dict(unit_sent)
            if watch.wait > 0:
                watch.wait -= 1
            elif watch.unexplained > margin and space in idle_spaces:
                wake.add(space)
        self.wakes += len(wake)
        return wake

    def settle(self, found: Mapping[str, bool]) -> None:
        """After the woken spaces' idle units were read: their growth explains what it can;
        `found` says per space whether a read unit changed (else the wait grows)."""
        if not found:
            return
        _, units = self._sent()
        for space, changed in found.items():
            watch = self._watches.get(space)
            if watch is None:
                continue
            unit_sent = units.get(space, {})
            watch.unexplained = max(0, watch.unexplained - _growth(unit_sent, watch.units))
            watch.units = dict(unit_sent)
            if changed:
                watch.backoff = 0
            else:
                watch.unexplained = 0  # the numbers count something the templates do not
                watch.backoff = min(self.max_wait, max(1, 2 * watch.backoff))
                watch.wait = watch.backoff
