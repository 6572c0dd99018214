"""Which template-language units an account polls: discovered, listed in the config, restored.

`Discovery` re-runs ListChatappTemplate per space when `discovery_interval` has passed (a TTL
cache in between), applies the space's filters, adds the templates listed explicitly, and keeps
the units the state file knows (so they show at once after a restart). A unit that vanishes
from a fresh listing keeps its series until a second listing agrees that it is gone; a space
whose listing failed, or whose pages disagree with their `Total`, keeps all its units.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from cachetools import TTLCache

from exporter.cams.actions import LIST_ACTION
from exporter.cams.answers import safe_text
from exporter.cams.client import ListFilters
from exporter.cams.context import AccountContext
from exporter.cams.errors import AnomalousAnswer, CamsError
from exporter.cams.model import Template, TemplateMeta, UnitKey
from exporter.cams.paging import Listing
from exporter.config import Space
from exporter.counting.anomalies import AnomalyLog
from exporter.counting.store import CounterStore
from exporter.templates.sharding import Shard
from exporter.templates.vanishing import merge_listing

log = logging.getLogger("cams_exporter.poller")


@dataclass(frozen=True, slots=True)
class Unit:
    """One (template, language) to poll, with what the exporter shows about it."""

    key: UnitKey
    space: Space
    meta: TemplateMeta = field(default_factory=TemplateMeta)


class Discovery:
    """The units of one account, refreshed once per cycle; thread-safe."""

    def __init__(
        self, context: AccountContext, store: CounterStore, anomalies: AnomalyLog, *, shard: Shard
    ) -> None:
        self.account, self.client = context.account, context.client
        self.shard, self.anomalies = shard, anomalies
        self.lock = threading.Lock()
        self._units: dict[UnitKey, Unit] = {}
        self._missing: dict[UnitKey, int] = {}
        self._cache: TTLCache[str, Listing] = TTLCache(
            maxsize=max(1, len(self.account.spaces)),
            ttl=context.poll.discovery_interval_s,
            timer=context.clock,
        )
        self.discovered: dict[str, int] = {}  # space -> templates found by the last listing
        self.errors: dict[str, str] = {}  # code -> message, of the last refresh
        self._restore(store)

    def _restore(self, store: CounterStore) -> None:
        """Units the state file knows, shown at once after a restart (before any discovery)."""
        spaces = {s.label: s for s in self.account.spaces}
        for key, unit in store:
            if key.account == self.account.name and key.space in spaces and self.shard.owns(key):
                self._units[key] = Unit(key, spaces[key.space], unit.meta)

    def units(self) -> list[Unit]:
        """The units to poll now, in key order."""
        with self.lock:
            return sorted(self._units.values(), key=lambda u: u.key)

    def listed(self, space: str) -> tuple[Template, ...]:
        """The rows of the space's cached listing (empty when none is cached)."""
        listing = self._cache.get(space)
        return () if listing is None else listing.rows

    def forget(self) -> None:
        """Drop the cached listings: the next refresh lists every space again."""
        self._cache.clear()

    def _listed(self, space: Space) -> Iterable[Unit]:
        for spec in space.templates:
            key = UnitKey(
                self.account.name,
                safe_text(space.label),
                safe_text(spec.code),
                safe_text(spec.language),
                safe_text(spec.template_type),
            )
            yield Unit(key, space)

    def _list(self, space: Space) -> Listing:
        cached = self._cache.get(space.label)
        if cached is not None:
            return cached
        f = space.filters
        listing = self.client.list_templates(
            ListFilters(
                cust_space_id=space.cust_space_id,
                isv_code=space.isv_code,
                audit_status=f.audit_status,
                template_type=f.template_type,
                category=f.category,
            )
        )
        for kind, detail in listing.notes:
            note = AnomalousAnswer(kind, detail, action=LIST_ACTION)
            self.anomalies.report(self.account.name, LIST_ACTION, note, space=space.label)
        if f.name_regex is not None:
            pattern = f.name_regex
            rows = tuple(t for t in listing.rows if pattern.search(t.name))
            listing = Listing(rows, listing.complete, listing.notes)
        self._cache[space.label] = listing
        return listing

    def refresh(self) -> list[str]:
        """Re-run discovery where due; keep a vanished unit until a second discovery agrees.

        Returns the error codes of discoveries that failed (their spaces keep their units).
        """
        found: dict[UnitKey, Unit] = {}
        fresh: set[str] = set()
        errors: list[str] = []
        self.errors = {}
        for space in self.account.spaces:
            for unit in self._listed(space):
                found[unit.key] = unit
            if not space.discover:
                continue
            try:
                listing = self._list(space)
            except AnomalousAnswer as error:
                errors.append(error.code)
                self.errors.setdefault(error.code, str(error))
                self.anomalies.report(self.account.name, LIST_ACTION, error, space=space.label)
                continue
            except CamsError as error:
                errors.append(error.code)
                self.errors.setdefault(error.code, str(error))
                # a warning per space; the cycle's summary is the one error line
                log.warning(
                    "discovery failed, keeping known templates: %s",
                    error,
                    extra={"account": self.account.name, "space": space.label},
                )
                continue
            if listing.complete:
                fresh.add(space.label)  # only a complete listing can say a template is gone
            self.discovered[space.label] = len(listing.rows)
            for t in listing.rows:
                key = UnitKey(self.account.name, space.label, t.code, t.language, t.template_type)
                found[key] = Unit(key, space, TemplateMeta(t.name, t.category, t.audit_status))
        with self.lock:
            self._merge(found, fresh)
        return errors

    def _merge(self, found: dict[UnitKey, Unit], fresh: set[str]) -> None:
        """Called with the lock held: the new unit set from `found` and the known units."""
        for key in merge_listing(found, self._units, self._missing, fresh):
            log.info(
                "gone from discovery, dropping its series",
                extra={
                    "account": key.account,
                    "space": key.space,
                    "template": key.template_code,
                    "language": key.language,
                },
            )
        self._units = {k: u for k, u in found.items() if self.shard.owns(k)}
