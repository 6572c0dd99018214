"""Parameter checks the actions share: required parameters, and for the metric actions Start
and End in milliseconds, their longest range, and Granularity, answered with the errors the
real API gives for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cams_simulator.options import GRANULARITIES
from cams_simulator.wire import invalid, missing
from exporter.cams.model import DAY_MS, HALF_HOUR_MS
from exporter.config.durations import format_duration


def text_param(params: Mapping[str, str], name: str) -> str:
    """A required parameter, not empty."""
    value = params.get(name, "")
    if not value:
        raise missing(name)
    return value


def int_param(params: Mapping[str, str], name: str) -> int:
    """A required integer parameter (milliseconds since the epoch)."""
    value = params.get(name, "")
    if value == "":
        raise missing(name)
    try:
        return int(value)
    except ValueError:
        raise invalid(name, f"expected milliseconds since the epoch, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class MetricRange:
    """A checked metric query: [start_ms, end_ms) in buckets of bucket_ms."""

    granularity: str
    bucket_ms: int
    start_ms: int
    end_ms: int


def metric_range(params: Mapping[str, str], max_range_s: float) -> MetricRange:
    """Granularity, Start and End of a metric query, checked (ApiError otherwise)."""
    granularity = params.get("Granularity") or "DAILY"
    if granularity not in GRANULARITIES:
        raise invalid("Granularity", f"expected DAILY or HALF_HOUR, got {granularity!r}")
    start = int_param(params, "Start")
    end = int_param(params, "End")
    if end <= start:
        raise invalid("End", "End must be greater than Start")
    max_range_ms = int(max_range_s * 1000)
    if end - start > max_range_ms:
        raise invalid(
            "End",
            f"the time range End - Start must not exceed "
            f"{format_duration(max_range_s)} ({max_range_ms} ms)",
        )
    size = DAY_MS if granularity == "DAILY" else HALF_HOUR_MS
    return MetricRange(granularity, size, start, end)
