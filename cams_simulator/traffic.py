"""The simulator's clock, its flow control per access key and action, and its request stats.

`Throttle` refuses a request when any 1-second window around its arrival would hold more than
the action's limit (as the real gateway's `System.LimitControl` does). `Stats` records every
request's arrival and outcome per action, and reports the busiest 1-second window: tests use
it to prove the exporter never exceeds its rate, counted on the server's side.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

_ARRIVAL_LOG_CAP: Final = 1_000_000


class Clock:
    """Wall clock plus an adjustable offset, or stopped at a moment; the anchor is the creation
    time plus the offset. The data's time can be pinned apart from it (`pin`), so that a test
    reads the same counts with clients whose clocks differ (the signature window follows `now`)."""

    def __init__(self) -> None:
        self._created = time.time()
        self._offset = 0.0
        self._stopped: float | None = None
        self._pinned: float | None = None
        self._lock = threading.Lock()

    def set_offset(self, seconds: float) -> None:
        with self._lock:
            self._offset = float(seconds)

    def stop_at(self, moment: float | None) -> None:
        """Stop 'now' at `moment` (unix seconds), or let it run again with the offset (None)."""
        with self._lock:
            self._stopped = None if moment is None else float(moment)

    def pin(self, at: float | None) -> None:
        """Freeze the data's time at `at` (unix seconds); None follows `now` again."""
        with self._lock:
            self._pinned = None if at is None else float(at)

    def now(self) -> float:
        with self._lock:
            return self._stopped if self._stopped is not None else time.time() + self._offset

    def data_now(self) -> float:
        """The moment the counts are served as of: the pinned time, else `now`."""
        with self._lock:
            if self._pinned is not None:
                return self._pinned
            return self._stopped if self._stopped is not None else time.time() + self._offset

    def anchor(self) -> float:
        with self._lock:
            return self._created + self._offset


class Throttle:
    """Sliding one-second windows of accepted requests per (access key id, action).

    A request is admitted only if no half-open 1-second window containing its arrival time would
    then hold more than the limit, so the arrival log itself never shows more than the limit in
    any window, even when threads check out of arrival order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accepted: dict[tuple[str, str], list[float]] = {}

    def admit(self, key: tuple[str, str], t: float, limit: float) -> bool:
        cap = max(1, math.floor(limit))
        with self._lock:
            times = self._accepted.setdefault(key, [])
            horizon = max(t, times[-1] if times else t) - 2.0
            del times[: bisect.bisect_left(times, horizon)]
            best = bisect.bisect_left(times, t + 1.0) - bisect.bisect_left(times, t)
            for p in times[bisect.bisect_right(times, t - 1.0) : bisect.bisect_right(times, t)]:
                best = max(best, bisect.bisect_left(times, p + 1.0) - bisect.bisect_left(times, p))
            if best + 1 > cap:
                return False
            bisect.insort(times, t)
            return True


def max_in_window(times: Iterable[float], width: float = 1.0) -> int:
    """Largest number of times in any half-open window [t, t + width)."""
    ordered = sorted(times)
    best = 0
    left = 0
    for right, value in enumerate(ordered):
        while ordered[left] <= value - width:
            left += 1
        best = max(best, right - left + 1)
    return best


class _ActionLog:
    """Counters and bounded arrival logs of one action."""

    def __init__(self) -> None:
        self.calls = 0
        self.ok = 0
        self.throttled = 0
        self.errors = 0
        self.arrivals: deque[float] = deque(maxlen=_ARRIVAL_LOG_CAP)
        self.ok_arrivals: deque[float] = deque(maxlen=_ARRIVAL_LOG_CAP)


class Stats:
    """Arrival times and outcomes of CAMS requests, per action."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[str, _ActionLog] = {}

    def record(self, action: str, arrival: float, outcome: str) -> None:
        with self._lock:
            log = self._actions.setdefault(action, _ActionLog())
            log.calls += 1
            log.arrivals.append(arrival)
            if outcome == "ok":
                log.ok += 1
                log.ok_arrivals.append(arrival)
            elif outcome == "throttled":
                log.throttled += 1
            else:
                log.errors += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            copies = {
                name: (
                    log.calls,
                    log.ok,
                    log.throttled,
                    log.errors,
                    list(log.arrivals),
                    list(log.ok_arrivals),
                )
                for name, log in self._actions.items()
            }
        actions = {
            name: {
                "calls": calls,
                "ok": ok,
                "throttled": throttled,
                "errors": errors,
                "max_calls_in_1s": max_in_window(arrivals),
                "max_ok_in_1s": max_in_window(ok_arrivals),
            }
            for name, (calls, ok, throttled, errors, arrivals, ok_arrivals) in copies.items()
        }
        return {"actions": actions}

    def reset(self) -> None:
        with self._lock:
            self._actions.clear()
