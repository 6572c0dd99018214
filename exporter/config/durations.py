"""Prometheus-style durations ("30s", "5m", "1h30m", "3d", "1w") parsed to seconds, as strictly
as Prometheus parses them (`5m5m` and `1s1h` are refused)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# As Prometheus' model.ParseDuration: units from the largest down, each at most once.
_ORDER = ("y", "w", "d", "h", "m", "s", "ms")
_WHOLE = re.compile("".join(rf"(?:(\d+){unit})?" for unit in _ORDER))


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; ValueError with a readable message when malformed."""
    value = text.strip()
    if value == "0":
        return 0.0
    match = _WHOLE.fullmatch(value)
    if not value or match is None:
        raise ValueError(
            f"invalid duration {text!r} (use e.g. 30s, 5m, 1h30m, 3d; "
            "units from the largest down, each once)"
        )
    return float(sum(int(n) * _UNITS[u] for n, u in zip(match.groups(), _ORDER, strict=True) if n))


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
