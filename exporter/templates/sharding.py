"""Deterministic sharding of work units across replicas (rendezvous hashing).

With `--shard INDEX/COUNT`, each replica polls only the units whose highest-scoring shard is its
own. Rendezvous hashing needs no shared state, gives every unit to exactly one shard, and when
COUNT changes only the units that must move do (about 1/COUNT of them).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from exporter.cams.model import UnitKey

_SPEC = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True, slots=True)
class Shard:
    """This replica's shard: `index` in 0..count-1."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`INDEX/COUNT`, e.g. `0/3`; ValueError with a one-line message otherwise."""
        match = _SPEC.match(text.strip())
        if not match:
            raise ValueError(f"--shard must be INDEX/COUNT such as 0/3, got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"--shard index must be in 0..COUNT-1 and COUNT >= 1, got {text!r}")
        return cls(index, count)

    def owns(self, key: UnitKey) -> bool:
        """Whether this shard polls the unit."""
        return self.count == 1 or shard_of(key, self.count) == self.index


def _score(key: UnitKey, shard: int) -> int:
    text = "\x1f".join(
        (key.account, key.space, key.template_code, key.language, key.template_type, str(shard))
    )
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def shard_of(key: UnitKey, count: int) -> int:
    """The shard (0..count-1) that owns `key` among `count` shards."""
    return max(range(count), key=lambda shard: _score(key, shard))
