"""One account's poll cycle: discover its units, read them through a worker pool, report.

`AccountPoller.run_cycle` refreshes the account's units (`exporter.templates.discovery`),
then reads the (template, language) units the schedule picks through a thread pool: every
active unit, and the idle ones whose slot came (`exporter.templates.activity`). With waking on
(`wake_with`: sender health's per-number counters, one replica), it then reads the account's
numbers and the idle units of every space whose numbers sent more than its templates
(`exporter.templates.waking`). `exporter.counting.strategies` applies each answer to the
counter store. Every worker
takes its send slots from the account's shared rate limiters, so a large account uses its qps
fully and never more. The cycle ends with one summary line:
`poll cycle done` at info, or at error the failures counted by code, with the API's message
and what an operator can do about it. `series()` is what the account exports now.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from exporter.cams.actions import METRIC_ACTION
from exporter.cams.context import AccountContext
from exporter.cams.errors import STOPPED, AnomalousAnswer, CamsError
from exporter.cams.instruments import Instruments
from exporter.cams.model import MetricRow, UnitKey
from exporter.counting.anomalies import AnomalyLog
from exporter.counting.readwindow import ReadWindowLog
from exporter.counting.state import Counts
from exporter.counting.store import CounterStore
from exporter.counting.strategies import Counting, Fetch, Member
from exporter.templates.activity import Plan, Schedule
from exporter.templates.discovery import Discovery, Unit
from exporter.templates.grouping import Grouping
from exporter.templates.sharding import Shard
from exporter.templates.view import AccountStatus, TemplateSeries
from exporter.templates.waking import WHATSAPP, Waking

log = logging.getLogger("cams_exporter.poller")


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


@dataclass(slots=True)
class _Cycle:
    """What one cycle's reads add up to."""

    total: int  # units the cycle reads
    done: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # error code -> units
    examples: dict[str, str] = field(default_factory=dict)  # one full message per code
    changed: set[UnitKey] = field(default_factory=set)  # units whose counts changed


class AccountPoller:
    """Discovery and polling of one account; owns that account's part of the counter store."""

    def __init__(
        self,
        context: AccountContext,
        store: CounterStore,
        instruments: Instruments,
        *,
        shard: Shard | None = None,
        on_progress: Callable[[], None] = lambda: None,
        anomalies: AnomalyLog | None = None,
        read_window: ReadWindowLog | None = None,
    ) -> None:
        self.context, self.store, self.instruments = context, store, instruments
        self.account, self.clock, self.on_progress = context.account, context.clock, on_progress
        self.lock = threading.Lock()
        self.anomalies = anomalies or AnomalyLog(instruments, self.clock)
        self.read_window = read_window or ReadWindowLog(self.clock)
        self.discovery = Discovery(context, store, self.anomalies, shard=shard or Shard(0, 1))
        self.counting = Counting(
            self.account.name,
            context.poll,
            store,
            clock=self.clock,
            read_window=self.read_window,
        )
        self.grouping = Grouping(context)
        self.schedule = Schedule(context.poll)
        self.waking: Waking | None = None
        self._last_look: float | None = None
        self._read_numbers: Callable[[threading.Event], None] | None = None
        self.status = AccountStatus(
            name=self.account.name,
            endpoint=self.account.endpoint,
            spaces=tuple(s.label for s in self.account.spaces),
            shape=self.counting.shape,
            idle_interval=context.poll.idle_interval_s if self.schedule.enabled else None,
        )

    def wake_with(self, read_numbers: Callable[[threading.Event], None]) -> None:
        """Turn waking on: each cycle calls `read_numbers` (a fresh read of the account's
        per-number counters into the store) after its first reads, and wakes the spaces whose
        numbers grew more than their templates. A no-op while idle polling is off."""
        if not self.schedule.enabled:
            return
        self._read_numbers = read_numbers
        self.waking = Waking(self.account.name, self.store, self.context.poll.interval_s)
        with self.lock:
            self.waking.wakes = self.status.wakes  # carried over a reload
            self.status = replace(self.status, waking=True)

    def refresh_units(self) -> list[str]:
        """Re-run discovery where due; the error codes of the listings that failed."""
        return self.discovery.refresh()

    # -- reading one group -------------------------------------------------------------

    def _fetcher(self, group: Sequence[Unit]) -> Fetch:
        first = group[0]
        key = first.key
        # One unit alone is asked by its language; a group reads every language at once.
        language = key.language if len(group) == 1 else None

        def fetch(start_ms: int, end_ms: int) -> Sequence[MetricRow]:
            return self.context.client.template_metrics(
                code=key.template_code,
                language=language,
                start_ms=start_ms,
                end_ms=end_ms,
                max_range_ms=int(self.context.poll.max_range_s * 1000),
                template_type=key.template_type,
                cust_space_id=first.space.cust_space_id,
                isv_code=first.space.isv_code,
                granularity=self.context.poll.granularity,
            )

        return fetch

    def poll_group(self, group: Sequence[Unit]) -> dict[UnitKey, CamsError]:
        """Read a group and apply it to the store: the units that failed, with why.

        Raises CamsError when the read itself failed (every unit of the group failed).
        """
        members = [Member.of_unit(u.key, u.meta) for u in group]
        keys = {u.key: u.key for u in group}
        found = self.counting.poll_group(members, self._fetcher(group))
        failed = {keys[key]: anomaly for key, anomaly in found.items() if key in keys}
        self._report(failed)
        return dict(failed)

    def _report(self, failed: Mapping[UnitKey, AnomalousAnswer]) -> None:
        for key, anomaly in failed.items():
            self.anomalies.report_for(key, METRIC_ACTION, anomaly)

    def poll_unit(self, unit: Unit) -> None:
        """Read one unit on its own and apply it; raises CamsError on failure."""
        failed = self.poll_group([unit])
        if unit.key in failed:
            raise failed[unit.key]

    def _read(
        self,
        group: Sequence[Unit],
        stop: threading.Event,
        examples: dict[str, str],
        changed: set[UnitKey],
    ) -> list[str | None]:
        """One group's read in a worker: per unit, None on success, else the error code. The
        units whose counts it changed are added to `changed`."""
        if stop.is_set():
            return [STOPPED] * len(group)
        with self.store.lock:
            before = {
                unit.key: state.total() if (state := self.store.units.get(unit.key)) else None
                for unit in group
            }
        try:
            failed = self.poll_group(group)
        except AnomalousAnswer as anomaly:  # the whole answer could not be vouched for
            self._report({unit.key: anomaly for unit in group})
            failed = {unit.key: anomaly for unit in group}
        except CamsError as read_error:
            failed = {unit.key: read_error for unit in group}
        codes: list[str | None] = []
        now = self.clock()
        with self.store.lock:
            for unit in group:
                error = failed.get(unit.key)
                state = self.store.units.get(unit.key)
                if error is not None:
                    examples.setdefault(error.code, str(error))
                    if state is not None:
                        state.last_error = error.code
                    codes.append(error.code)
                    continue
                if state is not None:
                    state.last_success = now
                    state.last_error = None
                    if self.schedule.observe(state, before[unit.key], now):
                        changed.add(unit.key)
                codes.append(None)
        return codes

    # -- cycles --------------------------------------------------------------------------

    def run_cycle(self, stop: threading.Event, workers: int) -> bool:
        """Discover, then read the active units and the idle ones that are due (and those of
        woken spaces). True if every read of the cycle succeeded."""
        started = self.clock()
        discovery_errors = self.refresh_units()
        units = self.discovery.units()
        if self.grouping.due() and not stop.is_set():
            try:
                self.grouping.verify(units)
            except CamsError as error:  # a transport failure: decide again next cycle
                log.info("read mode not checked: %s", error, extra={"account": self.account.name})
        groups = self.grouping.groups(units)
        with self.store.lock:
            plan = self.schedule.plan(groups, self.store.units, started)
        with self.lock:
            self.status = replace(
                self.status,
                units=len(units),
                idle_units=len(plan.idle),
                cycle_units=plan.units_read,
                units_done=0,
                reads=len(plan.groups),
                mode=self.grouping.mode,
                shape=self.counting.shape,
                woken=(),
                templates_discovered=tuple(sorted(self.discovery.discovered.items())),
            )
        self.on_progress()
        cycle = _Cycle(plan.units_read)
        self._read_all(plan.groups, stop, workers, cycle)
        self._wake(groups, plan, stop, workers, started, cycle)
        if stop.is_set():
            return False
        self._note_incomplete_reads()
        with self.store.lock:  # what the reads found: woken units active, first reads dated
            idle = self.schedule.idle_units(groups, self.store.units, self.clock())
        with self.lock:
            self.status = replace(self.status, idle_units=len(idle))
        units_failed = sum(cycle.failures.values())
        failures = dict(cycle.failures)
        for code in discovery_errors:
            failures[code] = failures.get(code, 0) + 1
        self._finish(started, cycle.total, units_failed, failures, discovery_errors, cycle.examples)
        return not failures

    def _read_all(
        self, groups: Sequence[Sequence[Unit]], stop: threading.Event, workers: int, cycle: _Cycle
    ) -> None:
        """Read `groups` through the worker pool, counting into `cycle`."""
        if not groups:
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
            results = pool.map(
                lambda group: self._read(group, stop, cycle.examples, cycle.changed), groups
            )
            for codes in results:
                for code in codes:
                    if code is not None:
                        cycle.failures[code] = cycle.failures.get(code, 0) + 1
                        if code != STOPPED:
                            self.instruments.poll_error(self.account.name, code)
                cycle.done += len(codes)
                self._progress(cycle.done, cycle.total)

    def _wake(
        self,
        groups: Sequence[Sequence[Unit]],
        plan: Plan,
        stop: threading.Event,
        workers: int,
        started: float,
        cycle: _Cycle,
    ) -> None:
        """With waking on: read the numbers, then the idle units of the spaces whose numbers
        grew more than their templates (those not read already)."""
        waking, read_numbers = self.waking, self._read_numbers
        if waking is None or read_numbers is None or stop.is_set():
            return
        try:
            read_numbers(stop)
        except Exception:  # the numbers' own errors are counted and logged where they happen
            log.debug("phone-number read for waking failed", exc_info=True)
            return
        now = self.clock()
        since = now - (self._last_look if self._last_look is not None else started)
        self._last_look = now
        # the numbers were read after the first reads: at most that much ahead of them
        spaces = waking.look(plan.idle, (now - started) / since if since > 0 else 0.0)
        if not spaces:
            return
        read = {unit.key for group in plan.groups for unit in group}
        extra = [
            group
            for group in groups
            if group[0].key in plan.idle
            and group[0].key.space in spaces
            and group[0].key.template_type.upper() == WHATSAPP
            and group[0].key not in read
        ]
        log.info(
            "phone numbers sent more than the active templates: reading %d idle units of %s",
            sum(len(group) for group in extra),
            ", ".join(sorted(s or "(none)" for s in spaces)),
            extra={"account": self.account.name},
        )
        cycle.total += sum(len(group) for group in extra)
        with self.lock:
            self.status = replace(
                self.status,
                woken=tuple(sorted(spaces)),
                wakes=waking.wakes,
                cycle_units=cycle.total,
                reads=self.status.reads + len(extra),
            )
        woken = {unit.key for group in extra for unit in group}
        self._read_all(extra, stop, workers, cycle)
        waking.settle(
            {space: any(k.space == space for k in cycle.changed & woken) for space in spaces}
        )

    def _progress(self, done: int, total: int) -> None:
        with self.lock:
            first = not self.status.first_cycle_complete
            before = self.status.units_done
            self.status = replace(self.status, units_done=done, shape=self.counting.shape)
        if first and total and done * 10 // total > before * 10 // total:
            log.info(
                "first poll %d%% (%d/%d units)",
                done * 100 // total,
                done,
                total,
                extra={"account": self.account.name},
            )
        self.on_progress()

    def _finish(
        self,
        started: float,
        units: int,
        units_failed: int,
        failures: dict[str, int],
        discovery_errors: list[str],
        examples: dict[str, str],
    ) -> None:
        """Record the cycle's outcome in the status and log its one summary line."""
        failed = sum(failures.values())
        duration = self.clock() - started
        with self.lock:
            complete = (units_failed < units or not units) and not discovery_errors
            last_error = max(failures, key=lambda c: failures[c]) if failures else None
            self.status = replace(
                self.status,
                first_cycle_complete=self.status.first_cycle_complete or complete,
                up=failed == 0,
                last_poll_success=self.clock() if failed == 0 else self.status.last_poll_success,
                last_poll_duration=duration,
                last_error_code=last_error,
                shape=self.counting.shape,
            )
        fields = {"account": self.account.name}
        if last_error is None:
            log.info("poll cycle done: %d units in %.1fs", units, duration, extra=fields)
            return
        parts = []
        if units_failed:
            parts.append(f"{units_failed} of {units} units failed")
        if discovery_errors:
            spaces = sum(1 for s in self.account.spaces if s.discover)
            parts.append(f"discovery failed in {len(discovery_errors)} of {spaces} spaces")
        example = examples.get(last_error) or self.discovery.errors.get(last_error)
        log.error(
            "poll cycle: %s (most often %s)%s",
            ", ".join(parts),
            f"{last_error}: {example}" if example else last_error,
            _with_hint(last_error),
            extra=fields,
        )

    def series(self) -> list[TemplateSeries]:
        """What this account exports now (called by the publisher)."""
        units = self.discovery.units()
        groups = self.grouping.groups(units)
        out = []
        interval = self.schedule.interval_s
        with self.store.lock:
            idle = self.schedule.idle_units(groups, self.store.units, self.clock())
            for unit in units:
                state = self.store.units.get(unit.key)
                if state is None:
                    out.append(TemplateSeries(unit.key, *unit.meta, Counts()))
                    continue
                out.append(
                    TemplateSeries(
                        unit.key,
                        *unit.meta.filled_from(state.meta),
                        counts=state.total(),
                        last_success=state.last_success,
                        newest_data=state.newest_data_ms / 1000 if state.newest_data_ms else None,
                        last_error=state.last_error,
                        idle_interval=interval if unit.key in idle else None,
                    )
                )
        return out

    def revisions_held(self) -> int:
        """Downward revisions held so far, over this account's units."""
        return self.held_facts()[0]

    def held_facts(self) -> tuple[int, int, int, float | None]:
        """Over this account's units: (downward revisions held, read-window resets held,
        settled days that changed when re-read, the time from which every read and click
        counter holds all the API showed in unix seconds, None before any unit has a state).
        That time is the earliest origin, or the latest end of a day that may have been reset
        before it was first read (a unit whose origin is later holds all from its origin)."""
        revisions = resets = changes = 0
        origin: int | None = None
        incomplete = 0
        with self.store.lock:
            for key, state in self.store.units.items():
                if key.account != self.account.name:
                    continue
                revisions += state.revisions_held
                resets += state.read_resets_held
                changes += state.settled_changes
                origin = state.origin_ms if origin is None else min(origin, state.origin_ms)
                incomplete = max(incomplete, state.reads_incomplete_until_ms or 0)
        complete = None if origin is None else max(origin, incomplete) / 1000
        return revisions, resets, changes, complete

    def _note_incomplete_reads(self) -> None:
        """Say once (per account and process) when units hold read and click counters that
        are complete only from later than their origin (a rebuild past the read window)."""
        name = self.account.name
        with self.store.lock:
            late = [
                state.reads_complete_since_ms
                for key, state in self.store.units.items()
                if key.account == name and state.reads_complete_since_ms > state.origin_ms
            ]
        if late:
            warn = self.context.poll.counters_since is not None
            self.read_window.incomplete(name, len(late), max(late), warn)
