"""Rate limiting shared by every worker thread of an account: strict pacing plus AIMD.

CAMS allows 50 GetChatappTemplateMetric and 5 ListChatappTemplate calls per second per account.
A `RateLimiter` hands out send slots spaced 1/rate apart plus a small margin (no bursts). A slot
is only a turn in the queue: when its time comes, the caller is granted the call only if the
calls in flight (granted, not yet ended) and the calls that ended in the last second (plus the
margin) number fewer than `rate`. The client says when each call ends (`ended`: answered, or
failed once it had reached the transport); it cannot know when the request's bytes reach the
server, only that this happens between the grant and the end.

Why no 1-second window of calls reaching the server can then hold more than `rate`, however
the process stalls: take the last call granted among those reaching the server in one window.
Every other one was granted before it, and reached the server less than a second before it did,
so at its grant each of them was either still in flight or had ended less than a second before
(it ended after it reached the server): all of them were counted, so there were fewer than
`rate`.

The cost: a call holds its place in the count from its grant until a second after its answer,
so with answers taking L seconds the pace is at most rate / (1 + margin + L) calls a second,
where a count from the moment of writing gave rate / (1 + margin). The limiter cannot do
better with what public HTTP APIs tell it: a call in flight may reach the server at any moment
until its answer.
When the API throttles anyway (another application shares the account's quota), the rate is cut
multiplicatively and recovers additively once calls succeed again (AIMD).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """How a limiter spaces its slots and backs off when throttled (the same for every limiter
    unless a test says otherwise)."""

    # Slots are spaced a little wider than 1/rate, so that rate+1 consecutive calls span more
    # than a second even when one of them reaches the server `margin/rate` late.
    margin: float = 0.03
    decrease: float = 0.7  # the rate is multiplied by this when the API throttles
    increase: float = 1.0  # calls per second added back per second, once recovering
    recovery_s: float = 2.0  # how long after the last cut the rate starts rising again


class RateLimiter:
    """A pacing limiter (slots 1/rate apart, checked against the calls in flight and a sliding
    1-second window of ended calls), safe to share between threads."""

    def __init__(
        self,
        rate: float,
        *,
        min_rate: float | None = None,
        policy: RatePolicy = RatePolicy(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._max_rate = float(rate)
        self._rate = float(rate)
        # the floor a throttle cannot cut below (lowered with the ceiling, never above it)
        self._min_rate = min(float(min_rate if min_rate is not None else 1.0), self._max_rate)
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = clock()
        self._ended: deque[float] = deque()  # when granted calls ended, last window only
        self._in_flight = 0  # granted, not yet ended
        self._last_admitted = float("-inf")  # when the latest call was granted
        self._last_cut = float("-inf")
        self._last_raise = clock()
        self._throttles = 0

    @property
    def rate(self) -> float:
        """The rate in force now (calls per second)."""
        return self._rate

    @property
    def max_rate(self) -> float:
        """The configured ceiling."""
        return self._max_rate

    def set_max_rate(self, rate: float) -> None:
        """A new ceiling (a reloaded config's qps); the window of calls already ended is kept,
        so the change never lets more than the lower of the two rates through in a second."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        with self._lock:
            unthrottled = self._rate >= self._max_rate
            self._max_rate = float(rate)
            self._rate = self._max_rate if unthrottled else min(self._rate, self._max_rate)
            self._min_rate = min(self._min_rate, self._max_rate)

    @property
    def throttle_events(self) -> int:
        """How many times the rate was cut because the API throttled."""
        return self._throttles

    def _spacing(self) -> float:
        """The time between two slots at the rate in force (called with the lock held)."""
        return (1.0 + self._policy.margin) / self._rate

    def reserve(self) -> float:
        """Take the next send slot and return the monotonic time at which it opens."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._spacing()
            return slot

    def _admit(self) -> float:
        """Grant the caller a call now (0.0), or say how long to wait for the window."""
        with self._lock:
            now = self._clock()
            window = 1.0 + self._policy.margin
            ended = self._ended
            while ended and now - ended[0] >= window:
                ended.popleft()
            if len(ended) + self._in_flight >= max(1, math.floor(self._rate)):
                # Wait for the oldest ended call to leave the window; with none ended, a call
                # in flight leaves at the earliest a window after it ends, so not before then.
                return ended[0] + window - now if ended else window
            self._in_flight += 1
            self._last_admitted = now
            return 0.0

    def _abandon(self) -> None:
        """A reserved slot will not be used (its caller was stopped): give one spacing back,
        so that the waiters of a stopped poller (replaced by a reload) do not push every later
        slot into the future. Never before the latest grant plus one spacing."""
        with self._lock:
            spacing = self._spacing()
            floor = max(self._clock(), self._last_admitted + spacing)
            self._next_slot = max(floor, self._next_slot - spacing)

    def ended(self) -> None:
        """A granted call has ended (answered, or failed once it reached the transport): it
        stays in the window for a second from now."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._ended.append(self._clock())

    def release(self) -> None:
        """A granted call never reached the transport (it failed before sending)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until the caller may send; then it must call `ended()` or `release()`.

        Returns False (and holds nothing) if `stop` was set while waiting.
        """
        slot = self.reserve()
        while True:
            delay = slot - self._clock()
            if delay <= 0:
                delay = self._admit()
                if delay <= 0:
                    return True
            if stop is not None:
                if stop.wait(delay):
                    self._abandon()
                    return False
            else:
                self._sleep(delay)

    def grant(self, stop: threading.Event | None = None) -> Grant | None:
        """`acquire`, as a `Grant` to mark ended or released (None if `stop` was set)."""
        return Grant(self) if self.acquire(stop) else None

    def on_throttled(self) -> None:
        """The API said we were too fast: cut the rate (at most once per second)."""
        with self._lock:
            now = self._clock()
            if now - self._last_cut < 1.0:
                return
            self._last_cut = now
            self._last_raise = now
            self._throttles += 1
            self._rate = max(self._min_rate, self._rate * self._policy.decrease)
            # Let the spacing take effect at once for the slots not yet handed out.
            self._next_slot = max(self._next_slot, now + self._spacing())

    def on_success(self) -> None:
        """A call went through: once `recovery_s` passed since the last cut, raise the rate
        by `increase` per second."""
        if self._rate >= self._max_rate:
            return
        with self._lock:
            now = self._clock()
            if now - self._last_cut >= self._policy.recovery_s and now - self._last_raise >= 1.0:
                self._last_raise = now
                self._rate = min(self._max_rate, self._rate + self._policy.increase)


class Grant:
    """One granted call: marked `ended()` once it reached the transport and is over, else
    `release()`d.

    Whichever comes first counts; later calls of either do nothing, so a caller can release
    unconditionally once the attempt is over.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._lock = threading.Lock()
        self._done = False

    def _finish(self) -> bool:
        with self._lock:
            done, self._done = self._done, True
            return not done

    def ended(self) -> None:
        """The call is over; it may have reached the server at any moment until now."""
        if self._finish():
            self._limiter.ended()

    def release(self) -> None:
        """The call ends without having reached the transport (a no-op once it ended)."""
        if self._finish():
            self._limiter.release()
