"""The probe's read-window question: how late the reads of a sent day still change on this
account, and whether they reset after Meta's 7-day window (`exporter.model.READ_WINDOW_MS`).

One probe run sees each of the last `WINDOW_DAYS` whole UTC days once, at its own age, so
what it can tell comes from comparing days of different ages (summed over the templates read):
- the reset is plain to see: days 8 days old and older with deliveries and no reads at all,
  while younger days have reads;
- late reads show as a read share (reads / delivered) that grows with a day's age up to the
  age where it stops; but the share also varies from day to day with what was sent, so an age
  is named only when the older days agree with each other (their shares within
  `STEADY_SPREAD` of their mean) and the growth stands out of that spread. Otherwise the
  report says it cannot tell, shows the shares by age, and leaves it to the running exporter,
  which re-reads every settled day once and counts any change
  (`cams_settled_bucket_changes_total`).
The recommended lookback covers the window: 8d.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from exporter.cams.answers import count_value
from exporter.cams.errors import CamsError
from exporter.cams.model import DAY_MS
from exporter.config.schema import READ_WINDOW_LOOKBACK_S
from exporter.probe.findings import Finding

WINDOW_DAYS = 14  # whole UTC days read back from today (today itself is left out)
RESET_AGE_DAYS = 8  # a day this old has passed the 7 days after it
STEADY_SPREAD = 0.05  # the older days' read shares agree within this fraction of their mean
_LOW = 0.97  # a day whose share is below this fraction of the final one still grows
QUESTION = "Read window (late reads and their reset)"

Profile = Mapping[int, tuple[int, int]]  # age in whole days -> (delivered, read), summed


def _share(profile: Profile, age: int) -> float | None:
    delivered, read = profile.get(age, (0, 0))
    return read / delivered if delivered else None


def read_window_finding(profile: Profile, units: int) -> Finding:
    """What the days seen say, from their (delivered, read) sums by age (1..WINDOW_DAYS)."""
    ages = sorted(age for age, (delivered, _) in profile.items() if delivered)
    old = [age for age in ages if age >= RESET_AGE_DAYS]
    young = [age for age in ages if age < RESET_AGE_DAYS]
    zero_old = [age for age in old if profile[age][1] == 0]
    read_young = [age for age in young if profile[age][1] > 0]
    shares = {age: _share(profile, age) for age in ages}
    shown = ", ".join(f"d{age} {100 * (shares[age] or 0):.0f}%" for age in ages)
    data: dict[str, Any] = {"shares": {age: shares[age] for age in ages}, "units": units}
    if not old or not read_young:
        reset: bool | None = None
        reset_text = "unknown (no delivered day 8 days old or older, or no reads in the week)"
    elif len(zero_old) == len(old):
        reset, reset_text = (
            True,
            (
                f"yes: the {len(old)} days 8 days old and older with deliveries show 0 reads "
                f"(the {len(read_young)} younger ones have reads)"
            ),
        )
    elif zero_old:
        reset, reset_text = True, f"in part: {len(zero_old)} of {len(old)} older days show 0 reads"
    else:
        reset, reset_text = False, f"no: the {len(old)} days 8 days old and older keep their reads"
    data["reset"] = reset
    # The final share: the older days' when they kept their reads, else the week's last ones.
    reference = old if reset is False else [a for a in young if a >= 5]
    ref_shares = [s for a in reference if (s := shares[a]) is not None and s > 0]
    late: int | None = None
    if len(ref_shares) >= 3:
        mean = sum(ref_shares) / len(ref_shares)
        spread = max(abs(s - mean) for s in ref_shares) / mean
        data["steady_spread"] = round(spread, 3)
        if spread <= STEADY_SPREAD:
            growing = [a for a in young if (s := shares[a]) is not None and s < _LOW * mean]
            late = max(growing, default=0)
    if late is None:
        late_text = (
            "cannot tell from one run: the read share varies from day to day more than late "
            "reads add"
        )
    elif late == 0:
        late_text = "no late reads seen: every day of the week already shows its final share"
    else:
        late_text = (
            f"a day still lacks more than {100 - round(100 * _LOW)}% of its final reads on "
            f"day +{late}"
        )
    data["late_reads_until_day"] = late
    # Days younger than 8 are all a probe can see growing: the window's lookback covers them.
    data["lookback_days"] = int(READ_WINDOW_LOOKBACK_S // 86400)
    return Finding(
        QUESTION,
        f"reset after day +7: {reset_text}; {late_text}",
        f"reads / delivered by age over the last {len(ages)} whole days of {units} "
        f"template-language units: {shown or 'no deliveries'}",
        "re-reads poll.lookback days every poll (8d covers the 7-day window), holds a reset "
        "and counts it (cams_read_window_resets_total), re-reads each settled day once and "
        "counts a change (cams_settled_bucket_changes_total)",
        data,
    )


# GetChatappTemplateMetric as the probe calls it: (code, language or None, start, end) -> body
Metric = Callable[[str, str | None, int, int], Mapping[str, Any]]


def _row_sums(row: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """(start, delivered, read) of a one-day row; None for anything else."""
    try:
        start, end = count_value(row.get("Start")), count_value(row.get("End"))
        delivered, read = count_value(row.get("DeliveredCount")), count_value(row.get("ReadCount"))
    except CamsError:
        return None
    return (start, delivered, read) if 0 < end - start <= DAY_MS * 3 // 2 else None


def measure_read_window(
    metric: Metric, reads: Sequence[tuple[str, str | None]], today_ms: int, longest_days: int
) -> Finding:
    """Read the last WINDOW_DAYS whole days of each (code, language or None for every
    language), in ranges of at most `longest_days` (the longest the API accepted), and judge
    them (`read_window_finding`)."""
    profile: dict[int, tuple[int, int]] = {}
    units: set[tuple[str, str]] = set()
    step = max(1, min(WINDOW_DAYS, longest_days)) * DAY_MS
    first = today_ms - WINDOW_DAYS * DAY_MS
    rows: list[tuple[str, str | None, Any]] = []
    for code, language in reads:
        for lower in range(first, today_ms, step):
            data = metric(code, language, lower, min(today_ms, lower + step)).get("Data")
            rows.extend((code, language, row) for row in (data if isinstance(data, list) else []))
    for code, language, row in rows:
        sums = _row_sums(row) if isinstance(row, Mapping) else None
        if sums is None:
            continue
        start, delivered, read = sums
        age = (today_ms - start) // DAY_MS
        before = profile.get(age, (0, 0))
        profile[age] = (before[0] + delivered, before[1] + read)
        units.add((code, str(row.get("Language") or language or "")))
    return read_window_finding(profile, len(units))
