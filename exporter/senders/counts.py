"""The per-number counters as the snapshot carries them (a frozen value, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NumberCounts:
    """The exported counters of one number (`read` None: the API sends no ReadCount)."""

    sent: int
    delivered: int
    read: int | None
    last_success: float | None = None
    last_error: str | None = None
