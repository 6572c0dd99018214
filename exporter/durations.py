"""Prometheus-style durations ("30s", "5m", "1h30m", "3d", "1w") parsed to seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_WHOLE = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; ValueError with a readable message when malformed."""
    value = text.strip()
    if not _WHOLE.match(value):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 1h, 3d)")
    return float(sum(int(n) * _UNITS[u] for n, u in _PART.findall(value)))


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for a whole number of seconds (used in messages)."""
    total = int(seconds)
    if total == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, total = divmod(total, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
