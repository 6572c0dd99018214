"""Entries gone from a listing: kept through one more listing of their space, then dropped.

Template discovery (ListChatappTemplate) and phone-number discovery (QueryChatappPhoneNumbers)
merge each new listing with what they knew the same way: an entry of a space that was not
listed afresh (its listing failed or was incomplete) is kept as it was; an entry missing from
a fresh listing is kept once more, and dropped when the next fresh listing misses it too.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Protocol, TypeVar


class InSpace(Protocol):
    """A key that names the space it belongs to (`UnitKey`, `NumberKey`)."""

    @property
    def space(self) -> str: ...


K = TypeVar("K", bound=InSpace)
V = TypeVar("V")


def merge_listing(
    found: dict[K, V], known: Mapping[K, V], missing: dict[K, int], fresh: Container[str]
) -> list[K]:
    """Add to `found` (the new listing) what of `known` it still keeps, counting misses in
    `missing` (both updated in place); the keys dropped, in the order of `known`."""
    for key in found:
        missing.pop(key, None)
    dropped: list[K] = []
    for key, value in known.items():
        if key in found:
            continue
        if key.space not in fresh:
            found[key] = value  # no fresh listing of its space: keep it
            continue
        misses = missing.get(key, 0) + 1
        if misses >= 2:
            missing.pop(key, None)
            dropped.append(key)
        else:
            missing[key] = misses
            found[key] = value
    return dropped
