"""The immutable picture of everything the exporter knows, swapped in by the poller.

The collector and the web layer only ever read a `Snapshot`; they never call the API and never
wait on polling. A new snapshot replaces the old one with a single reference assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.counting.anomalies import AnomalyRecord
from exporter.counting.readwindow import SettledChangeRecord
from exporter.senders.view import SenderStatus
from exporter.templates.view import AccountStatus, TemplateSeries


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
        done = sum(a.cycle_units if a.first_cycle_complete else a.units_done for a in self.accounts)
        return done, sum(a.cycle_units for a in self.accounts)
