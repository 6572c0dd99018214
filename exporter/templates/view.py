"""The frozen part of the `Snapshot` that template polling builds: one value per unit and
one per account, read by the exposition, the status page and /-/ready."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.cams.model import UnitKey
from exporter.counting.state import Counts


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
    idle_interval: float | None = None  # seconds between reads while idle; None: active


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """Polling status of one account, for /-/ready, the landing page and self-metrics."""

    name: str
    endpoint: str
    spaces: tuple[str, ...]
    units: int = 0  # every unit the account polls (active and idle)
    idle_units: int = 0  # of them, idle: read once per idle interval
    cycle_units: int = 0  # units the current (or last) cycle reads
    reads: int = 0  # reads of the cycle: units, or templates in per-template mode
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
    idle_interval: float | None = None  # poll.idle_interval; None: idle polling is off
    waking: bool = False  # idle units are read at once when their space's numbers grow
    woken: tuple[str, ...] = ()  # spaces woken in the current (or last) cycle
    wakes: int = 0  # spaces woken so far
