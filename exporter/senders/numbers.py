"""The phone numbers of an account: QueryChatappPhoneNumbers per space, re-run every interval.

`PhoneNumberDiscovery.refresh` lists every space of the account (one call each; the action is
not paged). A number that vanishes from a fresh listing is kept until a second listing agrees
that it is gone, like a template; a space whose listing failed keeps its numbers. With
`--shard`, each replica keeps the numbers it owns (rendezvous hashing of account, space and
number), so replicas never export the same number twice. `numbers()` is what the sender-health
rounds and the per-number counters poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.cams.client import CamsClient
from exporter.cams.errors import AnomalousAnswer, CamsError
from exporter.cams.model import NumberKey, UnitKey
from exporter.cams.sender_model import PhoneNumber
from exporter.config import Account, Space
from exporter.counting.anomalies import AnomalyLog
from exporter.templates.sharding import Shard
from exporter.templates.vanishing import merge_listing

log = logging.getLogger("cams_exporter.senders")


@dataclass(frozen=True, slots=True)
class DiscoveredNumber:
    """A listed number, the space it was listed in (for CustSpaceId and IsvCode) and its fields."""

    key: NumberKey
    space: Space
    number: PhoneNumber


def owned(shard: Shard, key: NumberKey) -> bool:
    """Whether this replica exports the number (a number is sharded like a unit)."""
    return shard.owns(UnitKey(key.account, key.space, key.phone_number, "", "PHONE_NUMBER"))


class PhoneNumberDiscovery:
    """The listed phone numbers of one account; thread-safe."""

    def __init__(
        self,
        account: Account,
        client: CamsClient,
        *,
        shard: Shard,
        clock: Callable[[], float] = time.time,
        anomalies: AnomalyLog | None = None,
    ) -> None:
        self.account, self.client, self.shard, self.clock = account, client, shard, clock
        self.anomalies = anomalies
        self._lock = threading.Lock()
        self._numbers: dict[NumberKey, DiscoveredNumber] = {}
        self._missing: dict[NumberKey, int] = {}
        self.listed: dict[str, float] = {}  # space -> when it was last listed successfully
        self.last_error: str | None = None
        self.attempts = 0  # refreshes run so far (the first one decides the first health round)

    def numbers(self) -> list[DiscoveredNumber]:
        """The numbers to show and poll now, in key order."""
        with self._lock:
            return [self._numbers[key] for key in sorted(self._numbers)]

    def refresh(self) -> bool:
        """List every space; True when something a scrape shows changed."""
        found: dict[NumberKey, DiscoveredNumber] = {}
        fresh: set[str] = set()
        error: str | None = None
        for space in self.account.spaces:
            try:
                listed = self.client.phone_numbers(
                    cust_space_id=space.cust_space_id, isv_code=space.isv_code
                )
            except CamsError as exc:
                error = exc.code
                if isinstance(exc, AnomalousAnswer) and self.anomalies is not None:
                    self.anomalies.report(self.account.name, exc.action, exc, space=space.label)
                    continue  # reported (and logged once) there
                log.warning(
                    "QueryChatappPhoneNumbers failed, keeping the known numbers: %s",
                    exc,
                    extra={"account": self.account.name, "space": space.label},
                )
                continue
            fresh.add(space.label)
            self.listed[space.label] = self.clock()
            for number in listed:
                key = NumberKey(self.account.name, space.label, number.phone_number)
                if owned(self.shard, key):
                    found[key] = DiscoveredNumber(key, space, number)
        with self._lock:
            before = dict(self._numbers)
            self._merge(found, fresh)
            changed = self._numbers != before or error != self.last_error
            self.last_error = error
            self.attempts += 1
        return changed or bool(fresh)

    def _merge(self, found: dict[NumberKey, DiscoveredNumber], fresh: set[str]) -> None:
        """With the lock held: the new set from `found`, keeping vanished numbers once."""
        for key in merge_listing(found, self._numbers, self._missing, fresh):
            log.info(
                "phone number %s gone from QueryChatappPhoneNumbers, dropping its series",
                key.phone_number,
                extra={"account": key.account, "space": key.space},
            )
        self._numbers = found

    def carry_over(self, old: PhoneNumberDiscovery) -> None:
        """After a reload: start from what the replaced discovery knew (same spaces only)."""
        spaces = {s.label: s for s in self.account.spaces}
        kept = {
            key: DiscoveredNumber(key, spaces[key.space], n.number)
            for key, n in ((n.key, n) for n in old.numbers())
            if key.space in spaces and owned(self.shard, key)
        }
        with self._lock:
            self._numbers = kept
            self.listed = {s: t for s, t in old.listed.items() if s in spaces}
            self.last_error = old.last_error
