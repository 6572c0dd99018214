"""The garbage collector's policy for a long-running exporter that holds many live objects.

A big exporter keeps hundreds of thousands of long-lived objects (per-bucket counts, discovered
units, the published snapshot). CPython's full collections walk all of them while holding the
GIL: at 100k series a full pass took 300-800 ms and freed nothing (measured with a gc callback
in `bench/publish_scrapes.py`), and every scrape waiting in that time waited for it.

The young generation is also collected less often (every 20,000 net allocations instead of
700): answers are parsed into many short-lived objects that reference counting frees anyway,
and each collection is a pause for the threads waiting on the GIL.

So a publish runs with automatic collection paused, and after it the objects alive then are
frozen (`gc.freeze()`: moved out of the collector's reach), and collections only walk what is
newer. The exporter's data is acyclic, so what it drops is freed by reference counting at once,
frozen or not; only a reference cycle that was alive at a freeze and died later would wait, so
every `refreeze_every` publishes the frozen objects are unfrozen and one full collection runs
before freezing again.

Without this policy, /metrics p99 during publishes at 100k series reached 396 ms (target 250);
the GIL's switch interval is left at CPython's 5 ms: at 1 ms the p99 was lower (46-78 ms
against 123-184 ms) but within the target either way (docs/benchmarks-exposition.md).
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# Collection thresholds: young objects, then how many collections of each generation trigger
# one of the next.
THRESHOLDS = (20_000, 20, 20)


class GcPolicy:
    """Freezes after each publish, with a full collection every `refreeze_every` publishes."""

    @staticmethod
    def tune() -> None:
        """Set the collection thresholds (once per process)."""
        gc.set_threshold(*THRESHOLDS)

    def __init__(
        self, refreeze_every: int = 100, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every = refreeze_every
        self._clock = clock
        self._lock = threading.Lock()
        self._publishes = 0
        self.full_collections = 0
        self.last_full_s = 0.0  # how long the last full collection took

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No automatic collection while a publish builds and renders its snapshot.

        A publish makes hundreds of thousands of objects that live on (the snapshot, its
        rendering); each young collection in the meantime walks the ones made so far, and the
        older generations then walk them again, all holding the GIL while scrapes wait. They are
        frozen right after (`after_publish`), so collecting them first finds nothing.
        """
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if was_enabled:
                gc.enable()

    def after_publish(self) -> None:
        """Call after a new snapshot is in service (the old one is released)."""
        with self._lock:
            self._publishes += 1
            if self._publishes % self._every == 0:
                started = self._clock()
                gc.unfreeze()
                gc.collect()
                self.full_collections += 1
                self.last_full_s = self._clock() - started
            gc.freeze()


_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GcPauses(Collector):
    """`cams_exporter_gc_pause_seconds{generation}`: how long each collection held the GIL.

    # HELP cams_exporter_gc_pause_seconds Time each garbage collection took (the GIL is held...
    # TYPE cams_exporter_gc_pause_seconds histogram
    cams_exporter_gc_pause_seconds_bucket{generation="2",le="0.1"} 3.0

    The gc callback only adds to plain lists (it runs inside a collection, in whatever thread
    triggered it, so it must take no lock); `collect` turns them into a histogram.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = 0.0
        self._buckets = [[0] * len(_PAUSE_BUCKETS) for _ in range(3)]
        self._counts = [0, 0, 0]
        self._sums = [0.0, 0.0, 0.0]

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        pause = self._clock() - self._started
        generation = min(2, max(0, info.get("generation", 0)))
        self._counts[generation] += 1
        self._sums[generation] += pause
        buckets = self._buckets[generation]
        for index, bound in enumerate(_PAUSE_BUCKETS):
            if pause <= bound:
                buckets[index] += 1

    @property
    def collections(self) -> tuple[int, ...]:
        """How many collections of each generation were timed (changes after every one)."""
        return tuple(self._counts)

    def install(self) -> None:
        """Start timing collections."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        """Stop timing collections."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "cams_exporter_gc_pause_seconds",
            "Time each garbage collection took, holding the GIL (scrapes wait for it).",
            labels=["generation"],
        )
        for generation in range(3):
            cumulative = [
                (str(bound), float(count))
                for bound, count in zip(_PAUSE_BUCKETS, self._buckets[generation], strict=True)
            ]
            cumulative.append(("+Inf", float(self._counts[generation])))
            family.add_metric([str(generation)], cumulative, self._sums[generation])
        yield family
