"""One account of a backfill: its units and phone numbers, read and added to the file.

`AccountRun.templates` reads the account's units (discovered and listed, as the poller finds
them) over origin..until through the account's client, its rate limits and retries, a few at a
time in unit order (`in_order`), and adds each history to the file as soon as it is read;
`AccountRun.numbers` then does the same for the per-number counters when the account reads them
(`sender_health.phone_number_metrics`). What cannot be written is recorded in the `Ledger` with
its reason; `Progress` prints a line to stderr every few seconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

from exporter.backfill.history import UnitHistory, Window, unit_history
from exporter.backfill.openmetrics import BackfillFile
from exporter.backfill.origins import Origin, Span, day_text, moment_text
from exporter.backfill.reader import Shape, UnitReader
from exporter.cams.actions import (
    LIST_ACTION,
    METRIC_ACTION,
    PHONE_METRIC_ACTION,
    PHONE_NUMBERS_ACTION,
)
from exporter.cams.client import CamsClient, CredentialSource, RequestEvent
from exporter.cams.context import AccountContext
from exporter.cams.errors import AnomalousAnswer, CamsError
from exporter.cams.instruments import Instruments
from exporter.cams.model import MetricRow, NumberKey, UnitKey
from exporter.cams.ratelimit import RateLimiter
from exporter.cams.retry import RetryPolicy
from exporter.config import Account, Config, default_credentials_provider
from exporter.counting.anomalies import AnomalyLog
from exporter.counting.store import CounterStore
from exporter.counting.strategies import AGGREGATE, Member, bucket_ms
from exporter.senders.numbers import DiscoveredNumber, PhoneNumberDiscovery
from exporter.templates.discovery import Discovery, Unit
from exporter.templates.sharding import Shard

PROGRESS_EVERY_S = 5.0
_SHOWN = 10  # subjects named per reason; the rest are counted


@dataclass(frozen=True, slots=True)
class Outcome:
    """One subject read: its history, or why it is not written."""

    subject: str
    history: UnitHistory | None = None
    missing: str | None = None  # the reason, the same for every subject it befalls
    example: str = ""  # the API's own words for it, once
    with_reads: bool = True


@dataclass
class Ledger:
    """What the run wrote, left out and noted, reason by reason."""

    failed: dict[str, list[str]] = field(default_factory=dict)  # not written: exit 1
    noted: dict[str, list[str]] = field(default_factory=dict)  # the API no longer holds it
    examples: dict[str, str] = field(default_factory=dict)  # reason -> the API's words
    units: int = 0  # template-language units written
    numbers: int = 0  # phone numbers written

    def fail(self, reason: str, subject: str, example: str = "") -> None:
        self.failed.setdefault(reason, []).append(subject)
        if example:
            self.examples.setdefault(reason, example)

    def note(self, reason: str, subject: str) -> None:
        self.noted.setdefault(reason, []).append(subject)

    def lines(self) -> Iterator[str]:
        """One line per reason (naming the first subjects), failures first."""
        for prefix, table in (("not written", self.failed), ("left out", self.noted)):
            for reason, subjects in table.items():
                named = ", ".join(subjects[:_SHOWN])
                more = f" and {len(subjects) - _SHOWN} more" if len(subjects) > _SHOWN else ""
                example = self.examples.get(reason)
                said = f" (e.g. {example})" if example else ""
                yield f"{prefix} ({len(subjects)}): {reason}{said}: {named}{more}"


def _unit_name(key: UnitKey) -> str:
    return f"{key.account}/{key.space}/{key.template_code}/{key.language}"


def _number_name(key: NumberKey) -> str:
    return f"{key.account}/{key.space}/{key.phone_number}"


class Progress:
    """Progress lines on stderr, at most one every `PROGRESS_EVERY_S` (and the last one)."""

    def __init__(self, err: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.err, self.clock = err, clock
        self.calls = 0
        self._lock = threading.Lock()
        self._last = clock()

    def observe(self, _event: RequestEvent) -> None:
        with self._lock:
            self.calls += 1

    def show(self, what: str, done: int, total: int, final: bool = False) -> None:
        now = self.clock()
        if not final and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        share = done * 100 // total if total else 100
        print(
            f"cams-exporter backfill: {what}: {done}/{total} read ({share}%), "
            f"{self.calls} calls so far",
            file=self.err,
            flush=True,
        )


def account_client(
    config: Config, account: Account, index: int, observer: Progress, stop: threading.Event
) -> CamsClient:
    credentials: CredentialSource
    if account.credentials is None:
        credentials = default_credentials_provider(f"accounts[{index}].credentials")
    else:
        credentials = account.credentials
    limiters = {
        METRIC_ACTION: RateLimiter(account.qps, min_rate=0.5),
        LIST_ACTION: RateLimiter(account.list_qps, min_rate=0.2),
    }
    health = account.sender_health
    if health is not None:
        limiters[PHONE_NUMBERS_ACTION] = RateLimiter(health.phone_numbers.qps, min_rate=0.1)
        limiters[PHONE_METRIC_ACTION] = RateLimiter(health.phone_number_metrics.qps, min_rate=0.5)
    return CamsClient(
        endpoint=account.endpoint,
        credentials=credentials,
        limiters=limiters,
        timeout_s=config.poll.timeout_s,
        retry=RetryPolicy(max_retries=config.poll.max_retries),
        observer=observer.observe,
        pool_size=max(4, min(64, int(account.qps))),
        stop=stop,
    )


def _workers(qps: float) -> int:
    """Workers enough to keep the account's pace with calls taking up to a few seconds."""
    return max(1, min(16, int(qps)))


def in_order(
    pool: ThreadPoolExecutor, jobs: Sequence[Callable[[], Outcome]], window: int
) -> Iterator[Outcome]:
    """The jobs' outcomes in the order given, at most `window` of them running or waiting to
    be taken, so that memory holds a few units whatever their number."""
    pending: deque[Future[Outcome]] = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(job))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # interrupted: the units not started yet are not read at all
        for future in pending:
            future.cancel()


class AccountRun:
    """One account's units and numbers, read and added to the file."""

    def __init__(
        self,
        config: Config,
        account: Account,
        client: CamsClient,
        span: Span,
        store: CounterStore,
        progress: Progress,
        stop: threading.Event,
    ) -> None:
        self.config, self.account, self.client = config, account, client
        self.stop = stop
        self.span, self.store, self.progress = span, store, progress
        self.step_ms = bucket_ms(config.poll.granularity)
        self.max_range_ms = int(config.poll.max_range_s * 1000)

    def _window(self, origin: Origin) -> Window:
        return Window(
            origin.origin_ms,
            self.span.first_ms(origin),
            self.span.last_ms(origin),
            self.span.now_ms,
            self.step_ms,
        )

    def _placed(self, origin: Origin | None, subject: str, tally: Ledger) -> bool:
        """Whether a subject can be backfilled at all; if not, the reason is recorded."""
        if origin is None:
            tally.fail(
                "no origin shared with the live counters (poll.counters_since unset, and the "
                "state file does not hold it)",
                subject,
            )
            return False
        if origin.origin_ms < self.span.retention_start_ms:
            tally.fail(
                f"its origin {moment_text(origin.origin_ms)} is past the API's 90-day "
                f"retention ({day_text(self.span.retention_start_ms)}): its counters need days "
                "the API no longer holds",
                subject,
            )
            return False
        return True

    def _outcome(
        self,
        subject: str,
        reader: UnitReader,
        origin: Origin,
        window: Window,
        with_reads: Callable[[], bool] = lambda: True,
    ) -> Outcome:
        read_end = min(window.until_ms, window.now_ms)
        if read_end <= origin.origin_ms or window.since_ms > read_end:
            return Outcome(subject, UnitHistory(()))
        try:
            got = reader.read(origin.origin_ms, read_end, origin.stored)
        except AnomalousAnswer as anomaly:
            missing = f"answer not applied ({anomaly.kind}): {anomaly.detail}"
            return Outcome(subject, missing=missing)
        except CamsError as error:
            return Outcome(subject, missing=f"read failed: {error.code}", example=str(error))
        window = Window(
            window.origin_ms, window.since_ms, window.until_ms, window.now_ms, got.step_ms
        )
        return Outcome(subject, unit_history(got.rows, window), with_reads=with_reads())

    def _record(self, outcome: Outcome, tally: Ledger, number: bool = False) -> bool:
        """Notes what a read left out; whether it has a history to write."""
        if outcome.history is None:
            tally.fail(outcome.missing or "not read", outcome.subject, outcome.example)
            return False
        history = outcome.history
        zeroed = history.reads_from_ms
        if not history.points:
            tally.note(
                "nothing to write between its origin and the last day written", outcome.subject
            )
        elif zeroed is not None and outcome.with_reads and history.points[0].at_ms < zeroed:
            tally.note(
                f"reads and clicks before {moment_text(zeroed)} (the API answers 0 for them: "
                "past its 7-day read window; the read and click series start there)",
                outcome.subject,
            )
        if number:
            tally.numbers += 1
        else:
            tally.units += 1
        return True

    # -- templates ---------------------------------------------------------------------------

    def units(self, tally: Ledger) -> list[Unit]:
        """The account's units, discovered and listed as the poller finds them."""
        context = AccountContext(self.account, self.config.poll, self.client)
        discovery = Discovery(context, CounterStore(), AnomalyLog(Instruments()), shard=Shard(0, 1))
        discovery.refresh()
        for code, message in discovery.errors.items():
            tally.fail(
                f"discovery failed ({code}: {message}); the templates it lists are missing",
                f"account {self.account.name}",
            )
        return discovery.units()

    def _template_job(self, unit: Unit, origin: Origin, shape: Shape) -> Callable[[], Outcome]:
        key = unit.key

        def fetch(start_ms: int, end_ms: int) -> Sequence[MetricRow]:
            return self.client.template_metrics(
                code=key.template_code,
                language=key.language,
                start_ms=start_ms,
                end_ms=end_ms,
                max_range_ms=self.max_range_ms,
                template_type=key.template_type,
                cust_space_id=unit.space.cust_space_id,
                isv_code=unit.space.isv_code,
                granularity=self.config.poll.granularity,
            )

        reader = UnitReader(Member.of_unit(key, unit.meta), fetch, self.step_ms, shape)
        return lambda: self._outcome(_unit_name(key), reader, origin, self._window(origin))

    def templates(self, out: BackfillFile, tally: Ledger) -> None:
        """Every unit of the account, read and added to the file in unit order."""
        units = self.units(tally)
        shape = Shape(self.account.name, self.store.shapes.get(self.account.name) == AGGREGATE)
        jobs: list[Callable[[], Outcome]] = []
        placed: list[Unit] = []
        for unit in units:
            origin = self.span.origin(self.store.units.get(unit.key))
            if self._placed(origin, _unit_name(unit.key), tally):
                assert origin is not None
                jobs.append(self._template_job(unit, origin, shape))
                placed.append(unit)
        what = f"account {self.account.name}: template-language units"
        print(f"cams-exporter backfill: {what}: {len(placed)} to read", file=self.progress.err)
        workers = _workers(self.account.qps)
        with ThreadPoolExecutor(workers, thread_name_prefix="backfill") as pool:
            try:
                for done, (unit, outcome) in enumerate(
                    zip(placed, in_order(pool, jobs, 2 * workers), strict=True), 1
                ):
                    if self._record(outcome, tally) and outcome.history is not None:
                        out.add_unit(unit.key, unit.meta, outcome.history)
                    self.progress.show(what, done, len(placed), final=done == len(placed))
            except BaseException:  # interrupted: the calls under way stop retrying
                self.stop.set()
                raise

    # -- phone numbers -----------------------------------------------------------------------

    def numbers(self, out: BackfillFile, tally: Ledger) -> None:
        """The account's per-number counters, when it reads them."""
        health = self.account.sender_health
        if health is None or not health.phone_number_metrics.enabled:
            return
        discovery = PhoneNumberDiscovery(self.account, self.client, shard=Shard(0, 1))
        discovery.refresh()
        if discovery.last_error is not None:
            tally.fail(
                f"QueryChatappPhoneNumbers failed ({discovery.last_error}); the numbers of "
                "the spaces it lists are missing",
                f"account {self.account.name}",
            )
        numbers = discovery.numbers()
        shape_key = f"{self.account.name}/{PHONE_METRIC_ACTION}"
        shape = Shape(self.account.name, self.store.shapes.get(shape_key) == AGGREGATE)
        what = f"account {self.account.name}: phone numbers"
        total = len(numbers)
        for done, number in enumerate(numbers, 1):
            name = _number_name(number.key)
            origin = self.span.origin(self.store.numbers.get(number.key))
            if self._placed(origin, name, tally):
                assert origin is not None
                reader = _NumberReader(self.client, number, self.config, self.step_ms, shape)
                window = self._window(origin)
                outcome = self._outcome(name, reader, origin, window, reader.carried)
                if self._record(outcome, tally, number=True) and outcome.history is not None:
                    out.add_number(number.key, outcome.history, outcome.with_reads)
            self.progress.show(what, done, total, final=done == total)


class _NumberReader(UnitReader):
    """A phone number read like a unit, its rows as MetricRows; `carried()` says whether any
    answer carried ReadCount (the read counter is written only then, as the live one is)."""

    def __init__(
        self,
        client: CamsClient,
        number: DiscoveredNumber,
        config: Config,
        step_ms: int,
        shape: Shape,
    ) -> None:
        self._reads = False
        key, space = number.key, number.space
        max_range_ms = int(config.poll.max_range_s * 1000)

        def fetch(start_ms: int, end_ms: int) -> Sequence[MetricRow]:
            rows = client.phone_number_metrics(
                phone_number=key.phone_number,
                start_ms=start_ms,
                end_ms=end_ms,
                max_range_ms=max_range_ms,
                cust_space_id=space.cust_space_id,
                isv_code=space.isv_code,
                granularity=config.poll.granularity,
            )
            if any(row.read is not None for row in rows):
                self._reads = True
            return [row.as_metric_row() for row in rows]

        super().__init__(Member.of_number(key), fetch, step_ms, shape)

    def carried(self) -> bool:
        """Whether any answer carried ReadCount."""
        return self._reads
