"""What the exporter learns about Meta's 7-day read window, per account: logged once, kept.

Three things follow from the window (`exporter.cams.model.READ_WINDOW_MS`), and each is logged once
per account (not once per template or day) and kept for the status page; the counts
themselves live in the unit states (`exporter.counting.state`) and are exported per account:
- a read-window reset held: reads and clicks of a bucket past the window fell while its sent
  and delivered stayed (`cams_read_window_resets_total`), expected, not an error;
- a settled day that changed when it was read again after folding
  (`cams_settled_bucket_changes_total`): the lookback was too short for this API, and the line
  says at what age the day changed and which lookback would have caught it;
- units whose read and click counters are complete only from a later time than their origin
  (`cams_read_counters_complete_since_timestamp_seconds`): days first read past the window
  with deliveries and no reads (a restart without state, or a long outage).
One log lives as long as the exporter (across reloads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from exporter.cams.model import DAY_MS
from exporter.config.schema import READ_WINDOW_LOOKBACK_S
from exporter.counting.state import SettledChange

log = logging.getLogger("cams_exporter.poller")

_KEEP = 50  # settled changes kept for the status page, newest first


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


def day_text(ms: int) -> str:
    """The UTC date (and time, when not midnight) of a bucket start."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d" if ms % DAY_MS == 0 else "%Y-%m-%d %H:%M")


def catching_lookback_days(change: SettledChange, bucket_ms: int) -> int:
    """The shortest lookback, in whole days, that would still have re-read the day when it
    changed: a bucket stays live while its age is under the lookback plus its own length."""
    return max(1, (change.age_ms - bucket_ms) // DAY_MS + 1)


class ReadWindowLog:
    """Logs once per account and keeps the recent settled changes; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._logged: set[tuple[str, str]] = set()  # (what, account)
        self._recent: deque[SettledChangeRecord] = deque(maxlen=_KEEP)

    def _first(self, what: str, account: str) -> bool:
        with self._lock:
            if (what, account) in self._logged:
                return False
            self._logged.add((what, account))
            return True

    def resets(self, account: str, buckets: int) -> None:
        """`buckets` read-window resets were just held for the account."""
        if buckets and self._first("reset", account):
            log.info(
                "reads and clicks of a day past Meta's 7-day read window fell while its sent and "
                "delivered stayed: the reset Meta documents; the values read before are held "
                "and the resets counted in cams_read_window_resets_total (logged once per "
                "account)",
                extra={"account": account},
            )

    def changes(
        self,
        fields: Mapping[str, str],
        changes: Sequence[SettledChange],
        lookback_s: float,
        bucket_ms: int,
    ) -> None:
        """Settled days of one unit (its log `fields`) that the API answered differently."""
        if not changes:
            return
        now = self._clock()
        records = [
            SettledChangeRecord(
                account=fields.get("account", ""),
                space=fields.get("space", ""),
                template=fields.get("template", ""),
                language=fields.get("language", ""),
                day=change.start_ms / 1000,
                folded_age_s=change.folded_age_ms / 1000,
                age_s=change.age_ms / 1000,
                before=change.before,
                after=change.after,
                lookback_days=catching_lookback_days(change, bucket_ms),
                at=now,
            )
            for change in changes
        ]
        with self._lock:
            self._recent.extendleft(records)
        account = records[0].account
        if not self._first("change", account):
            return
        first = changes[0]
        before, after = first.before, first.after
        log.warning(
            "a settled day changed when read again: %s was settled at %.1f days old and the API "
            "answered it differently at %.1f days (read %d -> %d, clicks %d -> %d, sent %d -> "
            "%d); poll.lookback %s is too short for this API, a lookback of at least %dd would "
            "have caught it (%s covers Meta's 7-day read window); the counters keep the settled "
            "values and count such days in cams_settled_bucket_changes_total (logged once per "
            "account)",
            day_text(first.start_ms),
            first.folded_age_ms / DAY_MS,
            first.age_ms / DAY_MS,
            before[2],
            after[2],
            before[3],
            after[3],
            before[0],
            after[0],
            f"{lookback_s / 86400:g}d",
            records[0].lookback_days,
            f"{READ_WINDOW_LOOKBACK_S / 86400:g}d",
            extra=dict(fields),
        )

    def incomplete(self, account: str, units: int, since_ms: int, warn: bool) -> None:
        """`units` of the account hold read and click counters complete only from `since_ms`:
        said once per account, at warn when `warn` (a fixed origin was rebuilt from the API)."""
        if not units or not self._first("incomplete", account):
            return
        log.log(
            logging.WARNING if warn else logging.INFO,
            "read and click counters of %d units are complete only from %s: days before it, "
            "past Meta's 7-day read window when first read, came back with deliveries and no "
            "reads (the API may answer those as 0); a state file (state.path) keeps them across "
            "restarts (cams_read_counters_complete_since_timestamp_seconds)",
            units,
            day_text(since_ms),
            extra={"account": account},
        )

    def recent(self) -> tuple[SettledChangeRecord, ...]:
        """The settled changes kept for the status page, newest first."""
        with self._lock:
            return tuple(self._recent)
