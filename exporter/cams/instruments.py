"""The exporter's own live instruments: API calls, latency, throttling, poll errors, state writes.

These change between polls (every API call moves them), so they live in their own registry and
are rendered at scrape time; everything derived from the snapshot is rendered once per poll.
Every change goes through a method here that bumps `version()`, so the publishing layer
re-renders them only when something moved since the last scrape (between polls, scrapes reuse
the bytes).
"""

from __future__ import annotations

import threading
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import BuildInfo, build_info
from exporter.cams.client import RequestEvent

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PER_ACTION = ("account", "action")  # the labels of what each account's calls of an action do


class Instruments:
    """Counters and histograms the client and poller report into (one registry per exporter)."""

    def __init__(self, build: BuildInfo | None = None) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self.registry = registry = CollectorRegistry(auto_describe=True)
        counter = partial(Counter, registry=registry)
        gauge = partial(Gauge, registry=registry)
        self.api_requests = counter(
            "cams_api_requests",
            "CAMS API requests by account, action and result code (OK or the error code).",
            ["account", "action", "code"],
        )
        self.api_duration = Histogram(
            "cams_api_request_duration_seconds",
            "Duration of CAMS API requests, retries counted separately.",
            _PER_ACTION,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.api_throttled = counter(
            "cams_api_throttled",
            "CAMS API requests refused for flow control (System.LimitControl, Throttling*).",
            _PER_ACTION,
        )
        self.api_rate = gauge(
            "cams_api_rate_limit_per_second",
            "Calls per second the exporter currently allows itself (lowered while throttled).",
            _PER_ACTION,
        )
        self.poll_errors = counter(
            "cams_poll_errors",
            "Template-language units whose poll failed, by error code.",
            ["account", "code"],
        )
        self.anomalies = counter(
            "cams_api_answer_anomalies",
            "CAMS API answers the exporter could not take at face value and did not apply, "
            "by kind.",
            ["account", "action", "kind"],
        )
        self.internal_errors = counter(
            "cams_exporter_internal_errors",
            "Unexpected errors caught in the exporter's background work, by where they "
            "happened; the exporter went on serving the last good snapshot.",
            ["where"],
        )
        self.state_writes = counter(
            "cams_state_writes", "Writes of the state file, by result.", ["result"]
        )
        info = gauge(
            "cams_exporter_build_info",
            "Build information of the cams-exporter; the value is always 1.",
            ["version", "revision", "pythonversion"],
        )
        build = build or build_info()
        info.labels(build.version, build.revision, build.pythonversion).set(1)
        for result in ("ok", "error"):
            self.state_writes.labels(result)
        for where in ("poll", "publish", "render", "state"):
            self.internal_errors.labels(where)

    def _changed(self) -> None:
        with self._lock:
            self._version += 1

    def observe(self, account: str, event: RequestEvent) -> None:
        """Record one API attempt."""
        self.api_requests.labels(account, event.action, event.code).inc()
        self.api_duration.labels(account, event.action).observe(event.duration_s)
        if event.throttled:
            self.api_throttled.labels(account, event.action).inc()
        self._changed()

    def set_rate(self, account: str, action: str, rate: float) -> None:
        """The pace in force for an account and action."""
        self.api_rate.labels(account, action).set(rate)
        self._changed()

    def poll_error(self, account: str, code: str) -> None:
        """A unit's poll failed with `code`."""
        self.poll_errors.labels(account, code).inc()
        self._changed()

    def anomaly(self, account: str, action: str, kind: str) -> None:
        """An answer was not applied: it could not be taken at face value."""
        self.anomalies.labels(account, action, kind).inc()
        self._changed()

    def internal_error(self, where: str) -> None:
        """An unexpected exception was caught in `where` (poll, publish, render, state)."""
        self.internal_errors.labels(where).inc()
        self._changed()

    def state_write(self, ok: bool) -> None:
        """A write of the state file succeeded or failed."""
        self.state_writes.labels("ok" if ok else "error").inc()
        self._changed()

    def version(self) -> int:
        """A number that grows with every change of the registry."""
        with self._lock:
            return self._version
