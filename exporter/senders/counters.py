"""Per-number counters: `cams_phone_number_messages_{sent,delivered,read}_total`, exact in the
same way as the template counters.

GetChatappPhoneNumberMetric answers like GetChatappTemplateMetric (daily buckets that keep
changing for days, the same open questions), so each listed number is read through the same
`Counting` strategies (per-bucket or aggregate, learned per account for this action), checked by
the same answer checks (an anomalous answer is counted under this action, logged once, never
applied), and kept per bucket with settled totals in the same state file (`CounterStore.numbers`).
A read counter exists only for numbers whose answers carry `ReadCount` (the official SDK's model
has no such field, so the real API may not send it; a count it does not send is not a zero).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from exporter.cams.actions import PHONE_METRIC_ACTION
from exporter.cams.context import AccountContext
from exporter.cams.errors import AnomalousAnswer, CamsError
from exporter.cams.model import MetricRow, NumberKey
from exporter.config.schema import PhoneNumberMetricsConfig
from exporter.counting.anomalies import AnomalyLog
from exporter.counting.store import CounterStore
from exporter.counting.strategies import Counting, Member
from exporter.senders.counts import NumberCounts
from exporter.senders.numbers import DiscoveredNumber

log = logging.getLogger("cams_exporter.senders")


class NumberCounters:
    """The per-number counters of one account; thread-safe."""

    def __init__(
        self,
        context: AccountContext,
        settings: PhoneNumberMetricsConfig,
        store: CounterStore,
        anomalies: AnomalyLog,
    ) -> None:
        account, poll, clock = context.account, context.poll, context.clock
        self.account, self.poll_config, self.client = account, poll, context.client
        self.store, self.anomalies, self.clock = store, anomalies, clock
        self.interval_s = settings.interval_s or poll.interval_s
        self.workers = max(1, min(8, int(settings.qps)))
        self.counting = Counting(
            account.name,
            poll,
            store,
            clock=clock,
            table=store.numbers,
            shape_key=f"{account.name}/{PHONE_METRIC_ACTION}",
            action=PHONE_METRIC_ACTION,
        )
        self._lock = threading.Lock()
        self._reads: set[NumberKey] = set()  # numbers whose answers carried ReadCount

    def _fetch(self, number: DiscoveredNumber) -> Callable[[int, int], Sequence[MetricRow]]:
        def fetch(start_ms: int, end_ms: int) -> Sequence[MetricRow]:
            rows = self.client.phone_number_metrics(
                phone_number=number.key.phone_number,
                start_ms=start_ms,
                end_ms=end_ms,
                max_range_ms=int(self.poll_config.max_range_s * 1000),
                cust_space_id=number.space.cust_space_id,
                isv_code=number.space.isv_code,
                granularity=self.poll_config.granularity,
            )
            if any(row.read is not None for row in rows):
                with self._lock:
                    self._reads.add(number.key)
            return [row.as_metric_row() for row in rows]

        return fetch

    def _read(self, number: DiscoveredNumber) -> str | None:
        """One number read and applied: None, or the error code."""
        key = number.key
        error: CamsError | None = None
        try:
            failed = self.counting.poll_group([Member.of_number(key)], self._fetch(number))
            error = failed.get(key)
        except CamsError as read_error:
            error = read_error
        if isinstance(error, AnomalousAnswer):
            self.anomalies.report_for(key, PHONE_METRIC_ACTION, error)
        with self.store.lock:
            state = self.store.numbers.get(key)
            if state is not None:
                if error is None:
                    state.last_success = self.clock()
                state.last_error = None if error is None else error.code
        return None if error is None else error.code

    def poll(self, numbers: Sequence[DiscoveredNumber], stop: threading.Event) -> bool:
        """Read every number once; True when all were read."""
        if not numbers:
            return True
        with ThreadPoolExecutor(self.workers, thread_name_prefix="numbers") as pool:
            codes = list(pool.map(lambda n: None if stop.is_set() else self._read(n), numbers))
        failed = [code for code in codes if code is not None]
        if failed:
            log.error(
                "phone-number metrics: %d of %d numbers failed (most often %s)",
                len(failed),
                len(numbers),
                max(set(failed), key=failed.count),
                extra={"account": self.account.name},
            )
        return not failed

    def counts(self, key: NumberKey) -> NumberCounts | None:
        """The number's counters now (None before its first read)."""
        with self.store.lock:
            state = self.store.numbers.get(key)
            if state is None:
                return None
            total = state.total()
            last_success, last_error = state.last_success, state.last_error
        with self._lock:
            reads = key in self._reads
        if not reads and total.read:  # a state file from a run whose answers carried reads
            reads = True
        return NumberCounts(
            total.sent, total.delivered, total.read if reads else None, last_success, last_error
        )
