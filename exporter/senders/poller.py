"""One account's sender health: its phone numbers and health-status rounds, each in a thread of
its own, and the frozen `SenderStatus` they show.

The two threads never share anything with the template cycle but the client (each action has
its own rate limiter): listing numbers every `phone_numbers.interval`, and running rounds of
GetWhatsappHealthStatus (`exporter.senders.health`) every `health_status.interval`. The first
round waits (at most a minute) for the first listing of numbers and of templates, so that it
covers them. `view()` is rebuilt only after something changed; every enum value the exporter
does not know is logged once (per account) and counted in the view.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from exporter.cams.client import CamsClient
from exporter.cams.model import NumberKey
from exporter.cams.sender_model import (
    CAN_SEND_STATES,
    NUMBER_STATUSES,
    QUALITY_RATINGS,
    known,
    messaging_limit,
)
from exporter.config import Account, SenderHealth
from exporter.counting.anomalies import AnomalyLog
from exporter.senders.counters import NumberCounters
from exporter.senders.health import HealthRounds, Target, plan_round
from exporter.senders.numbers import DiscoveredNumber, PhoneNumberDiscovery, owned
from exporter.senders.view import EntityHealth, NumberView, SenderStatus
from exporter.templates.discovery import Unit
from exporter.templates.sharding import Shard

log = logging.getLogger("cams_exporter.senders")
_FIRST_ROUND_WAIT_S = 60.0


def _unknown_values(
    numbers: Sequence[NumberView], health: Sequence[EntityHealth]
) -> Counter[tuple[str, str]]:
    """(API field, value) -> entities reporting a value outside the known ones."""
    found: Counter[tuple[str, str]] = Counter()
    for view in numbers:
        n = view.number
        if n.quality_rating and known(n.quality_rating, QUALITY_RATINGS) is None:
            found["QualityRating", n.quality_rating] += 1
        if n.status and known(n.status, NUMBER_STATUSES) is None:
            found["Status", n.status] += 1
        if n.messaging_limit_tier and view.messaging_limit is None:
            found["MessagingLimitTier", n.messaging_limit_tier] += 1
    for entity in health:
        if entity.can_send and known(entity.can_send, CAN_SEND_STATES) is None:
            found["CanSendMessage", entity.can_send] += 1
    return found


class SenderPoller:
    """Sender health of one account (which opted in with `sender_health`)."""

    def __init__(
        self,
        account: Account,
        settings: SenderHealth,
        client: CamsClient,
        units: Callable[[], Sequence[Unit]],
        *,
        units_ready: Callable[[], bool] = lambda: True,
        shard: Shard | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] = lambda: None,
        anomalies: AnomalyLog | None = None,
        on_crash: Callable[[str], None] | None = None,
        counters: NumberCounters | None = None,
        metrics_loop: bool = True,
    ) -> None:
        self.account = account
        self.counters = counters  # the per-number counters, when phone_number_metrics is on
        # False: the template cycle reads them (`read_number_metrics`), for waking
        self.metrics_loop = metrics_loop
        self.settings, self.units, self.units_ready = settings, units, units_ready
        self.shard = shard or Shard(0, 1)
        self.on_change = on_change
        self.on_crash = on_crash
        self.numbers = PhoneNumberDiscovery(
            account, client, shard=self.shard, clock=clock, anomalies=anomalies
        )
        self.health: HealthRounds | None = None
        if settings.health_status.enabled:
            self.health = HealthRounds(
                account.name,
                settings.health_status,
                client,
                clock=clock,
                on_change=self._changed,
                anomalies=anomalies,
            )
        self._lock = threading.Lock()
        self._view: SenderStatus | None = None
        self._seen_unknown: set[tuple[str, str]] = set()
        self._listed_once = threading.Event()

    # -- what others read ---------------------------------------------------------------------

    def phone_numbers(self) -> list[DiscoveredNumber]:
        """The numbers this replica exports now (what the per-number counters poll)."""
        return self.numbers.numbers()

    def view(self) -> SenderStatus:
        """The frozen sender-health status, rebuilt only after a change."""
        with self._lock:
            if self._view is None:
                self._view = self._build()
            return self._view

    def _changed(self) -> None:
        with self._lock:
            self._view = None
        self.on_change()

    def _build(self) -> SenderStatus:
        """With the lock held: the view from the numbers and the health answers now."""
        counters = self.counters
        numbers = tuple(
            NumberView(
                n.key.space,
                n.number,
                messaging_limit(n.number.messaging_limit_tier),
                counters.counts(n.key) if counters is not None else None,
            )
            for n in self.numbers.numbers()
        )
        health = tuple(self.health.results()) if self.health is not None else ()
        unknown = _unknown_values(numbers, health)
        for field, value in sorted(set(unknown) - self._seen_unknown):
            log.warning(
                "the API answered %s %r, a value the exporter does not know: shown in the info "
                "labels and cams_sender_unknown_values, not in the state sets",
                field,
                value,
                extra={"account": self.account.name},
            )
            self._seen_unknown.add((field, value))
        last = self.health.last_round if self.health is not None else None
        status = self.settings.health_status
        return SenderStatus(
            account=self.account.name,
            numbers=numbers,
            health=health,
            numbers_listed=tuple(sorted(self.numbers.listed.items())),
            numbers_error=self.numbers.last_error,
            health_enabled=self.health is not None,
            health_interval_s=status.interval_s,
            health_targets=last.targets if last else 0,
            health_failed=last.failed if last else 0,
            health_round_finished=last.started + last.duration_s if last else None,
            health_round_duration=last.duration_s if last else None,
            unknown_values=tuple((f, v, n) for (f, v), n in sorted(unknown.items())),
            max_error_series=status.max_error_series,
        )

    # -- the work -------------------------------------------------------------------------------

    def refresh_numbers(self) -> None:
        """List the account's phone numbers once."""
        if self.numbers.refresh():
            self._changed()
        self._listed_once.set()

    def targets(self) -> list[Target]:
        """The nodes of the next health round (this replica's share of them)."""
        name = self.account.name
        spaces = [s for s in self.account.spaces if owned(self.shard, NumberKey(name, s.label, ""))]
        numbers = [(n.space, n.key.phone_number) for n in self.numbers.numbers()]
        templates = []
        if self.settings.health_status.templates:
            templates = [
                (u.space, u.key.template_code, u.key.language)
                for u in self.units()
                if u.key.template_type.upper() == "WHATSAPP"
            ]
        return plan_round(spaces, numbers, templates)

    def run_health_round(self, stop: threading.Event, spread: bool) -> bool:
        """One round over `targets()`; False when stopped (or health status is off)."""
        if self.health is None:
            return False
        return self.health.run_round(self.targets(), stop, spread)

    def _crashed(self, where: str) -> None:
        """Called in an `except` block: counted as `where="senders"` and logged once by the
        scheduler when it is given (the traceback says which part), else logged here."""
        if self.on_crash is not None:
            self.on_crash("senders")
        else:
            log.exception("%s crashed", where, extra={"account": self.account.name})

    def _numbers_loop(self, stop: threading.Event) -> None:
        interval = self.settings.phone_numbers.interval_s
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.refresh_numbers()
            except Exception:  # a bug must not end the thread
                self._crashed("phone-number listing")
                self._listed_once.set()
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def read_number_metrics(self, stop: threading.Event) -> None:
        """Read every listed number's counters once, now: the template cycle calls it when it
        compares the numbers' growth with its templates' (waking), instead of a loop of its
        own. Nothing before the first listing of numbers."""
        if self.counters is None:
            return
        numbers = self.numbers.numbers()
        if numbers:
            self.counters.poll(numbers, stop)
            self._changed()

    def _metrics_loop(self, stop: threading.Event) -> None:
        assert self.counters is not None
        self._listed_once.wait(_FIRST_ROUND_WAIT_S)
        interval = self.counters.interval_s
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.counters.poll(self.numbers.numbers(), stop)
                self._changed()
            except Exception:  # a bug must not end the thread
                self._crashed("phone-number metrics")
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def _wait_for_listings(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + _FIRST_ROUND_WAIT_S
        self._listed_once.wait(_FIRST_ROUND_WAIT_S)
        while not stop.is_set() and time.monotonic() < deadline:
            if not self.settings.health_status.templates or self.units_ready():
                return
            stop.wait(0.25)

    def _health_loop(self, stop: threading.Event) -> None:
        interval = self.settings.health_status.interval_s
        self._wait_for_listings(stop)
        first = True
        while not stop.is_set():
            started = time.monotonic()
            try:
                if not self.run_health_round(stop, spread=not first):
                    continue
            except Exception:  # a bug must not end the thread
                self._crashed("health-status round")
            first = False
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        """Start the numbers thread (and the health thread); they end when `stop` is set."""
        loops: list[tuple[str, Callable[[threading.Event], None]]] = [
            ("numbers", self._numbers_loop)
        ]
        if self.health is not None:
            loops.append(("health", self._health_loop))
        if self.counters is not None and self.metrics_loop:
            loops.append(("number-metrics", self._metrics_loop))
        threads = []
        for name, loop in loops:
            thread = threading.Thread(
                target=loop, args=(stop,), name=f"{name}-{self.account.name}", daemon=True
            )
            thread.start()
            threads.append(thread)
        return threads

    def carry_over(self, old: SenderPoller) -> None:
        """After a reload: start from what the replaced poller knew, so nothing flaps."""
        self.numbers.carry_over(old.numbers)
        if self.health is not None and old.health is not None:
            self.health.carry_over(old.health)
        with old._lock:
            seen = set(old._seen_unknown)
        with self._lock:
            self._seen_unknown |= seen
            self._view = None
