"""The GC policy: objects alive at a publish are frozen out of the collector's walks, and a
reference cycle frozen while alive is still collected at the periodic full collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from exporter.memory import GcPolicy


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_objects_alive_at_a_publish_are_frozen() -> None:
    policy = GcPolicy(refreeze_every=10)
    gc.unfreeze()
    policy.after_publish()
    assert gc.get_freeze_count() > 0
    before = gc.get_freeze_count()
    kept = [Node() for _ in range(1000)]
    policy.after_publish()
    assert gc.get_freeze_count() >= before + len(kept)
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
