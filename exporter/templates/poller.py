"""One account's poll cycle: discover its units, read each through a worker pool, report.

`AccountPoller.run_cycle` refreshes the account's units (`exporter.templates.discovery`),
then reads every (template, language) unit once through a thread pool
(`exporter.counting.strategies` applies each answer to the counter store). Every worker
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
from dataclasses import replace

from exporter.cams.actions import METRIC_ACTION
from exporter.cams.context import AccountContext
from exporter.cams.errors import STOPPED, AnomalousAnswer, CamsError
from exporter.cams.instruments import Instruments
from exporter.cams.model import MetricRow, UnitKey
from exporter.counting.anomalies import AnomalyLog
from exporter.counting.readwindow import ReadWindowLog
from exporter.counting.state import CounterStore, Counts
from exporter.counting.strategies import Counting, Fetch, Member
from exporter.templates.discovery import Discovery, Unit
from exporter.templates.grouping import Grouping
from exporter.templates.sharding import Shard
from exporter.templates.view import AccountStatus, TemplateSeries

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
        self.status = AccountStatus(
            name=self.account.name,
            endpoint=self.account.endpoint,
            spaces=tuple(s.label for s in self.account.spaces),
            shape=self.counting.shape,
        )

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
        self, group: Sequence[Unit], stop: threading.Event, examples: dict[str, str]
    ) -> list[str | None]:
        """One group's read in a worker: per unit, None on success, else the error code."""
        if stop.is_set():
            return [STOPPED] * len(group)
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
                codes.append(None)
        return codes

    # -- cycles --------------------------------------------------------------------------

    def run_cycle(self, stop: threading.Event, workers: int) -> bool:
        """Discover and read every unit once. True if the cycle read every unit."""
        started = self.clock()
        discovery_errors = self.refresh_units()
        units = self.discovery.units()
        if self.grouping.due() and not stop.is_set():
            try:
                self.grouping.verify(units)
            except CamsError as error:  # a transport failure: decide again next cycle
                log.info("read mode not checked: %s", error, extra={"account": self.account.name})
        groups = self.grouping.groups(units)
        with self.lock:
            self.status = replace(
                self.status,
                units=len(units),
                units_done=0,
                reads=len(groups),
                mode=self.grouping.mode,
                shape=self.counting.shape,
                templates_discovered=tuple(sorted(self.discovery.discovered.items())),
            )
        self.on_progress()
        failures: dict[str, int] = {}
        examples: dict[str, str] = {}  # one full error message per code, for the summary line
        done = 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
            results = pool.map(lambda group: self._read(group, stop, examples), groups)
            for codes in results:
                for code in codes:
                    if code is not None:
                        failures[code] = failures.get(code, 0) + 1
                        if code != STOPPED:
                            self.instruments.poll_error(self.account.name, code)
                done += len(codes)
                self._progress(done, len(units))
        if stop.is_set():
            return False
        self._note_incomplete_reads()
        units_failed = sum(failures.values())
        for code in discovery_errors:
            failures[code] = failures.get(code, 0) + 1
        self._finish(started, len(units), units_failed, failures, discovery_errors, examples)
        return not failures

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
        out = []
        with self.store.lock:
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
