"""Background polling: discovery, the per-unit read schedule, and snapshots for the scrapes.

One thread per account runs cycles: discover templates (ListChatappTemplate, cached between
discovery runs), then read every (template, language) unit through a worker pool. Every worker
takes its send slots from the account's shared rate limiter, so a large account uses its qps
fully and never more. Each read covers the unit's buckets from its settled boundary to now (the
first read of a unit backfills from its origin), the counter store applies it, and the poller
publishes a new immutable `Snapshot`. Scrapes only read that snapshot.

Two strategies keep the counters exact whatever the API's answer looks like:
- per-bucket (default): one call per unit per poll over [settled boundary, now]; each row is a
  bucket, keyed by its own Start (so UTC, UTC+8 or sparse buckets all work);
- aggregate: if a row ever spans more than one bucket, the API sums the whole range into one
  row. The account switches (one log line, `cams_metric_shape_info`) to reading each day of the
  lookback window separately, and ranges older than the window as sums.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cachetools import TTLCache

from exporter.client import CamsClient, ListFilters
from exporter.config import Account, Config, PollConfig, Space
from exporter.errors import CamsError
from exporter.instruments import Instruments
from exporter.model import DAY_MS, HALF_HOUR_MS, MetricRow, Template, UnitKey
from exporter.sharding import Shard
from exporter.snapshot import AccountStatus, Counts, Snapshot, TemplateSeries
from exporter.state import CounterStore, Tally, UnitState

log = logging.getLogger("cams_exporter.poller")

PER_BUCKET = "per-bucket"
AGGREGATE = "aggregate"


@dataclass(frozen=True, slots=True)
class Unit:
    """One (template, language) to poll, with what the exporter shows about it."""

    key: UnitKey
    space: Space
    name: str = ""
    category: str = ""
    audit_status: str = ""


def bucket_ms(granularity: str) -> int:
    """Length of one bucket for a granularity."""
    return HALF_HOUR_MS if granularity == "HALF_HOUR" else DAY_MS


def floor_to(ms: int, step: int) -> int:
    """`ms` rounded down to a multiple of `step` (UTC-aligned buckets)."""
    return ms - ms % step


def error_hint(code: str) -> str:
    """What an operator can do about an error code the API keeps answering ("" if nothing)."""
    if code.startswith("InvalidTimeStamp"):
        return (
            "the API refuses requests signed more than 15 minutes off its clock: "
            "check this host's clock (NTP)"
        )
    if code in ("SignatureDoesNotMatch", "IncompleteSignature") or code.startswith(
        ("InvalidAccessKeyId", "InvalidSecurityToken", "Forbidden.AccessKey")
    ):
        return "check the account's credentials (was the key rotated or disabled?)"
    if code.startswith(("Ram.PermissionDeny", "Forbidden")):
        return "grant cams:ListChatappTemplate and cams:GetChatappTemplateMetric to the key"
    if code.startswith("InvalidParameter"):
        return "if the API refuses the Start..End range, lower poll.max_range"
    return ""


def _with_hint(code: str) -> str:
    hint = error_hint(code)
    return f"; {hint}" if hint else ""


class ShapeChanged(Exception):
    """The API answered in the aggregate shape while the account was in per-bucket mode."""


class AccountPoller:
    """Discovery and polling of one account; owns that account's part of the counter store."""

    def __init__(
        self,
        account: Account,
        poll: PollConfig,
        client: CamsClient,
        store: CounterStore,
        instruments: Instruments,
        *,
        shard: Shard | None = None,
        clock: Callable[[], float] = time.time,
        on_progress: Callable[[], None] = lambda: None,
    ) -> None:
        self.account = account
        self.poll = poll
        self.client = client
        self.store = store
        self.instruments = instruments
        self.shard = shard or Shard(0, 1)
        self.clock = clock
        self.on_progress = on_progress
        self.bucket_ms = bucket_ms(poll.granularity)
        self.lock = threading.Lock()
        self.units: dict[UnitKey, Unit] = {}
        self._missing: dict[UnitKey, int] = {}
        self._discovery: TTLCache[str, tuple[Template, ...]] = TTLCache(
            maxsize=max(1, len(account.spaces)), ttl=poll.discovery_interval_s, timer=clock
        )
        self._discovered: dict[str, int] = {}
        self._polled_per_bucket: set[UnitKey] = set()
        self._discovery_errors: dict[str, str] = {}  # code -> message, of the last discovery
        self.status = AccountStatus(
            name=account.name,
            endpoint=account.endpoint,
            spaces=tuple(s.label for s in account.spaces),
            shape=store.shapes.get(account.name, PER_BUCKET),
        )
        self._restore_units()

    # -- units ---------------------------------------------------------------------------

    def _restore_units(self) -> None:
        """Units the state file knows, shown at once after a restart (before any discovery)."""
        spaces = {s.label: s for s in self.account.spaces}
        for key, unit in self.store:
            if key.account == self.account.name and key.space in spaces and self.shard.owns(key):
                self.units[key] = Unit(
                    key, spaces[key.space], unit.name, unit.category, unit.audit_status
                )

    def _listed_units(self, space: Space) -> Iterable[Unit]:
        for spec in space.templates:
            key = UnitKey(
                self.account.name, space.label, spec.code, spec.language, spec.template_type
            )
            yield Unit(key, space)

    def _discover(self, space: Space) -> tuple[Template, ...]:
        cached = self._discovery.get(space.label)
        if cached is not None:
            return cached
        f = space.filters
        templates = self.client.list_templates(
            ListFilters(
                cust_space_id=space.cust_space_id,
                isv_code=space.isv_code,
                audit_status=f.audit_status,
                template_type=f.template_type,
                category=f.category,
            )
        )
        if f.name_regex is not None:
            pattern = f.name_regex
            templates = tuple(t for t in templates if pattern.search(t.name))
        self._discovery[space.label] = templates
        return templates

    def refresh_units(self) -> list[str]:
        """Re-run discovery where due; keep a vanished unit until a second discovery agrees.

        Returns the error codes of discoveries that failed (their spaces keep their units).
        """
        found: dict[UnitKey, Unit] = {}
        fresh: set[str] = set()
        errors: list[str] = []
        self._discovery_errors = {}
        for space in self.account.spaces:
            for unit in self._listed_units(space):
                found[unit.key] = unit
            if not space.discover:
                continue
            try:
                templates = self._discover(space)
            except CamsError as error:
                errors.append(error.code)
                self._discovery_errors.setdefault(error.code, str(error))
                # a warning per space; the cycle's summary is the one error line
                log.warning(
                    "account=%s space=%s discovery failed, keeping known templates: %s",
                    self.account.name,
                    space.label,
                    error,
                )
                continue
            fresh.add(space.label)
            self._discovered[space.label] = len(templates)
            for t in templates:
                key = UnitKey(self.account.name, space.label, t.code, t.language, t.template_type)
                found[key] = Unit(key, space, t.name, t.category, t.audit_status)
        with self.lock:
            for key in found:
                self._missing.pop(key, None)
            for key, unit in self.units.items():
                if key in found:
                    continue
                if key.space not in fresh:
                    found[key] = unit  # no fresh discovery of its space: keep it
                    continue
                misses = self._missing.get(key, 0) + 1
                if misses >= 2:
                    self._missing.pop(key, None)
                    log.info(
                        "account=%s template=%s/%s is gone from discovery, dropping its series",
                        key.account,
                        key.template_code,
                        key.language,
                    )
                else:
                    self._missing[key] = misses
                    found[key] = unit
            self.units = {k: u for k, u in found.items() if self.shard.owns(k)}
        return errors

    # -- reading one unit ----------------------------------------------------------------

    def _origin_ms(self, now_ms: int) -> int:
        since = self.poll.counters_since
        if since is not None:
            return int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp() * 1000)
        # In aggregate mode the exporter reads whole days, so its windows start at midnight.
        step = DAY_MS if self.status.shape == AGGREGATE else self.bucket_ms
        return floor_to(now_ms - int(self.poll.lookback_s * 1000), step)

    def _unit_state(self, unit: Unit, now_ms: int) -> UnitState:
        with self.store.lock:
            state = self.store.units.get(unit.key)
            if state is not None and state.granularity != self.poll.granularity:
                log.warning(
                    "account=%s template=%s/%s granularity changed to %s: counters restart",
                    unit.key.account,
                    unit.key.template_code,
                    unit.key.language,
                    self.poll.granularity,
                )
                state = None
            if state is None:
                origin = self._origin_ms(now_ms)
                state = UnitState(origin, origin, granularity=self.poll.granularity)
                self.store.units[unit.key] = state
            if unit.name:
                state.name, state.category, state.audit_status = (
                    unit.name,
                    unit.category,
                    unit.audit_status,
                )
            return state

    def _fetch(self, unit: Unit, start_ms: int, end_ms: int) -> tuple[MetricRow, ...]:
        return self.client.template_metrics(
            code=unit.key.template_code,
            language=unit.key.language,
            start_ms=start_ms,
            end_ms=end_ms,
            max_range_ms=int(self.poll.max_range_s * 1000),
            template_type=unit.key.template_type,
            cust_space_id=unit.space.cust_space_id,
            isv_code=unit.space.isv_code,
            granularity=self.poll.granularity,
        )

    def _rows_of_unit(self, unit: Unit, rows: Iterable[MetricRow]) -> list[MetricRow]:
        # Keep only this unit's rows (the API may answer for other languages too).
        return [
            r
            for r in rows
            if r.template_code == unit.key.template_code and r.language == unit.key.language
        ]

    def poll_unit(self, unit: Unit) -> None:
        """Read one unit and apply it to the store; raises CamsError on failure."""
        while True:
            mode = self.status.shape
            try:
                if mode == AGGREGATE:
                    self._poll_aggregate(unit)
                else:
                    self._poll_per_bucket(unit)
                return
            except ShapeChanged:
                continue

    def _poll_per_bucket(self, unit: Unit) -> None:
        now_ms = int(self.clock() * 1000)
        state = self._unit_state(unit, now_ms)
        if state.settled_until_ms >= now_ms:
            return
        # Always ask for at least two whole buckets plus today's, whatever the lookback: an API
        # that sums the range into one row then shows it at once. Rows before the settled
        # boundary are ignored by the state, so the longer range costs nothing.
        start = min(state.settled_until_ms, floor_to(now_ms, self.bucket_ms) - 2 * self.bucket_ms)
        rows = self._rows_of_unit(unit, self._fetch(unit, start, now_ms))
        wide = [r for r in rows if r.end_ms - r.start_ms > self.bucket_ms * 3 // 2]
        with self.lock:
            if self.status.shape != PER_BUCKET:
                raise ShapeChanged
            if wide:
                self._switch_to_aggregate(wide[0])
                raise ShapeChanged
            self._polled_per_bucket.add(unit.key)
        with self.store.lock:
            revisions = state.put_rows(rows)
            state.fold(floor_to(now_ms - int(self.poll.lookback_s * 1000), self.bucket_ms))
        self._note_revisions(unit, revisions)

    def _switch_to_aggregate(self, row: MetricRow) -> None:
        """Called with self.lock held: the API sums ranges, so read day by day from now on."""
        log.warning(
            "account=%s GetChatappTemplateMetric answered one row for a %.1f-day range: "
            "the API aggregates ranges, switching to per-day reads to keep counters exact",
            self.account.name,
            (row.end_ms - row.start_ms) / DAY_MS,
        )
        self.status = replace(self.status, shape=AGGREGATE)
        with self.store.lock:
            self.store.shapes[self.account.name] = AGGREGATE
            for key in self._polled_per_bucket:
                self.store.units.pop(key, None)
        self._polled_per_bucket.clear()

    def _poll_aggregate(self, unit: Unit) -> None:
        now_ms = int(self.clock() * 1000)
        state = self._unit_state(unit, now_ms)
        # A day's sum is exact whatever the granularity; reading half hours one by one would
        # cost 48 calls a day for nothing.
        step = DAY_MS
        boundary = floor_to(now_ms - int(self.poll.lookback_s * 1000), step)
        max_range = max(step, floor_to(int(self.poll.max_range_s * 1000), step))
        cursor = state.settled_until_ms  # day-aligned: origin and boundaries are midnights
        reads: list[tuple[int, int, int]] = []  # (bucket start, bucket end, query end)
        gap_start: int | None = None
        while cursor < now_ms:
            end = floor_to(cursor, step) + step
            unseen_old = end <= boundary and cursor not in state.buckets
            if unseen_old:
                if gap_start is None:
                    gap_start = cursor
                if end - gap_start >= max_range:
                    reads.append((gap_start, end, end))
                    gap_start = None
            else:
                if gap_start is not None:
                    reads.append((gap_start, cursor, cursor))
                    gap_start = None
                reads.append((cursor, end, min(end, now_ms)))
            cursor = end
        if gap_start is not None:
            reads.append((gap_start, cursor, min(cursor, now_ms)))
        results = []
        for lower, upper, query_end in reads:
            rows = self.client.metric_chunk(
                code=unit.key.template_code,
                language=unit.key.language,
                start_ms=lower,
                end_ms=query_end,
                template_type=unit.key.template_type,
                cust_space_id=unit.space.cust_space_id,
                isv_code=unit.space.isv_code,
                granularity=self.poll.granularity,
            )
            results.append((lower, upper, Tally.of_rows(self._rows_of_unit(unit, rows))))
        revisions = 0
        with self.store.lock:
            for lower, upper, tally in results:
                revisions += state.put(lower, upper, tally)
            state.fold(boundary)
        self._note_revisions(unit, revisions)

    def _note_revisions(self, unit: Unit, revisions: int) -> None:
        if revisions:
            state = self.store.units.get(unit.key)
            if state is not None and state.revisions_held == revisions:
                log.warning(
                    "account=%s template=%s/%s: the API lowered counts it had reported; "
                    "holding the higher values (logged once per template)",
                    unit.key.account,
                    unit.key.template_code,
                    unit.key.language,
                )

    # -- cycles --------------------------------------------------------------------------

    def run_cycle(self, stop: threading.Event, workers: int) -> bool:
        """Discover and read every unit once. True if the cycle read every unit."""
        started = self.clock()
        discovery_errors = self.refresh_units()
        with self.lock:
            units = sorted(self.units.values(), key=lambda u: u.key)
            self.status = replace(
                self.status,
                units=len(units),
                units_done=0,
                templates_discovered=tuple(sorted(self._discovered.items())),
            )
        self.on_progress()
        failures: dict[str, int] = {}
        examples: dict[str, str] = {}  # one full error message per code, for the summary line
        done = 0
        next_report = 0.1

        def work(unit: Unit) -> str | None:
            if stop.is_set():
                return "Stopped"
            try:
                self.poll_unit(unit)
            except CamsError as error:
                with self.store.lock:
                    examples.setdefault(error.code, str(error))
                    state = self.store.units.get(unit.key)
                    if state is not None:
                        state.last_error = error.code
                return error.code
            with self.store.lock:
                state = self.store.units.get(unit.key)
                if state is not None:
                    state.last_success = self.clock()
                    state.last_error = None
            return None

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
            for code in pool.map(work, units):
                done += 1
                if code is not None:
                    failures[code] = failures.get(code, 0) + 1
                    if code != "Stopped":
                        self.instruments.poll_error(self.account.name, code)
                with self.lock:
                    self.status = replace(self.status, units_done=done)
                if (
                    not self.status.first_cycle_complete
                    and units
                    and done / len(units) >= next_report
                ):
                    log.info(
                        "account=%s first poll %d%% (%d/%d units)",
                        self.account.name,
                        int(done * 100 / len(units)),
                        done,
                        len(units),
                    )
                    while next_report <= done / len(units):
                        next_report += 0.1
                self.on_progress()
        if stop.is_set():
            return False
        units_failed = sum(failures.values())
        for code in discovery_errors:
            failures[code] = failures.get(code, 0) + 1
        failed = sum(failures.values())
        succeeded = len(units) - units_failed
        duration = self.clock() - started
        with self.lock:
            complete = (succeeded > 0 or not units) and not discovery_errors
            last_error = max(failures, key=lambda c: failures[c]) if failures else None
            self.status = replace(
                self.status,
                first_cycle_complete=self.status.first_cycle_complete or complete,
                up=failed == 0,
                last_poll_success=self.clock() if failed == 0 else self.status.last_poll_success,
                last_poll_duration=duration,
                last_error_code=last_error,
            )
        if failed and last_error is not None:
            parts = []
            if units_failed:
                parts.append(f"{units_failed} of {len(units)} units failed")
            if discovery_errors:
                spaces = sum(1 for s in self.account.spaces if s.discover)
                parts.append(f"discovery failed in {len(discovery_errors)} of {spaces} spaces")
            example = examples.get(last_error) or self._discovery_errors.get(last_error)
            log.error(
                "account=%s poll cycle: %s (most often %s)%s",
                self.account.name,
                ", ".join(parts),
                f"{last_error}: {example}" if example else last_error,
                _with_hint(last_error),
            )
        else:
            log.info(
                "account=%s poll cycle done: %d units in %.1fs",
                self.account.name,
                len(units),
                duration,
            )
        return failed == 0

    def series(self) -> list[TemplateSeries]:
        """What this account exports now (called by the publisher)."""
        with self.lock:
            units = list(self.units.values())
        out = []
        with self.store.lock:
            for unit in units:
                state = self.store.units.get(unit.key)
                if state is None:
                    out.append(
                        TemplateSeries(
                            unit.key, unit.name, unit.category, unit.audit_status, Counts()
                        )
                    )
                    continue
                out.append(
                    TemplateSeries(
                        key=unit.key,
                        name=unit.name or state.name,
                        category=unit.category or state.category,
                        audit_status=unit.audit_status or state.audit_status,
                        counts=state.total(),
                        last_success=state.last_success,
                        newest_data=state.newest_data_ms / 1000 if state.newest_data_ms else None,
                        last_error=state.last_error,
                    )
                )
        return out

    def revisions_held(self) -> int:
        """Downward revisions held so far, over this account's units."""
        with self.store.lock:
            return sum(
                s.revisions_held
                for k, s in self.store.units.items()
                if k.account == self.account.name
            )


class Poller:
    """Runs every account's cycles in the background and publishes snapshots."""

    def __init__(
        self,
        config: Config,
        clients: dict[str, CamsClient],
        store: CounterStore,
        instruments: Instruments,
        *,
        state_path: str | None = None,
        shard: Shard | None = None,
        clock: Callable[[], float] = time.time,
        on_publish: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.config = config
        self.on_publish = on_publish
        self.store = store
        self.instruments = instruments
        self.state_path = state_path
        self.clock = clock
        self.stop_event = threading.Event()
        self._dirty = threading.Event()
        self._save_lock = threading.Lock()
        self._state_error: str | None = None  # reason of the last failed state write
        self._generation = 0
        self._publish_lock = threading.Lock()
        self.accounts = [
            AccountPoller(
                account,
                config.poll,
                clients[account.name],
                store,
                instruments,
                shard=shard,
                clock=clock,
                on_progress=self._dirty.set,
            )
            for account in config.accounts
        ]
        self._threads: list[threading.Thread] = []
        self._snapshot = Snapshot()
        self.publish()  # before any poll: restored counters and listed templates show at once

    def carry_over(self, old: Poller) -> None:
        """After a reload: keep what the replaced poller knew about each account still
        configured (first poll done, up, last success, discovery counts), so that /-/ready,
        cams_up and the landing page do not flap while the new poller's first cycle runs."""
        previous = {p.account.name: p for p in old.accounts}
        for poller in self.accounts:
            before = previous.get(poller.account.name)
            if before is None:
                continue
            with before.lock:
                status = before.status
                discovered = dict(before._discovered)
            with poller.lock:
                poller._discovered = {
                    space: count
                    for space, count in discovered.items()
                    if space in poller.status.spaces
                }
                poller.status = replace(
                    poller.status,
                    units=status.units,
                    units_done=status.units_done,
                    first_cycle_complete=status.first_cycle_complete,
                    up=status.up,
                    last_poll_success=status.last_poll_success,
                    last_poll_duration=status.last_poll_duration,
                    last_error_code=status.last_error_code,
                    templates_discovered=tuple(sorted(poller._discovered.items())),
                )

    @property
    def snapshot(self) -> Snapshot:
        """The latest published snapshot (a plain reference read)."""
        return self._snapshot

    def publish(self, save: bool = False, progress_only: bool = False) -> Snapshot:
        """Build a snapshot from the store and swap it in.

        With `save`, the state file is written after the snapshot is built and before it is
        swapped in. Counters in the store only grow, so the file always holds at least what
        any scrape has seen: a kill -9 at any moment never brings a counter back lower (which
        Prometheus would take for a reset, counting the difference twice).

        With `progress_only`, only the accounts' status changes (for /-/ready and the status
        page): the series are the previous snapshot's, nothing is written or rendered, so
        progress during a long cycle costs next to nothing however many templates there are.
        """
        with self._publish_lock:
            self._dirty.clear()
            series: list[TemplateSeries] = []
            statuses = []
            for poller in self.accounts:
                if not progress_only:
                    series.extend(poller.series())
                with poller.lock:
                    status = poller.status
                statuses.append(replace(status, revisions_held=poller.revisions_held()))
            self._generation += 1
            snap = Snapshot(
                generation=self._generation,
                created=self.clock(),
                accounts=tuple(statuses),
                series=(
                    self._snapshot.series
                    if progress_only
                    else tuple(sorted(series, key=lambda s: s.key))
                ),
            )
            if save and not progress_only:
                self.save_state()
            if self.on_publish is not None and not progress_only:
                self.on_publish(snap)  # render first, so /-/ready never leads /metrics
            self._snapshot = snap
            return snap

    def save_state(self) -> None:
        """Write the state file if one is configured; failures are counted and logged (once
        per distinct reason, and once when writing works again), never fatal."""
        if not self.state_path:
            return
        with self._save_lock:
            try:
                self.store.save(self.state_path)
            except OSError as exc:
                self.instruments.state_write(ok=False)
                reason = str(exc.strerror or exc)
                if reason != self._state_error:
                    log.error("could not write state file %s: %s", self.state_path, reason)
                self._state_error = reason
            else:
                self.instruments.state_write(ok=True)
                if self._state_error is not None:
                    log.info("state file %s written again", self.state_path)
                self._state_error = None

    def workers_for(self, account: Account) -> int:
        """Enough threads to keep `qps` calls in flight at a few hundred ms latency."""
        return max(4, min(64, int(account.qps)))

    def _run_account(self, poller: AccountPoller) -> None:
        interval = self.config.poll.interval_s
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                poller.run_cycle(self.stop_event, self.workers_for(poller.account))
            except Exception:  # a bug must not kill the polling thread
                log.exception("account=%s poll cycle crashed", poller.account.name)
            if self.stop_event.is_set():
                break
            self.publish(save=True)
            if not poller.status.first_cycle_complete:
                wait = min(interval, 30.0)
            else:
                wait = interval - (time.monotonic() - started)
            self.stop_event.wait(max(0.0, wait))

    def _run_publisher(self) -> None:
        """Publish progress while cycles run, at most once a second. Counters are published
        (state written, exposition rendered) at the end of each account's cycle."""
        while not self.stop_event.is_set():
            if self._dirty.wait(1.0) and not self.stop_event.is_set():
                self.publish(progress_only=True)
                self.stop_event.wait(1.0)

    def start(self) -> None:
        """Start one thread per account and the snapshot publisher."""
        for poller in self.accounts:
            thread = threading.Thread(
                target=self._run_account, args=(poller,), name=f"account-{poller.account.name}"
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        publisher = threading.Thread(target=self._run_publisher, name="publisher", daemon=True)
        publisher.start()
        self._threads.append(publisher)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling, wait for the threads, publish and write state one last time."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.publish(save=True)
