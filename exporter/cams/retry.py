"""Retries around one CAMS call: exponential backoff with jitter, `x-acs-retry-after` honoured.

`RetryPolicy.run` calls an attempt function until it succeeds, fails with a code that is not
worth retrying, runs out of attempts, or the exporter stops. It wraps the client's single
attempts; it knows nothing of HTTP.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from exporter.cams.errors import CamsError

log = logging.getLogger("cams_exporter.client")
_T = TypeVar("_T")
_MAX_RETRY_AFTER_S = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry (the delays grow as base * 2**n, up to cap)."""

    max_retries: int = 4
    base_s: float = 0.5
    cap_s: float = 20.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int, error: CamsError) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** (attempt - 1)))
        delay = self.rng.uniform(ceiling / 2, ceiling)
        if error.retry_after_s is not None:
            delay = max(delay, min(error.retry_after_s, _MAX_RETRY_AFTER_S))
        return delay

    def run(self, action: str, attempt: Callable[[int], _T], stop: threading.Event) -> _T:
        """`attempt(n)` for n = 1, 2, ... until it returns; the last CamsError otherwise."""
        number = 0
        while True:
            number += 1
            try:
                return attempt(number)
            except CamsError as error:
                if not error.retryable or number > self.max_retries or stop.is_set():
                    raise error.after(number) from None
                wait = self.delay(number, error)
                log.debug("retrying %s after %s in %.2fs", action, error.code, wait)
                if stop.wait(wait):
                    raise error.after(number) from None
