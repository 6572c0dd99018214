"""The web config's `rate_limit`: a token bucket over every request, as exporter-toolkit's.

One token per `interval`, at most `burst` kept (the bucket starts full); a request takes a token
or is answered 429 Too Many Requests. As with Go's `rate.Limiter`, a burst of 0 lets nothing
through, and an interval of 0 turns the limit off (no `RequestLimiter` is made).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RequestLimiter:
    """A thread-safe token bucket: `allow()` takes a token if one is there."""

    def __init__(
        self, interval_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval must be positive, got {interval_s}")
        self._interval = interval_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take a token; False (nothing taken) when the bucket is empty."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._last)
            self._last = now
            self._tokens = min(self._burst, self._tokens + elapsed / self._interval)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
