"""Scheduling: one thread per account running its cycles, snapshots published, state saved.

`Scheduler` runs each account's `AccountPoller` cycle every `poll.interval` in its own thread,
and after each cycle publishes a new immutable `Snapshot` (state file written first, exposition
rendered before the swap, so `/-/ready` never leads `/metrics` and a kill -9 never brings a
counter back lower). A publisher thread shows progress (for `/-/ready` and the status page) at
most once a second while cycles run. Scrapes only read the snapshot.

Accounts with `sender_health` also get a `SenderPoller` (`exporter.senders.poller`) whose own
threads list phone numbers and run health-status rounds, never inside the template cycle.
When they change something, the publisher publishes their part at most every few seconds
(the template families are not rendered again for it).
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from exporter.cams.client import CamsClient
from exporter.cams.context import AccountContext
from exporter.cams.instruments import Instruments
from exporter.config import Account, Config
from exporter.counting.anomalies import AnomalyLog
from exporter.counting.readwindow import ReadWindowLog
from exporter.counting.store import CounterStore
from exporter.publish.memory import GcPolicy
from exporter.publish.snapshot import Snapshot
from exporter.senders.counters import NumberCounters
from exporter.senders.poller import SenderPoller
from exporter.templates.poller import AccountPoller
from exporter.templates.sharding import Shard
from exporter.templates.view import TemplateSeries

log = logging.getLogger("cams_exporter.poller")
# Sender-health changes are published (and rendered) at most this often.
SENDER_PUBLISH_S = 5.0


def _sender_poller(
    poller: AccountPoller,
    shard: Shard | None,
    clock: Callable[[], float],
    on_change: Callable[[], None],
    on_crash: Callable[[str], None],
) -> SenderPoller | None:
    """The account's SenderPoller, over the templates its AccountPoller discovers (None when the
    account did not opt in)."""
    settings = poller.account.sender_health
    if settings is None:
        return None
    discovery = poller.discovery
    metrics = settings.phone_number_metrics
    # Waking compares the numbers' growth with the templates': the numbers are then read in
    # the template cycle (at its interval), and only a replica that has them all can compare.
    waking = (
        poller.schedule.enabled
        and metrics.enabled
        and (metrics.interval_s is None or metrics.interval_s <= poller.context.poll.interval_s)
        and (shard is None or shard.count == 1)
    )
    sender = SenderPoller(
        poller.account,
        settings,
        poller.context.client,
        discovery.units,
        units_ready=lambda: bool(discovery.discovered) or bool(discovery.units()),
        shard=shard,
        clock=clock,
        on_change=on_change,
        anomalies=poller.anomalies,
        on_crash=on_crash,
        counters=NumberCounters(
            poller.context, settings.phone_number_metrics, poller.store, poller.anomalies
        )
        if settings.phone_number_metrics.enabled
        else None,
        metrics_loop=not waking,
    )
    if waking:
        poller.wake_with(sender.read_number_metrics)
    return sender


def _carry_account(poller: AccountPoller, before: AccountPoller) -> None:
    """Keep what a replaced account poller knew (first poll done, up, last success, discovery
    counts, read mode), so that /-/ready, cams_up and the status page do not flap."""
    with before.lock:
        status = before.status
    discovered = dict(before.discovery.discovered)
    with poller.lock:
        poller.discovery.discovered = {
            space: count for space, count in discovered.items() if space in poller.status.spaces
        }
        poller.status = replace(
            poller.status,
            units=status.units,
            idle_units=status.idle_units,
            cycle_units=status.cycle_units,
            units_done=status.units_done,
            first_cycle_complete=status.first_cycle_complete,
            up=status.up,
            last_poll_success=status.last_poll_success,
            last_poll_duration=status.last_poll_duration,
            last_error_code=status.last_error_code,
            templates_discovered=tuple(sorted(poller.discovery.discovered.items())),
            wakes=status.wakes,
        )
    poller.grouping.adopt(before.grouping)


class Scheduler:
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
        anomalies: AnomalyLog | None = None,
        gc_policy: GcPolicy | None = None,
        stops: Mapping[str, threading.Event] | None = None,
        read_window: ReadWindowLog | None = None,
    ) -> None:
        self.config = config
        self.shard = shard
        # One stop event per account (its client's too): a reload can stop one account alone.
        self._stops = dict(stops or {})
        self._account_threads: dict[str, list[threading.Thread]] = {}
        self._started = False
        self._reconfigure_lock = threading.Lock()
        self.anomalies = anomalies or AnomalyLog(instruments, clock)
        self.read_window = read_window or ReadWindowLog(clock)
        self.gc = gc_policy or GcPolicy()
        self._crashes: set[tuple[str, str]] = set()  # (where, error) already logged
        self.on_publish, self.store, self.instruments = on_publish, store, instruments
        self.state_path, self.clock = state_path, clock
        self.stop_event = threading.Event()
        self._dirty = threading.Event()
        self._save_lock = threading.Lock()
        self._state_error: str | None = None  # reason of the last failed state write
        self._generation = 0
        self._publish_lock = threading.Lock()
        self.accounts = [
            self._account_poller(account, clients[account.name]) for account in config.accounts
        ]
        self._senders_dirty = threading.Event()
        self.senders = [s for p in self.accounts if (s := self._sender_for(p)) is not None]
        self._threads: list[threading.Thread] = []
        self._snapshot = Snapshot()
        self.publish()  # before any poll: restored counters and listed templates show at once

    def _account_poller(self, account: Account, client: CamsClient) -> AccountPoller:
        return AccountPoller(
            AccountContext(account, self.config.poll, client, self.clock),
            self.store,
            self.instruments,
            shard=self.shard,
            on_progress=self._dirty.set,
            anomalies=self.anomalies,
            read_window=self.read_window,
        )

    def _sender_for(self, poller: AccountPoller) -> SenderPoller | None:
        return _sender_poller(poller, self.shard, self.clock, self._senders_dirty.set, self.crashed)

    @property
    def snapshot(self) -> Snapshot:
        """The latest published snapshot (a plain reference read)."""
        return self._snapshot

    def publish(
        self,
        save: bool = False,
        progress_only: bool = False,
        senders_only: bool = False,
        cycled: AccountPoller | None = None,
    ) -> Snapshot:
        """Build a snapshot from the store and swap it in.

        With `save`, the state file is written after the snapshot is built and before it is
        swapped in. Counters in the store only grow, so the file always holds at least what
        any scrape has seen: a kill -9 at any moment never brings a counter back lower (which
        Prometheus would take for a reset, counting the difference twice).

        With `progress_only`, only the accounts' status changes (for /-/ready and the status
        page): the series are the previous snapshot's, nothing is written or rendered, so
        progress during a long cycle costs next to nothing however many templates there are.

        With `senders_only`, the series are the previous snapshot's too, but the snapshot is
        rendered: sender health changed (the exposition reuses the template families).
        With `cycled` (the account whose cycle just ended), only that account's series are
        built again: the others are the ones they published at the end of their own cycles.
        """
        reuse = progress_only or senders_only
        with self._publish_lock, self.gc.paused():
            self._dirty.clear()
            if not progress_only:
                self._senders_dirty.clear()
            parts = self._snapshot.parts
            if not reuse:
                parts = self._parts(cycled)
            statuses = []
            for poller in self.accounts:
                with poller.lock:
                    status = poller.status
                revisions, resets, changes, complete = poller.held_facts()
                statuses.append(
                    replace(
                        status,
                        revisions_held=revisions,
                        read_window_resets=resets,
                        settled_changes=changes,
                        reads_complete_since=complete,
                    )
                )
            self._generation += 1
            snap = Snapshot(
                generation=self._generation,
                created=self.clock(),
                accounts=tuple(statuses),
                anomalies=self.anomalies.recent(),
                settled_changes=self.read_window.recent(),
                series=(
                    self._snapshot.series if reuse else tuple(itertools.chain.from_iterable(parts))
                ),
                parts=parts,
                senders=tuple(sender.view() for sender in self.senders),
            )
            if save and not reuse:
                self.save_state()
            if self.on_publish is not None and not progress_only:
                try:
                    self.on_publish(snap)  # render first, so /-/ready never leads /metrics
                except Exception:
                    self.crashed("render")
                    return self._snapshot  # the last good snapshot stays in service
            self._snapshot = snap
            if not progress_only:
                self.gc.after_publish()
            return snap

    def _parts(self, cycled: AccountPoller | None) -> tuple[tuple[TemplateSeries, ...], ...]:
        """Each account's series, sorted, in account order (so that their concatenation is
        sorted by key): built again for `cycled` (for every account without it), the previous
        snapshot's part for the others."""
        previous = {part[0].key.account: part for part in self._snapshot.parts if part}
        parts = []
        for poller in sorted(self.accounts, key=lambda p: p.account.name):
            name = poller.account.name
            if cycled is not None and poller is not cycled and name in previous:
                parts.append(previous[name])
            else:
                parts.append(tuple(sorted(poller.series(), key=lambda s: s.key)))
        return tuple(parts)

    def crashed(self, where: str) -> None:
        """Called in an `except` block: count the unexpected error, log it with its traceback
        the first time it is seen (where and what), at debug after that."""
        self.instruments.internal_error(where)
        error = sys.exc_info()[1]
        signature = (where, f"{type(error).__name__}: {error}"[:200])
        if signature in self._crashes:
            log.debug("%s failed again: %s", where, signature[1], exc_info=True)
            return
        self._crashes.add(signature)
        log.exception("%s failed; serving the last good snapshot and going on (logged once)", where)

    def save_state(self) -> None:
        """Write the state file if one is configured; failures are counted and logged (once
        per distinct reason, and once when writing works again), never fatal."""
        if not self.state_path:
            return
        with self._save_lock:
            try:
                self.store.save(self.state_path)
            except (OSError, ValueError, TypeError) as exc:
                self.instruments.state_write(ok=False)
                reason = str(getattr(exc, "strerror", None) or exc)
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

    def _run_account(self, poller: AccountPoller, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                poller.run_cycle(stop, self.workers_for(poller.account))
            except Exception:  # a bug must not kill the polling thread
                self.crashed("poll")
            if stop.is_set():
                break
            try:
                self.publish(save=True, cycled=poller)
            except Exception:
                self.crashed("publish")
            interval = self.config.poll.interval_s
            if not poller.status.first_cycle_complete:
                wait = min(interval, 30.0)
            else:
                wait = interval - (time.monotonic() - started)
            stop.wait(max(0.0, wait))

    def _run_publisher(self) -> None:
        """Publish progress while cycles run, at most once a second, and sender-health changes
        at most every SENDER_PUBLISH_S (or 20 times as long as their last render took). Counters
        are published (state written, exposition rendered) at the end of each account's cycle."""
        last_senders, sender_wait = float("-inf"), SENDER_PUBLISH_S
        while not self.stop_event.is_set():
            progress = self._dirty.wait(1.0)
            if self.stop_event.is_set():
                break
            try:
                if self._senders_dirty.is_set() and time.monotonic() - last_senders >= sender_wait:
                    started = time.monotonic()
                    self.publish(senders_only=True)
                    last_senders = time.monotonic()
                    # a big account's render is not free: at most ~5% of a core for it
                    sender_wait = max(SENDER_PUBLISH_S, 20 * (last_senders - started))
                elif progress:
                    self.publish(progress_only=True)
                else:
                    continue
            except Exception:
                self.crashed("publish")
            self.stop_event.wait(1.0)

    def _stop_for(self, name: str) -> threading.Event:
        return self._stops.setdefault(name, threading.Event())

    def _start_account(self, poller: AccountPoller, sender: SenderPoller | None) -> None:
        name = poller.account.name
        stop = self._stop_for(name)
        thread = threading.Thread(
            target=self._run_account, args=(poller, stop), name=f"account-{name}", daemon=True
        )
        thread.start()
        threads = [thread]
        if sender is not None:
            threads.extend(sender.start(stop))
        self._account_threads[name] = threads

    def _stop_accounts(self, names: list[str], timeout: float) -> None:
        """Signal every one first, then wait for all within one `timeout`."""
        for name in names:
            self._stop_for(name).set()
        deadline = time.monotonic() + timeout
        for name in names:
            for thread in self._account_threads.pop(name, []):
                thread.join(max(0.0, deadline - time.monotonic()))

    def start(self) -> None:
        """Start one thread per account (and its sender-health threads) and the publisher."""
        self._started = True
        senders = {s.account.name: s for s in self.senders}
        for poller in self.accounts:
            self._start_account(poller, senders.get(poller.account.name))
        publisher = threading.Thread(target=self._run_publisher, name="publisher", daemon=True)
        publisher.start()
        self._threads.append(publisher)

    def reconfigure(
        self,
        config: Config,
        clients: Mapping[str, CamsClient],
        stops: Mapping[str, threading.Event],
        timeout: float = 10.0,
    ) -> list[str]:
        """Apply a reloaded config in place: an account whose settings (and the poll settings)
        did not change keeps polling, its cycle and discovery untouched; the others stop, and
        start again on `clients` (with their `stops`), keeping what they knew; removed accounts
        stop. The counters stay in the store either way. Returns the accounts restarted."""
        with self._reconfigure_lock:
            same_poll = config.poll == self.config.poll
            kept = {a.name for a in self.config.accounts if same_poll and a in config.accounts}
            old = {p.account.name: p for p in self.accounts}
            old_senders = {s.account.name: s for s in self.senders}
            stopping = [name for name in old if name not in kept]
            self._stop_accounts(stopping, timeout)
            for name in stopping:
                old[name].context.client.close()
            self.config = config
            self._stops.update({n: e for n, e in stops.items() if n not in kept})
            accounts, senders, restarted = [], [], []
            for account in config.accounts:
                if account.name in kept:
                    accounts.append(old[account.name])
                    if account.name in old_senders:
                        senders.append(old_senders[account.name])
                    continue
                poller = self._account_poller(account, clients[account.name])
                if account.name in old:
                    _carry_account(poller, old[account.name])
                sender = self._sender_for(poller)
                if sender is not None:
                    if account.name in old_senders:
                        sender.carry_over(old_senders[account.name])
                    senders.append(sender)
                accounts.append(poller)
                restarted.append(account.name)
            self.accounts, self.senders = accounts, senders
            self.publish()  # the reloaded config's templates, with the counters kept
            if not self._started:  # a reload starts polling, as a start does
                self.start()
                return restarted
            by_name = {s.account.name: s for s in senders}
            for poller in accounts:
                if poller.account.name in restarted:
                    self._start_account(poller, by_name.get(poller.account.name))
            return restarted

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling, wait for the threads, publish and write state one last time."""
        self.stop_event.set()
        for stop in list(self._stops.values()):
            stop.set()
        deadline = time.monotonic() + timeout
        threads = [t for group in self._account_threads.values() for t in group]
        for thread in [*threads, *self._threads]:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.publish(save=True)
