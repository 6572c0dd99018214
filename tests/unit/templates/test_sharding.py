"""--shard INDEX/COUNT: disjoint, complete and stable (each replica's share of the qps, polled
against a simulator, is in tests/e2e/test_sharding.py)."""

from __future__ import annotations

import pytest

from exporter.cams.model import UnitKey
from exporter.templates.sharding import Shard, shard_of


def units(n: int) -> list[UnitKey]:
    return [
        UnitKey("main", f"cams-{i % 7}", f"{i:032x}", ("en", "es", "pt")[i % 3], "WHATSAPP")
        for i in range(n)
    ]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_are_disjoint_and_cover_every_unit(count: int) -> None:
    keys = units(3000)
    owners = [[Shard(i, count).owns(k) for i in range(count)] for k in keys]
    assert all(sum(row) == 1 for row in owners)
    sizes = [sum(row[i] for row in owners) for i in range(count)]
    # Balanced within 15% of the fair share for 3000 units.
    assert max(sizes) <= 1.15 * len(keys) / count


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_growing_the_count_moves_only_the_units_that_must_move(count: int) -> None:
    keys = units(4000)
    moved = sum(shard_of(k, count) != shard_of(k, count + 1) for k in keys)
    # The ideal is 1/(count+1) of the units; rendezvous hashing moves exactly those taken by the
    # new shard, and never moves a unit between two old shards.
    assert moved <= 1.2 * len(keys) / (count + 1)
    for k in keys:
        after = shard_of(k, count + 1)
        assert after in (shard_of(k, count), count)


def test_templates_coming_and_going_do_not_move_other_units() -> None:
    keys = units(1000)
    before = {k: shard_of(k, 4) for k in keys}
    more = keys + units(1200)[1000:]
    fewer = more[::2]
    for k in fewer:
        assert shard_of(k, 4) == before.get(k, shard_of(k, 4))


@pytest.mark.parametrize("text", ["", "1", "2/2", "-1/3", "a/b", "0/0", "1/2/3"])
def test_bad_shard_specs_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        Shard.parse(text)
    assert "--shard" in str(caught.value) and "\n" not in str(caught.value)
