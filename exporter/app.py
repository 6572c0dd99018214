"""Wiring: config -> clients -> poller -> exposition -> web handlers, plus reload and the demo.

`Exporter` owns one running set of those parts. A reload builds a new poller on the same counter
store (so unchanged templates keep their counters) and swaps it in; an invalid new config is
refused and the running one goes on, and a config that did not change leaves polling alone.
Reloads are coalesced: requests made while one runs are all answered by the next one (at most
one pending). The rate limiters live in a `LimiterRegistry` made once per process, one per
account and action, so the old and the new poller of a reload draw on the same budget and no
second of calls ever holds more than the account's `qps`, whatever the reload rate.
/metrics also carries the process metrics (`exporter.publish.process_metrics`:
`process_open_fds`, CPU, memory, the garbage collector).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from exporter import __version__
from exporter.cams.actions import (
    HEALTH_ACTION,
    LIST_ACTION,
    METRIC_ACTION,
    PHONE_METRIC_ACTION,
    PHONE_NUMBERS_ACTION,
)
from exporter.cams.client import CamsClient, CredentialSource, RequestEvent
from exporter.cams.instruments import Instruments
from exporter.cams.ratelimit import RateLimiter
from exporter.cams.retry import RetryPolicy
from exporter.config import Account, Config, ConfigError, default_credentials_provider, load_config
from exporter.config.sections import config_warnings
from exporter.counting.anomalies import AnomalyLog
from exporter.counting.readwindow import ReadWindowLog
from exporter.counting.store import CounterStore
from exporter.publish.exposition import Exposition
from exporter.publish.memory import GcPauses, GcPolicy
from exporter.publish.pages import StatusPages
from exporter.publish.process_metrics import ProcessMetrics
from exporter.publish.render import KeptRendering
from exporter.publish.scheduler import Scheduler
from exporter.publish.snapshot import Snapshot
from exporter.templates.sharding import Shard
from exporter.web.negotiation import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.web.routes import Handlers, Payload

log = logging.getLogger("cams_exporter")


class LimiterRegistry:
    """One rate limiter per (account, action) for the life of the process.

    A reload asks for its limiters again and gets the same objects (with the new ceiling when
    the account's qps changed), so the calls the old poller sent in the last second still
    count when the new one starts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limiters: dict[tuple[str, str], RateLimiter] = {}

    def get(self, account: str, action: str, rate: float, min_rate: float) -> RateLimiter:
        """The limiter of `account` and `action`, at `rate` calls per second."""
        with self._lock:
            limiter = self._limiters.get((account, action))
            if limiter is None:
                limiter = RateLimiter(rate, min_rate=min_rate)
                self._limiters[(account, action)] = limiter
            elif limiter.max_rate != rate:
                limiter.set_max_rate(rate)
            return limiter


# Connections beyond the template workers' for the sender-health threads (numbers, health
# rounds of up to 4 workers, and room for the per-number counters).
_SENDER_CONNECTIONS = 8


def build_limiters(
    account: Account, shard: Shard, registry: LimiterRegistry | None = None
) -> dict[str, RateLimiter]:
    """One limiter per action the account calls, at its share of the action's quota (each
    replica of a sharded exporter takes 1/COUNT), from `registry` so that they outlive a reload.
    The sender-health actions get theirs only when the account opted in, so the template
    actions never share a limiter with them."""
    registry = registry if registry is not None else LimiterRegistry()
    name, count = account.name, shard.count
    limiters = {
        METRIC_ACTION: registry.get(name, METRIC_ACTION, account.qps / count, 0.5),
        LIST_ACTION: registry.get(name, LIST_ACTION, account.list_qps / count, 0.2),
    }
    health = account.sender_health
    if health is not None:
        numbers = health.phone_numbers.qps / count
        limiters[PHONE_NUMBERS_ACTION] = registry.get(name, PHONE_NUMBERS_ACTION, numbers, 0.1)
        if health.phone_number_metrics.enabled:
            rate = health.phone_number_metrics.qps / count
            limiters[PHONE_METRIC_ACTION] = registry.get(name, PHONE_METRIC_ACTION, rate, 0.5)
        if health.health_status.enabled:
            rate = health.health_status.qps / count
            limiters[HEALTH_ACTION] = registry.get(name, HEALTH_ACTION, rate, 0.1)
    return limiters


def build_clients(
    config: Config,
    instruments: Instruments,
    shard: Shard,
    stop: threading.Event,
    clock: Callable[[], float] = time.time,
    registry: LimiterRegistry | None = None,
    stops: Mapping[str, threading.Event] | None = None,
) -> dict[str, CamsClient]:
    """One client per account, with rate limiters at the account's share of the quota (from
    `registry`, so that they outlive a reload; a fresh one when not given). A client stops
    retrying when its account's event in `stops` is set (else `stop`)."""
    registry = registry if registry is not None else LimiterRegistry()
    clients = {}
    for index, account in enumerate(config.accounts):
        credentials: CredentialSource
        if account.credentials is None:
            credentials = default_credentials_provider(f"accounts[{index}].credentials")
        else:
            credentials = account.credentials
        limiters = build_limiters(account, shard, registry)
        pool_size = max(4, min(64, int(account.qps)))
        if account.sender_health is not None:
            pool_size += _SENDER_CONNECTIONS

        def observe(
            event: RequestEvent, name: str = account.name, limits: dict[str, RateLimiter] = limiters
        ) -> None:
            instruments.observe(name, event)
            limiter = limits.get(event.action)
            if limiter is not None:
                instruments.set_rate(name, event.action, limiter.rate)

        clients[account.name] = CamsClient(
            endpoint=account.endpoint,
            credentials=credentials,
            limiters=limiters,
            timeout_s=config.poll.timeout_s,
            retry=RetryPolicy(max_retries=config.poll.max_retries),
            observer=observe,
            pool_size=pool_size,
            stop=(stops or {}).get(account.name, stop),
            clock=clock,
        )
        for action, limiter in limiters.items():
            instruments.set_rate(account.name, action, limiter.rate)
    return clients


class Exporter:
    """A running exporter: background poller plus the exposition the web server serves."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        shard: Shard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.shard = shard or Shard(0, 1)
        self.clock = clock
        self.instruments = Instruments()
        self.anomalies = AnomalyLog(self.instruments, clock)
        self.read_window = ReadWindowLog(clock)  # one per process: it outlives reloads
        self.gc = GcPolicy()  # one per process: it outlives reloads
        self.gc.tune()
        self.limiters = LimiterRegistry()
        self.gc_pauses = GcPauses()
        self.gc_pauses.install()
        self._process = ProcessMetrics(self.gc_pauses)
        for caution in config_warnings(config):
            log.warning("config: %s", caution)
        self.store = CounterStore()
        if config.state.path:
            self.store, warning = CounterStore.load(config.state.path)
            if warning:
                log.warning(warning)
        self._reload_lock = threading.Lock()  # one reload at a time
        self._tickets = threading.Lock()
        self._requested = 0  # reload requests made
        self._covered = 0  # requests answered by a finished reload
        self._last_result: tuple[bool, str] = (True, "")
        self.scheduler = self._build_scheduler(config)
        # the live instruments are the last chunk of /metrics: it carries OpenMetrics' `# EOF`
        live = KeptRendering(self.instruments.registry, self.instruments.version, eof=True)
        self.exposition = Exposition(lambda: self.scheduler.snapshot, live.render)

    def _clients(
        self, config: Config, accounts: Sequence[Account]
    ) -> tuple[dict[str, CamsClient], dict[str, threading.Event]]:
        """Clients for some accounts of `config`, each with a stop event of its own."""
        stops = {account.name: threading.Event() for account in accounts}
        subset = replace(config, accounts=tuple(accounts))
        clients = build_clients(
            subset,
            self.instruments,
            self.shard,
            threading.Event(),
            self.clock,
            self.limiters,
            stops,
        )
        return clients, stops

    def _build_scheduler(self, config: Config) -> Scheduler:
        clients, stops = self._clients(config, config.accounts)
        scheduler = Scheduler(
            config,
            clients,
            self.store,
            self.instruments,
            state_path=config.state.path,
            shard=self.shard,
            clock=self.clock,
            anomalies=self.anomalies,
            read_window=self.read_window,
            gc_policy=self.gc,
            stops=stops,
        )
        # Render /metrics once per published snapshot, off the scrape path.
        scheduler.on_publish = lambda snap: self.exposition.prepare(snap)
        return scheduler

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot scrapes and pages read now."""
        return self.scheduler.snapshot

    def start(self) -> None:
        """Start polling in the background."""
        accounts = ", ".join(a.name for a in self.config.accounts)
        log.info("polling accounts: %s", accounts)
        self.scheduler.start()

    def stop(self) -> None:
        """Stop polling and write the state one last time."""
        self.scheduler.stop()
        for poller in self.scheduler.accounts:
            poller.context.client.close()
        self.gc_pauses.uninstall()

    def reload(self) -> tuple[bool, str]:
        """Re-read the config file; on success swap in a new poller, keeping the counters.

        Coalesced: a call made while a reload runs waits, and the first reload to start after
        it answers it and every other call made meanwhile (it reads the file after them all).
        """
        with self._tickets:
            self._requested += 1
            ticket = self._requested
        with self._reload_lock:
            if self._covered >= ticket:
                return self._last_result
            with self._tickets:
                covering = self._requested
            result = self._reload_now()
            self._covered, self._last_result = covering, result
            return result

    def _reload_now(self) -> tuple[bool, str]:
        if not self.config_path:
            return False, "no config file to reload (demo mode)"
        try:
            config = load_config(self.config_path)
            if config.state.path != self.config.state.path:
                raise ConfigError("state.path: cannot change on reload; restart instead")
            if config == self.config:
                log.info("config reloaded from %s: unchanged, polling goes on", self.config_path)
                return True, "config unchanged"
            same_poll = config.poll == self.config.poll
            changed = [a for a in config.accounts if not same_poll or a not in self.config.accounts]
            clients, stops = self._clients(config, changed)
        except ConfigError as error:
            message = "; ".join(error.problems)
            log.error("reload refused, keeping the running config: %s", message)
            return False, message
        restarted = self.scheduler.reconfigure(config, clients, stops)
        if not same_poll:
            for caution in config_warnings(config):
                log.warning("config: %s", caution)
        self.config = config
        kept = len(config.accounts) - len(restarted)
        log.info(
            "config reloaded from %s: %d accounts restarted, %d polling on",
            self.config_path,
            len(restarted),
            kept,
        )
        return True, "config reloaded"

    def metrics(self, openmetrics: bool) -> Payload:
        """The /metrics payload for one scrape: the exposition, then the process metrics
        (before the OpenMetrics `# EOF`, which ends the exposition's last chunk)."""
        body, zipped = self.exposition.render(openmetrics)
        (process, process_zipped), (gc, gc_zipped) = self._process.render(openmetrics)
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        return Payload(
            content_type,
            (*body[:-1], process, gc, body[-1]),
            (*zipped[:-1], process_zipped, gc_zipped, zipped[-1]),
        )

    def handlers(self) -> Handlers:
        """What the web server calls."""
        pages = StatusPages(lambda: self.scheduler.snapshot, __version__)
        return Handlers(
            metrics=self.metrics, ready=pages.ready, landing=pages.landing, reload=self.reload
        )
