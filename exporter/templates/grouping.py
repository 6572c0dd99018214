"""Whether one call can read every language of a template, and the read groups that follow.

By default every template-language unit is read on its own (`per-language`): one call per unit
per poll, so an account's physical limit is template-languages / qps. If GetChatappTemplateMetric
called without `Language` answers one row per language whose counts equal the per-language
answers, one call can read all of a template's languages (`per-template`), and the limit becomes
templates / qps. `Grouping.verify` decides it on evidence: for up to three templates with several
languages it reads each language, then the template without `Language`, then each language
again, and requires every language's counts without `Language` to lie between its two
per-language readings (counts only grow, so a live account cannot fake a match or a mismatch)
with some activity to compare. It runs on the first cycle and again every `discovery_interval`
(one template then); a failed re-check falls back to per-language at once. A log line and
`cams_poll_units{mode}` say which mode is in force.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence

from exporter.cams.answers import normal_language
from exporter.cams.context import AccountContext
from exporter.cams.errors import CamsError
from exporter.cams.model import DAY_MS, MetricRow
from exporter.counting.state import Tally
from exporter.counting.strategies import floor_to
from exporter.templates.discovery import Unit

log = logging.getLogger("cams_exporter.poller")

PER_LANGUAGE = "per-language"
PER_TEMPLATE = "per-template"
CHECKED_TEMPLATES = 3  # templates whose answers a first check compares

TemplateKey = tuple[str, str, str, str]  # (space, template code, template type, account)


def template_of(unit: Unit) -> TemplateKey:
    """The template a unit belongs to."""
    k = unit.key
    return (k.space, k.template_code, k.template_type, k.account)


def _by_template(units: Sequence[Unit]) -> dict[TemplateKey, list[Unit]]:
    out: dict[TemplateKey, list[Unit]] = {}
    for unit in units:
        out.setdefault(template_of(unit), []).append(unit)
    return out


def _fields(tally: Tally) -> tuple[int, ...]:
    return (tally.sent, tally.delivered, tally.read, *sorted(tally.clicks.values()))


def _between(low: Tally, middle: Tally, high: Tally) -> bool:
    """Every count of `middle` lies between the same count of `low` and `high`."""
    if not low.sent <= middle.sent <= high.sent:
        return False
    if not low.delivered <= middle.delivered <= high.delivered:
        return False
    if not low.read <= middle.read <= high.read:
        return False
    keys = set(low.clicks) | set(middle.clicks) | set(high.clicks)
    return all(
        low.clicks.get(k, 0) <= middle.clicks.get(k, 0) <= high.clicks.get(k, 0) for k in keys
    )


class Grouping:
    """The read mode of one account (per-language or per-template) and its evidence."""

    def __init__(self, context: AccountContext) -> None:
        self.account, self.client = context.account.name, context.client
        self.poll, self.clock = context.poll, context.clock
        self.mode = PER_LANGUAGE
        self._checked_at: float | None = None
        self._lock = threading.Lock()

    def groups(self, units: Sequence[Unit]) -> list[list[Unit]]:
        """What each read covers: one unit, or every language of a template."""
        if self.mode == PER_LANGUAGE:
            return [[unit] for unit in units]
        return list(_by_template(units).values())

    def adopt(self, other: Grouping) -> None:
        """Carry another account poller's mode and evidence over (after a reload)."""
        with other._lock:
            self.mode, self._checked_at = other.mode, other._checked_at

    def forget(self) -> None:
        """Drop the evidence: the next cycle gathers it again."""
        with self._lock:
            self._checked_at = None

    def due(self) -> bool:
        """Whether the evidence should be (re)gathered now."""
        checked = self._checked_at
        return checked is None or self.clock() - checked >= self.poll.discovery_interval_s

    def verify(self, units: Sequence[Unit]) -> None:
        """Gather the evidence and set the mode (see the module docstring)."""
        with self._lock:
            self._checked_at = self.clock()
            before = self.mode
            several = sorted(
                (group for group in _by_template(units).values() if len(group) > 1),
                key=lambda group: (-len(group), template_of(group[0])),
            )
            count = 1 if before == PER_TEMPLATE else CHECKED_TEMPLATES
            if not several:
                return  # nothing to gain: every template has one language
            verdicts = [self.matches(group) for group in several[:count]]
            if all(v is True for v in verdicts):
                self.mode = PER_TEMPLATE
            elif any(v is False for v in verdicts):
                self.mode = PER_LANGUAGE
            # inconclusive (no activity to compare): keep the mode in force
            if self.mode != before:
                log.info(
                    "GetChatappTemplateMetric %s: reading %s",
                    "answers one row per language without Language"
                    if self.mode == PER_TEMPLATE
                    else "without Language did not match the per-language answers",
                    "all languages of a template in one call (per-template)"
                    if self.mode == PER_TEMPLATE
                    else "each template-language on its own (per-language)",
                    extra={"account": self.account},
                )

    def _read(self, unit: Unit, language: str | None, start: int, end: int) -> list[MetricRow]:
        k = unit.key
        return list(
            self.client.metric_chunk(
                code=k.template_code,
                language=language,
                start_ms=start,
                end_ms=end,
                template_type=k.template_type,
                cust_space_id=unit.space.cust_space_id,
                isv_code=unit.space.isv_code,
                granularity=self.poll.granularity,
            )
        )

    def _one(self, unit: Unit, start: int, end: int) -> Tally:
        return self._tally(self._read(unit, unit.key.language, start, end))

    def matches(self, group: Sequence[Unit]) -> bool | None:
        """True: the template's answer without Language matches; False: it does not (or the
        API refused it); None: no activity to compare."""
        now_ms = int(self.clock() * 1000)
        start = floor_to(now_ms, DAY_MS) - 2 * DAY_MS
        code = group[0].key.template_code
        try:
            before = {
                u.key: self._tally(self._read(u, u.key.language, start, now_ms)) for u in group
            }
            together = self._read(group[0], None, start, now_ms)
            after = {
                u.key: self._tally(self._read(u, u.key.language, start, now_ms)) for u in group
            }
        except CamsError as error:
            log.info(
                "GetChatappTemplateMetric without Language refused (%s): reading per language",
                error.code,
                extra={"account": self.account, "template": code},
            )
            return False
        if any(row.template_code != code for row in together):
            return False
        active = False
        for unit in group:
            language = normal_language(unit.key.language)
            mine = self._tally(r for r in together if normal_language(r.language) == language)
            low, high = before[unit.key], after[unit.key]
            if not _between(low, mine, high):
                return False
            active = active or any(_fields(high))
        return True if active else None

    @staticmethod
    def _tally(rows: Iterable[MetricRow]) -> Tally:
        return Tally.of_rows(rows)
