"""What `probe` found: one `Finding` per open question, an `AccountReport` per account, and
the settings the findings recommend. Frozen values, shared by the probe and its report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.config import PollConfig
from exporter.config.durations import format_duration


@dataclass(frozen=True, slots=True)
class Finding:
    """One open question: what the API answered, the evidence, what the exporter does."""

    question: str
    answer: str
    evidence: str
    exporter: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccountReport:
    """Everything the probe learned about one account."""

    account: str
    endpoint: str
    template: str  # the template probed ("" when none could be)
    languages: tuple[str, ...]
    calls: int
    findings: tuple[Finding, ...]
    recommended: Mapping[str, str]
    refused: str | None = None  # why the API refused the probe's calls, if it did


def recommend(findings: Sequence[Finding], poll: PollConfig) -> dict[str, str]:
    """The settings the findings suggest (max_range, granularity, lookback, counters_since)."""
    data = {f.question: f.data for f in findings}
    longest = int(data.get("Longest Start..End accepted", {}).get("days", 0) or 0)
    half = bool(data.get("HALF_HOUR for templates", {}).get("works"))
    out = {
        "max_range": f"{min(longest, 90)}d" if longest else format_duration(poll.max_range_s),
        "granularity": "DAILY" + (" (HALF_HOUR also works)" if half else ""),
        "lookback": _lookback(data.get("Read window (late reads and their reset)", {})),
    }
    reach = int(data.get("How far back data goes", {}).get("days", 0) or 0)
    if reach:
        out["counters_since"] = f"no earlier than {reach} days ago"
    return out


def _lookback(window: Mapping[str, Any]) -> str:
    """The lookback the read-window finding suggests (8d, Meta's window, when it says nothing)."""
    days = int(window.get("lookback_days", 8) or 8)
    why = "covers Meta's 7-day read and click window"
    if window.get("reset"):
        why += "; the reset after it is held and counted (cams_read_window_resets_total)"
    return f"{days}d ({why})"
