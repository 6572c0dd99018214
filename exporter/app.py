"""Wiring: config -> clients -> poller -> exposition -> web handlers, plus reload and the demo.

`Exporter` owns one running set of those parts. A reload builds a new poller on the same counter
store (so unchanged templates keep their counters) and swaps it in; an invalid new config is
refused and the running one goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from exporter import __version__
from exporter.anomalies import AnomalyLog
from exporter.client import (
    HEALTH_ACTION,
    LIST_ACTION,
    METRIC_ACTION,
    PHONE_METRIC_ACTION,
    PHONE_NUMBERS_ACTION,
    CamsClient,
    CredentialSource,
    RequestEvent,
)
from exporter.config import Account, Config, ConfigError, default_credentials_provider, load_config
from exporter.exposition import Exposition
from exporter.instruments import Instruments
from exporter.ratelimit import RateLimiter
from exporter.retry import RetryPolicy
from exporter.scheduler import Scheduler
from exporter.sharding import Shard
from exporter.snapshot import Snapshot
from exporter.state import CounterStore
from exporter.web import Handlers, Payload

log = logging.getLogger("cams_exporter")


# Connections beyond the template workers' for the sender-health threads (numbers, health
# rounds of up to 4 workers, and room for the per-number counters).
_SENDER_CONNECTIONS = 8


def build_limiters(account: Account, shard: Shard) -> dict[str, RateLimiter]:
    """One limiter per action the account calls, at its share of the action's quota (each
    replica of a sharded exporter takes 1/COUNT). The sender-health actions get theirs only
    when the account opted in, so the template actions never share a limiter with them."""
    count = shard.count
    limiters = {
        METRIC_ACTION: RateLimiter(account.qps / count, min_rate=0.5),
        LIST_ACTION: RateLimiter(account.list_qps / count, min_rate=0.2),
    }
    health = account.sender_health
    if health is not None:
        limiters[PHONE_NUMBERS_ACTION] = RateLimiter(health.phone_numbers.qps / count, min_rate=0.1)
        if health.phone_number_metrics.enabled:
            rate = health.phone_number_metrics.qps / count
            limiters[PHONE_METRIC_ACTION] = RateLimiter(rate, min_rate=0.5)
        if health.health_status.enabled:
            rate = health.health_status.qps / count
            limiters[HEALTH_ACTION] = RateLimiter(rate, min_rate=0.1)
    return limiters


def build_clients(
    config: Config,
    instruments: Instruments,
    shard: Shard,
    stop: threading.Event,
    clock: Callable[[], float] = time.time,
) -> dict[str, CamsClient]:
    """One client per account, with rate limiters at the account's share of the quota."""
    clients = {}
    for index, account in enumerate(config.accounts):
        credentials: CredentialSource
        if account.credentials is None:
            credentials = default_credentials_provider(f"accounts[{index}].credentials")
        else:
            credentials = account.credentials
        limiters = build_limiters(account, shard)
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
            stop=stop,
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
        self.store = CounterStore()
        if config.state.path:
            self.store, warning = CounterStore.load(config.state.path)
            if warning:
                log.warning(warning)
        self._reload_lock = threading.Lock()
        self.scheduler = self._build_scheduler(config)
        self.exposition = Exposition(lambda: self.scheduler.snapshot, self.instruments.render)

    def _build_scheduler(self, config: Config) -> Scheduler:
        stop = threading.Event()
        clients = build_clients(config, self.instruments, self.shard, stop, self.clock)
        poller = Scheduler(
            config,
            clients,
            self.store,
            self.instruments,
            state_path=config.state.path,
            shard=self.shard,
            clock=self.clock,
            anomalies=self.anomalies,
        )
        poller.stop_event = stop
        # Render /metrics once per published snapshot, off the scrape path.
        poller.on_publish = lambda snap: self.exposition.prepare(snap)
        return poller

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
        for client in self.scheduler.accounts:
            client.client.close()

    def reload(self) -> tuple[bool, str]:
        """Re-read the config file; on success swap in a new poller, keeping the counters."""
        if not self.config_path:
            return False, "no config file to reload (demo mode)"
        with self._reload_lock:
            try:
                config = load_config(self.config_path)
                if config.state.path != self.config.state.path:
                    raise ConfigError("state.path: cannot change on reload; restart instead")
                new = self._build_scheduler(config)
            except ConfigError as error:
                message = "; ".join(error.problems)
                log.error("reload refused, keeping the running config: %s", message)
                return False, message
            old = self.scheduler
            old.stop()
            for account in old.accounts:
                account.client.close()
            new.carry_over(old)
            new.publish()  # the reloaded config's templates, with the counters kept
            self.config = config
            self.scheduler = new
            new.start()
            log.info("config reloaded from %s", self.config_path)
            return True, "config reloaded"

    def metrics(self, openmetrics: bool) -> Payload:
        """The /metrics payload for one scrape."""
        content_type, body, zipped = self.exposition.render(openmetrics)
        return Payload(content_type, body, zipped)

    def handlers(self) -> Handlers:
        """What the web server calls."""
        return Handlers(
            metrics=self.metrics,
            snapshot=lambda: self.scheduler.snapshot,
            reload=self.reload,
            version=__version__,
        )
