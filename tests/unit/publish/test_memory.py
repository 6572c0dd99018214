"""The GC policy: objects alive at a publish are frozen out of the collector's walks, and a
reference cycle frozen while alive is still collected at the periodic full collection.

The process metrics: `process_*` fresh on every scrape, the garbage collector's families kept
until a collection runs, then rendered again."""

from __future__ import annotations

import gc
import gzip
import time
import weakref
from collections.abc import Iterator

import pytest

from exporter.publish.memory import GcPauses, GcPolicy
from exporter.publish.process_metrics import ProcessMetrics


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def collectable() -> set[int]:
    """The ids of the objects in the collector's generations (frozen ones are in none)."""
    return {id(o) for o in gc.get_objects()}


def test_objects_alive_at_a_publish_are_frozen() -> None:
    policy = GcPolicy(refreeze_every=10)
    gc.unfreeze()
    policy.after_publish()
    assert gc.get_freeze_count() > 0
    kept = [Node() for _ in range(1000)]
    assert all(id(node) in collectable() for node in kept)
    policy.after_publish()
    # out of the collector's walks: not in any generation (the count alone can fall meanwhile,
    # when another thread of the process frees objects frozen before)
    walked = collectable()
    assert not any(id(node) in walked for node in kept)
    assert policy.full_collections == 0


def test_a_cycle_frozen_while_alive_is_collected_at_the_full_collection() -> None:
    policy = GcPolicy(refreeze_every=3)
    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle: only the collector can free it
    gone = weakref.ref(a)
    policy.after_publish()  # frozen while alive
    del a, b
    gc.collect()
    assert gone() is not None  # out of the collector's reach while frozen
    policy.after_publish()
    assert gone() is not None
    policy.after_publish()  # the third publish: unfreeze, one full collection, freeze again
    assert gone() is None
    assert policy.full_collections == 1 and policy.last_full_s >= 0


def _sample(body: bytes, name: str) -> float:
    line = next(x for x in body.decode().splitlines() if x.startswith(name + " "))
    return float(line.split()[-1])


@pytest.mark.parametrize("openmetrics", [False, True])
def test_process_metrics_are_fresh_and_gc_families_kept_until_a_collection(
    openmetrics: bool,
) -> None:
    pauses = GcPauses()
    pauses.install()
    gc.disable()  # no automatic collection between the renders that expect the same bytes
    try:
        metrics = ProcessMetrics(pauses)
        (fresh, fresh_zipped), (kept, kept_zipped) = metrics.render(openmetrics)
        assert gzip.decompress(fresh_zipped) == fresh and gzip.decompress(kept_zipped) == kept
        assert b"process_open_fds" in fresh and b"python_gc_collections" not in fresh
        assert b"python_gc_collections" in kept and b"cams_exporter_gc_pause_seconds" in kept
        assert b"# EOF" not in fresh + kept
        cpu = "process_cpu_seconds_total"
        burn = time.process_time() + 0.05
        while time.process_time() < burn:
            pass
        (again, _), (same, same_zipped) = metrics.render(openmetrics)
        assert _sample(again, cpu) > _sample(fresh, cpu)  # read anew
        assert same is kept and same_zipped is kept_zipped  # no collection ran: the same bytes
        gc.collect()
        _, (after, _) = metrics.render(openmetrics)
        count = 'cams_exporter_gc_pause_seconds_count{generation="2"}'
        assert _sample(after, count) == _sample(kept, count) + 1
    finally:
        gc.enable()
        pauses.uninstall()
