"""The rate limiter: at most `rate` admissions in any 1-second window, even across stalls; a
call counts from its grant until a window after it ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from exporter.cams.ratelimit import RateLimiter, RatePolicy


def max_in_window(times: list[float], width: float = 1.0) -> int:
    times = sorted(times)
    best, lower = 0, 0
    for upper, t in enumerate(times):
        while t - times[lower] >= width:
            lower += 1
        best = max(best, upper - lower + 1)
    return best


# The two threaded tests run on a clock 4x faster than real time (the limiter takes its clock
# and sleep as arguments): a 1-second window passes in 0.25 s of the test's time, with the same
# threads racing for the same slots. A late thread only lengthens the span its call counts for
# (from its grant until a window after `ended()`), so a slower machine cannot hide an excess.
SPEED = 4.0


def fast_clock() -> float:
    return time.monotonic() * SPEED


def fast_sleep(seconds: float) -> None:
    time.sleep(seconds / SPEED)


def run(
    limiter: RateLimiter, clock: Callable[[], float], seconds: float, threads: int
) -> list[float]:
    """Admission times on `clock` of `threads` threads calling for `seconds` of that clock."""
    admitted: list[float] = []
    lock = threading.Lock()
    deadline = clock() + seconds

    def worker() -> None:
        while clock() < deadline:
            assert limiter.acquire()
            with lock:
                admitted.append(clock())
            limiter.ended()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 5)
    return admitted


def test_paced_calls_fill_but_never_exceed_the_rate() -> None:
    limiter = RateLimiter(20, clock=fast_clock, sleep=fast_sleep)
    admitted = run(limiter, fast_clock, 2.5, threads=12)
    assert max_in_window(admitted) <= 20
    assert len(admitted) >= 40  # about 19.4/s for 2.5 s


def test_a_stall_does_not_let_late_sleepers_burst() -> None:
    """The process freezes for 0.6 s while callers hold slots: their turns all come due at once.

    Modelled with a clock that jumps: the sleepers' slots are suddenly in the past while new
    callers are paced from the new now. Admissions must still respect the window.
    """
    jump = [0.0]

    def clock() -> float:
        return fast_clock() + jump[0]

    limiter = RateLimiter(20, clock=clock, sleep=fast_sleep)
    freezer = threading.Timer(1.0 / SPEED, lambda: jump.__setitem__(0, 0.6))
    freezer.start()
    admitted = run(limiter, clock, 3.0, threads=16)
    freezer.join()
    assert max_in_window(admitted) <= 20


def test_a_granted_call_counts_until_it_ended_or_is_released() -> None:
    now = [100.0]
    limiter = RateLimiter(3, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(3):
        assert limiter.acquire()
    # Three granted and none ended: a fourth must wait although none may have reached the
    # server yet.
    assert limiter._admit() > 0
    limiter.release()  # one failed before reaching the transport
    assert limiter._admit() == 0.0
    limiter.ended()
    limiter.ended()
    limiter.ended()
    assert limiter._admit() > 0  # three ended within the window
    now[0] += 1.1
    assert limiter._admit() == 0.0


def test_aimd_cuts_on_throttling_and_recovers() -> None:
    now = [0.0]
    limiter = RateLimiter(40, clock=lambda: now[0], policy=RatePolicy(recovery_s=2.0))
    limiter.on_throttled()
    assert limiter.rate == 28
    limiter.on_throttled()  # within the same second: one cut only
    assert limiter.rate == 28
    now[0] = 1.5
    limiter.on_throttled()
    assert round(limiter.rate, 6) == 19.6
    now[0] = 3.0
    limiter.on_success()  # only 1.5 s since the last cut: no raise yet
    assert round(limiter.rate, 6) == 19.6
    raises = 0
    for step in range(1, 40):
        now[0] = 3.0 + step
        before = limiter.rate
        limiter.on_success()
        raises += limiter.rate > before
    assert limiter.rate == 40
    assert raises == 21  # +1 per second from 19.6 up to the ceiling
    assert limiter.throttle_events == 2
