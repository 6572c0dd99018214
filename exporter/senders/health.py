"""Rounds of GetWhatsappHealthStatus: which nodes to ask about, when, and what they answered.

GetWhatsappHealthStatus reads Meta's health status directly and Meta caps the total calls, so
it is read sparingly. A *round* asks once about each node: the WABA of every space, every
listed phone number and (with `templates`) every polled WhatsApp template-language, in that
order. Calls are spread evenly over `interval` (call i of n at start + i * interval / n) and
go through the action's own rate limiter, so they never exceed `qps`; a round with more nodes
than `interval * qps` just takes longer (the next starts right after it, and one line says
so). The first round after a start is not spread: it runs as fast as `qps` allows, so that
the can-send status shows soon.

A node whose read fails keeps its last answer (with the error code); nodes that are no longer
polled are dropped at the end of a round.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from exporter.cams.client import CamsClient
from exporter.cams.errors import AnomalousAnswer, CamsError
from exporter.cams.sender_model import (
    NODE_PHONE,
    NODE_TEMPLATE,
    NODE_WABA,
    HealthError,
    HealthStatus,
)
from exporter.config import HealthStatusConfig, Space
from exporter.counting.anomalies import AnomalyLog
from exporter.senders.view import EntityHealth

log = logging.getLogger("cams_exporter.senders")
HealthKey = tuple[str, str, str, str, str]  # node type, space, phone number, template, language


@dataclass(frozen=True, slots=True)
class Target:
    """One node to ask GetWhatsappHealthStatus about."""

    node_type: str
    space: Space
    phone_number: str = ""
    template_code: str = ""
    language: str = ""

    @property
    def key(self) -> HealthKey:
        return (
            self.node_type,
            self.space.label,
            self.phone_number,
            self.template_code,
            self.language,
        )


def plan_round(
    spaces: Iterable[Space],
    numbers: Iterable[tuple[Space, str]],
    templates: Iterable[tuple[Space, str, str]],
) -> list[Target]:
    """The nodes of one round, WABAs first, then numbers, then template-languages."""
    targets = [Target(NODE_WABA, space) for space in spaces]
    targets += [Target(NODE_PHONE, space, phone_number=n) for space, n in numbers]
    targets += [
        Target(NODE_TEMPLATE, space, template_code=code, language=language)
        for space, code, language in templates
    ]
    return targets


def due_times(start: float, count: int, interval_s: float, spread: bool) -> list[float]:
    """When each call of a round may start (monotonic seconds): evenly over the interval, or
    all at once (the limiter then paces them) when not spread."""
    if not spread or count == 0:
        return [start] * count
    step = interval_s / count
    return [start + i * step for i in range(count)]


def round_seconds(count: int, interval_s: float, qps: float) -> float:
    """How long a spread round of `count` calls lasts: the interval, or as long as `count`
    calls take at `qps` (the limiter spaces calls 1.03 / qps apart) when that is longer."""
    return max(interval_s, count * 1.03 / qps)


def _entity(target: Target, status: HealthStatus) -> EntityHealth:
    """What one answer says about the node asked for."""
    entity = status.entity_for(target.node_type)
    errors: tuple[HealthError, ...]
    if entity is not None:
        can_send, errors = entity.can_send or status.can_send, entity.errors
        waba_id = entity.waba_id
    else:  # no entity stands for the node: the overall answer, with every error given
        can_send = status.can_send
        errors = tuple(e for item in status.entities for e in item.errors)
        waba_id = next((e.waba_id for e in status.entities if e.waba_id), "")
    return EntityHealth(
        node_type=target.node_type,
        space=target.space.label,
        can_send=can_send,
        waba_id=waba_id if target.node_type == NODE_WABA else "",
        phone_number=target.phone_number,
        template_code=target.template_code,
        language=target.language,
        errors=errors,
    )


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one round did."""

    targets: int
    failed: int
    started: float  # unix seconds
    duration_s: float


class HealthRounds:
    """The health-status answers of one account and the rounds that read them; thread-safe."""

    def __init__(
        self,
        account: str,
        settings: HealthStatusConfig,
        client: CamsClient,
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] = lambda: None,
        anomalies: AnomalyLog | None = None,
    ) -> None:
        self.account, self.settings, self.client, self.clock = account, settings, client, clock
        self.on_change, self.anomalies = on_change, anomalies
        self._lock = threading.Lock()
        self._results: dict[HealthKey, EntityHealth] = {}
        self.last_round: RoundResult | None = None
        self._overran = False

    def results(self) -> list[EntityHealth]:
        """The answers kept now, in node order."""
        with self._lock:
            return [self._results[key] for key in sorted(self._results)]

    def read(self, target: Target) -> bool:
        """Ask about one node and keep the answer; False when the call failed."""
        try:
            status = self.client.health_status(
                node_type=target.node_type,
                cust_space_id=target.space.cust_space_id,
                template_code=target.template_code or None,
                language=target.language or None,
                phone_number=target.phone_number or None,
            )
        except CamsError as error:
            if isinstance(error, AnomalousAnswer) and self.anomalies is not None:
                self.anomalies.report(
                    self.account,
                    error.action,
                    error,
                    space=target.space.label,
                    template=target.template_code,
                    language=target.language,
                )
            with self._lock:
                before = self._results.get(target.key)
                after = (
                    replace(before, last_error=error.code)
                    if before is not None
                    else EntityHealth(
                        target.node_type,
                        target.space.label,
                        "",
                        phone_number=target.phone_number,
                        template_code=target.template_code,
                        language=target.language,
                        last_error=error.code,
                    )
                )
                self._results[target.key] = after
            if after != before:
                self.on_change()
            log.debug("GetWhatsappHealthStatus failed: %s", error, extra={"account": self.account})
            return False
        entity = _entity(target, status)
        with self._lock:
            before = self._results.get(target.key)
            self._results[target.key] = entity
        if entity != before:
            self.on_change()
        return True

    def run_round(self, targets: Sequence[Target], stop: threading.Event, spread: bool) -> bool:
        """Ask about every target once, spread over the interval (or not); False if stopped."""
        interval = self.settings.interval_s
        started_wall, started = self.clock(), time.monotonic()
        due = due_times(started, len(targets), interval, spread)
        workers = max(1, min(4, math.ceil(self.settings.qps)))

        def one(item: tuple[Target, float]) -> bool | None:
            target, when = item
            if stop.wait(max(0.0, when - time.monotonic())):
                return None
            return self.read(target)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="health") as pool:
            outcomes = list(pool.map(one, zip(targets, due, strict=True)))
        if stop.is_set():
            return False
        wanted = {t.key for t in targets}
        with self._lock:
            for key in [k for k in self._results if k not in wanted]:
                del self._results[key]
        duration = time.monotonic() - started
        self.last_round = RoundResult(
            targets=len(targets),
            failed=sum(1 for outcome in outcomes if outcome is False),
            started=started_wall,
            duration_s=duration,
        )
        self._report_overrun(len(targets), duration, spread)
        self.on_change()
        return True

    def _report_overrun(self, count: int, duration: float, spread: bool) -> None:
        """One line when spread rounds stop fitting in the interval, one when they fit again."""
        if not spread:
            return
        over = duration > self.settings.interval_s * 1.1
        if over and not self._overran:
            log.warning(
                "a GetWhatsappHealthStatus round of %d nodes took %.0fs, longer than "
                "sender_health.health_status.interval (%.0fs): raise its qps or interval, "
                "or turn templates off",
                count,
                duration,
                self.settings.interval_s,
                extra={"account": self.account},
            )
        elif self._overran and not over:
            log.info(
                "GetWhatsappHealthStatus rounds fit in their interval again",
                extra={"account": self.account},
            )
        self._overran = over

    def carry_over(self, old: HealthRounds) -> None:
        """After a reload: keep the answers and the last round of the replaced rounds."""
        with old._lock:
            results = dict(old._results)
        with self._lock:
            self._results = results
        self.last_round = old.last_round
