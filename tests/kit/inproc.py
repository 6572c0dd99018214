"""The exporter in the test's own process: an `Exporter` and its `WebServer` on 127.0.0.1:0,
polled by hand (a cycle runs when the test says so) and scraped over real HTTP.

    with PolledExporter(parsed(Account(sim.url))) as polled:
        polled.poll()                      # one cycle of every account; it must succeed
        series = polled.scrape()           # GET /metrics, parsed (and kept in `history`)

`cycle()` runs one cycle without judging it (for faults and variants), re-running discovery
each time unless told not to; state is saved before the snapshot is published, so a scrape shows
the write's outcome. With `secret`, every answer is checked not to carry it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import requests

from exporter.app import Exporter
from exporter.config import Config, load_config
from exporter.publish.scheduler import Scheduler
from exporter.templates.sharding import Shard
from exporter.web.server import WebServer
from tests.kit.configs import polled_config
from tests.kit.series import Series, parse
from tests.kit.sim import assert_no_secret
from tests.kit.waits import wait_until


class PolledExporter:
    """An Exporter with its web server, polled by hand; see the module docstring."""

    def __init__(
        self,
        config: Config | Path,
        *,
        clock: Callable[[], float] = time.time,
        lifecycle: bool = False,
        secret: str | None = None,
        shard: Shard | None = None,
    ) -> None:
        if isinstance(config, Path):  # from a file, so that POST /-/reload can read it again
            loaded = load_config(str(config), env={})
            self.exporter = Exporter(loaded, config_path=str(config), clock=clock, shard=shard)
        else:
            self.exporter = Exporter(config, clock=clock, shard=shard)
        self.secret = secret
        self.server = WebServer("127.0.0.1:0", self.exporter.handlers(), enable_lifecycle=lifecycle)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.history: list[Series] = []

    @property
    def scheduler(self) -> Scheduler:
        """The running scheduler (a reload swaps in a new one)."""
        return self.exporter.scheduler

    def cycle(self, rediscover: bool = True, workers: int = 8) -> bool:
        """One poll cycle of every account, then save and publish; True when all succeeded."""
        scheduler = self.scheduler
        ok = True
        for account in scheduler.accounts:
            if rediscover:
                account.discovery.forget()  # discover now, not once per discovery_interval
            ok = account.run_cycle(scheduler.stop_event, workers) and ok
        scheduler.save_state()
        scheduler.publish()
        return ok

    def poll(self, times: int = 1) -> None:
        """`times` cycles (discovery as the exporter schedules it), each of which must succeed."""
        for _ in range(times):
            assert self.cycle(rediscover=False), "a poll cycle failed"

    def get(self, path: str, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        response = requests.get(f"{self.url}{path}", **kwargs)  # type: ignore[arg-type]
        if self.secret is not None:
            assert_no_secret(response.text, path, self.secret)
        return response

    def scrape(self) -> Series:
        """GET /metrics (must answer 200), parsed; kept in `history`."""
        response = self.get("/metrics")
        assert response.status_code == 200
        series = parse(response.text)
        self.history.append(series)
        return series

    def wait_scrape(self, check: Callable[[Series], bool], timeout: float = 20.0) -> Series:
        """Scrape until `check` holds: a cycle the poller's own thread runs is logged before its
        snapshot is published."""

        def scraped() -> Series | None:
            series = self.scrape()
            return series if check(series) else None

        return wait_until(scraped, timeout, "a scrape that passes the check")

    def serving(self) -> bool:
        """The web side answers: healthy, metrics and the landing page."""
        return all(self.get(path).status_code == 200 for path in ("/-/healthy", "/metrics", "/"))

    def reload(self) -> tuple[bool, str]:
        """POST /-/reload (needs `lifecycle`): (accepted, the answer's text)."""
        response = requests.post(f"{self.url}/-/reload", timeout=30)
        if self.secret is not None:
            assert_no_secret(response.text, "the reload answer", self.secret)
        return response.status_code == 200, response.text

    def close(self) -> None:
        self.server.shutdown()
        self.exporter.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def polled_exporter(endpoint: str, since: dt.date) -> PolledExporter:
    """A `PolledExporter` on `polled_config(endpoint, since)`."""
    return PolledExporter(polled_config(endpoint, since))
