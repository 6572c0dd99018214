"""The immutable picture of everything the exporter knows, swapped in by the poller.

The collector and the web layer only ever read a `Snapshot`; they never call the API and never
wait on polling. A new snapshot replaces the old one with a single reference assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.model import UnitKey
from exporter.senders.view import SenderStatus


@dataclass(frozen=True, slots=True)
class Counts:
    """Cumulative counts of one unit. `clicks` is sorted ((button_type, button, count), ...)."""

    sent: int = 0
    delivered: int = 0
    read: int = 0
    clicks: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class TemplateSeries:
    """What is exported for one unit."""

    key: UnitKey
    name: str
    category: str
    audit_status: str
    counts: Counts
    last_success: float | None = None  # unix seconds of the last successful read
    newest_data: float | None = None  # unix seconds: start of the newest bucket with activity
    last_error: str | None = None  # error code of the last failed read, cleared on success


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """Polling status of one account, for /-/ready, the landing page and self-metrics."""

    name: str
    endpoint: str
    spaces: tuple[str, ...]
    units: int = 0  # units in the current (or last) cycle
    reads: int = 0  # reads per cycle: units, or templates in per-template mode
    mode: str = "per-language"  # per-language | per-template
    units_done: int = 0  # units finished in the current cycle
    first_cycle_complete: bool = False
    up: bool = False
    last_poll_success: float | None = None
    last_poll_duration: float | None = None
    last_error_code: str | None = None
    shape: str = "per-bucket"
    revisions_held: int = 0  # downward revisions held so far
    templates_discovered: tuple[tuple[str, int], ...] = ()  # (space, count)
    read_window_resets: int = 0  # buckets whose read-window reset was held
    settled_changes: int = 0  # settled days the API answered differently when re-read
    reads_complete_since: float | None = None  # unix seconds; None before any unit is read


@dataclass(frozen=True, slots=True)
class AnomalyRecord:
    """One anomaly, as the status page shows it."""

    account: str
    action: str
    kind: str
    detail: str
    space: str
    template: str
    language: str
    at: float  # unix seconds, the latest time it was seen
    count: int  # times seen for this subject and kind


@dataclass(frozen=True, slots=True)
class SettledChangeRecord:
    """A settled day the API answered differently when re-read, as the status page shows it;
    counts are (sent, delivered, read, clicks)."""

    account: str
    space: str
    template: str
    language: str
    day: float  # unix seconds: the bucket's start
    folded_age_s: float  # its age when it was settled
    age_s: float  # its age when it was read again
    before: tuple[int, int, int, int]
    after: tuple[int, int, int, int]
    lookback_days: int  # the shortest lookback that would have caught it
    at: float  # unix seconds, when it was seen


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a scrape or a page view needs, frozen."""

    generation: int = 0
    created: float = 0.0
    accounts: tuple[AccountStatus, ...] = ()
    series: tuple[TemplateSeries, ...] = field(default_factory=tuple)
    # `series` per account, in the same order (their concatenation is `series`); empty: one part
    parts: tuple[tuple[TemplateSeries, ...], ...] = ()
    anomalies: tuple[AnomalyRecord, ...] = ()  # recent answers not applied, newest first
    settled_changes: tuple[SettledChangeRecord, ...] = ()  # recent, newest first
    senders: tuple[SenderStatus, ...] = ()  # accounts with sender_health, in config order

    @property
    def ready(self) -> bool:
        """True once every account has completed its first poll cycle."""
        return bool(self.accounts) and all(a.first_cycle_complete for a in self.accounts)

    @property
    def progress(self) -> tuple[int, int]:
        """(units done, units total) of the first cycle, over every account."""
        done = sum(a.units if a.first_cycle_complete else a.units_done for a in self.accounts)
        return done, sum(a.units for a in self.accounts)
