"""`cams-exporter probe`: a bounded set of read-only calls that finds out how the real API
behaves on every open question of the API notes, for the account it is pointed at.

For each account (at most `MAX_CALLS` calls, paced by the account's `qps` and `list_qps`) it
asks: how ListChatappTemplate pages (largest `Page.Size` honoured, key case, `Total`'s type and
what it counts); what GetChatappTemplateMetric answers for three whole UTC days (one row per
day, one row per range, idle days left out), how its days are aligned (UTC, UTC+8, other),
whether rows are clipped to the query, whether `Start`/`End` are milliseconds; whether
`Language` may be omitted and what comes back then; whether `HALF_HOUR` works for templates;
the longest range accepted and the error for a longer one; how far back data goes; how late
the reads of a day still change and whether they reset after Meta's 7-day read window
(`exporter.probe.window`); and the throttling code and HTTP status seen, if any. Each
finding says what the exporter does about it; the report (`exporter.probe.report`) ends with
the settings it recommends. Nothing here writes anything or prints a secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from exporter.cams.actions import LIST_ACTION, METRIC_ACTION
from exporter.cams.answers import count_value, normal_language, parse_templates
from exporter.cams.client import CamsClient, RequestEvent
from exporter.cams.context import AccountContext
from exporter.cams.errors import CamsError, is_throttle_code
from exporter.cams.model import DAY_MS, HALF_HOUR_MS, Template, UnitKey
from exporter.config import Account, PollConfig, Space
from exporter.probe.findings import AccountReport, Finding, recommend
from exporter.probe.window import QUESTION as WINDOW_QUESTION
from exporter.probe.window import measure_read_window
from exporter.templates.discovery import Unit
from exporter.templates.grouping import Grouping

MAX_CALLS = 33
_WINDOW_TEMPLATES = 3  # templates whose last WINDOW_DAYS days are read for the read window
_UTC8_MS = 8 * 3_600_000
_RANGES_D = (30, 60, 90, 180, 365)
_SHORT_RANGES_D = (7, 1)  # tried when 30 days are refused
_SECONDS_LIMIT = 100_000_000_000


class BudgetSpent(Exception):
    """The probe made all the calls it allows itself for an account."""


def _day(now_ms: int) -> int:
    return now_ms - now_ms % DAY_MS


def _rows(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    data = body.get("Data")
    return [r for r in data if isinstance(r, Mapping)] if isinstance(data, list) else []


def _activity(rows: Sequence[Mapping[str, Any]]) -> int:
    total = 0
    for row in rows:
        for name in ("SentCount", "DeliveredCount", "ReadCount"):
            try:
                total += count_value(row.get(name))
            except CamsError:
                continue
    return total


def _bound(row: Mapping[str, Any], name: str) -> int:
    try:
        return count_value(row.get(name))
    except CamsError:
        return -1


class Prober:
    """Probes one account through its client; one call counted per attempt."""

    def __init__(
        self,
        account: Account,
        poll: PollConfig,
        client_factory: Callable[[Callable[[RequestEvent], None]], CamsClient],
        *,
        template: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account, self.poll, self.template, self.clock = account, poll, template, clock
        self.calls = 0
        self.throttles: list[tuple[str, int | None]] = []
        self.seen_codes: set[str] = set()  # template codes and names met (for --redact)
        self.seen_names: set[str] = set()
        self._lock = threading.Lock()
        self.client = client_factory(self._observe)
        self.space: Space = account.spaces[0]
        self._listed: list[Template] = []

    def _observe(self, event: RequestEvent) -> None:
        with self._lock:
            self.calls += 1
            if event.throttled or event.status == 429:
                self.throttles.append((event.code, event.status))

    def _call(self, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        if self.calls >= MAX_CALLS:
            raise BudgetSpent
        space = {"CustSpaceId": self.space.cust_space_id, "IsvCode": self.space.isv_code}
        query = {k: v for k, v in {**space, **params}.items() if v is not None}
        return self.client.call(action, query)

    def _metric(
        self, code: str, language: str | None, start: int, end: int, granularity: str = "DAILY"
    ) -> dict[str, Any]:
        params = {
            "TemplateCode": code,
            "Language": language,
            "TemplateType": "WHATSAPP",
            "Granularity": granularity,
            "Start": str(start),
            "End": str(end),
        }
        return self._call(METRIC_ACTION, {k: v for k, v in params.items() if v is not None})

    def _page(self, index: int, size: int, lower_case: bool = False) -> dict[str, Any]:
        keys = ("index", "size") if lower_case else ("Index", "Size")
        page = f'{{"{keys[0]}":{index},"{keys[1]}":{size}}}'
        return self._call(LIST_ACTION, {"Page": page})

    # -- the run -----------------------------------------------------------------------

    def run(self) -> AccountReport:
        """Ask every question the budget allows; never raises for an API answer."""
        findings: list[Finding] = []
        code, languages = "", tuple[str, ...]()
        refused: str | None = None
        try:
            listing, templates = self._listing()
            self._listed = list(templates)
            findings.append(listing)
            code, languages = self._pick(templates)
            if code:
                findings.extend(self._metric_questions(code, languages))
        except BudgetSpent:
            findings.append(
                Finding("budget", "not every question was asked", f"{MAX_CALLS} calls made", "")
            )
        except CamsError as error:
            if not findings:
                refused = f"{error.code}: {error.message}" if error.message else error.code
            findings.append(Finding("error", "the API refused a call", str(error), ""))
        findings.append(self._throttling())
        return AccountReport(
            account=self.account.name,
            endpoint=self.account.endpoint,
            template=code,
            languages=tuple(languages),
            calls=self.calls,
            findings=tuple(findings),
            recommended=recommend(findings, self.poll),
            refused=refused,
        )

    def _metric_questions(self, code: str, languages: Sequence[str]) -> list[Finding]:
        asked: list[Callable[[], Finding]] = [
            lambda: self._shape(code, languages[0]),
            lambda: self._clipping(code, languages[0]),
            lambda: self._language(code, languages),
            lambda: self._half_hour(code, languages[0]),
        ]
        out = [question() for question in asked]
        longest = self._longest_range(code, languages[0])
        out.append(longest)
        longest_days = int(longest.data.get("days", 0) or 0)
        omittable = bool(out[2].data.get("per_template"))
        out.append(self._read_window(code, languages, omittable, out[0], longest_days or 1))
        out.append(self._retention(code, languages[0], longest_days))
        return out

    # -- ListChatappTemplate -------------------------------------------------------------

    def _listing(self) -> tuple[Finding, list[Template]]:
        first = self._page(1, 100)
        rows = list(parse_templates(first))
        self.seen_codes.update(r.code for r in rows)
        self.seen_names.update(r.name for r in rows if r.name)
        raw_total = first.get("Total")
        total_type = "absent" if raw_total is None else type(raw_total).__name__
        total = count_value(raw_total) if raw_total is not None else None
        n = len(rows)
        codes = len({r.code for r in rows})
        data: dict[str, Any] = {"rows_page_1": n, "total": total, "total_type": total_type}
        if total is not None and n < min(100, total):
            size = f"capped at {n} (asked 100, Total {total})"
            data["largest_page_size"] = n
        else:
            size = f"at least {n} (asked 100; {total} in all)"
            data["largest_page_size"] = n if n < 100 else 100
        keys = "not tested (fewer than two rows)"
        if n >= 2:
            second = list(parse_templates(self._page(2, 1)))
            if [(r.code, r.language) for r in second] == [(rows[1].code, rows[1].language)]:
                keys = "the SDK's Index/Size"
            else:
                lower = list(parse_templates(self._page(2, 1, lower_case=True)))
                wanted = [(rows[1].code, rows[1].language)]
                found = [(r.code, r.language) for r in lower] == wanted
                keys = "lower-case index/size only" if found else "neither spelling pages"
        data["page_keys"] = keys
        counts = "unknown (more than one page)"
        if total is not None and n >= total:
            counts = "template-language rows" if total == n else "templates"
        elif total is not None and codes >= total and n > total:
            counts = "templates"
        data["total_counts"] = counts
        finding = Finding(
            "ListChatappTemplate paging",
            f"page size {size}; keys: {keys}; Total is {total_type}, counting {counts}",
            f"page 1 of 100 gave {n} rows of {codes} templates, Total {raw_total!r}",
            "pages until an empty page or Total templates, goes on with the size a server "
            "caps pages at, and switches to lower-case keys if only those page",
            data,
        )
        return finding, rows

    def _pick(self, templates: Sequence[Template]) -> tuple[str, tuple[str, ...]]:
        by_code: dict[str, list[Template]] = {}
        for t in templates:
            by_code.setdefault(t.code, []).append(t)
        if self.template:
            listed = by_code.get(self.template, [])
            languages = tuple(t.language for t in listed)
            if not languages:
                languages = tuple(
                    spec.language for spec in self.space.templates if spec.code == self.template
                )
            return self.template, languages or ("en",)
        if not by_code:
            specs = self.space.templates
            if not specs:
                return "", ()
            return specs[0].code, tuple(s.language for s in specs if s.code == specs[0].code)
        best = max(
            by_code.values(),
            key=lambda ts: (len(ts), ts[0].category.upper() == "MARKETING", ts[0].code),
        )
        return best[0].code, tuple(t.language for t in best)

    # -- GetChatappTemplateMetric --------------------------------------------------------

    def _shape(self, code: str, language: str) -> Finding:
        now = int(self.clock() * 1000)
        start, end = _day(now) - 3 * DAY_MS, _day(now)
        rows = _rows(self._metric(code, language, start, end))
        starts = [_bound(r, "Start") for r in rows]
        lengths = [_bound(r, "End") - s for r, s in zip(rows, starts, strict=True)]
        seconds = bool(starts) and all(0 <= s < _SECONDS_LIMIT for s in starts)
        unit = 1000 if seconds else 1
        data: dict[str, Any] = {"rows": len(rows), "units": "seconds" if seconds else "ms"}
        if not rows:
            shape = "no rows (no activity in the window, or idle days left out)"
        elif len(rows) == 1 and lengths[0] * unit > DAY_MS * 3 // 2:
            shape = "one row for the whole range (aggregate)"
        elif all(abs(n * unit - DAY_MS) <= unit for n in lengths):
            idle = sum(1 for r in rows if _activity([r]) == 0)
            if len(rows) < 3:
                shape = f"one row per day, {3 - len(rows)} idle day(s) left out (sparse)"
            elif idle:
                shape = f"one row per day, idle days as zero rows ({idle} here)"
            else:
                shape = "one row per day (no idle day in the window to tell how those come)"
        else:
            shape = "rows of other lengths: " + ", ".join(
                f"{n * unit / 3.6e6:g} h" for n in lengths
            )
        data["shape"] = shape
        offsets = sorted({(s * unit) % DAY_MS for s in starts if s >= 0})
        if not offsets:
            alignment = "unknown (no rows)"
        elif offsets == [0]:
            alignment = "UTC"
        elif offsets == [DAY_MS - _UTC8_MS]:
            alignment = "UTC+8"
        else:
            alignment = "other: days start at " + ", ".join(
                f"{o / 3.6e6:g}:00 UTC" for o in offsets
            )
        data["alignment"] = alignment
        exporter = {
            "aggregate": "switches to per-day reads (exact)",
            "seconds": "flags every answer (outside_range): Start/End must be milliseconds",
        }
        action = "reads each row as a bucket keyed by its own Start (exact)"
        if "aggregate" in shape:
            action = exporter["aggregate"]
        if seconds:
            action = exporter["seconds"]
        elif alignment.startswith("other"):
            action = "reads buckets on any quarter-hour boundary, as long as it does not change"
        return Finding(
            "GetChatappTemplateMetric answer shape",
            f"{shape}; days aligned to {alignment}; Start/End in {data['units']}",
            f"{len(rows)} rows for 3 whole UTC days of {code} ({language})",
            action,
            data,
        )

    def _clipping(self, code: str, language: str) -> Finding:
        now = int(self.clock() * 1000)
        start = _day(now) - 2 * DAY_MS + 6 * 3_600_000
        rows = _rows(self._metric(code, language, start, start + DAY_MS))
        starts = sorted(_bound(r, "Start") for r in rows)
        if not starts:
            answer, clipped = "unknown (no rows for a range starting at 06:00 UTC)", None
        elif starts[0] == start:
            answer, clipped = "rows are clipped to the query (the first starts at 06:00)", True
        else:
            answer, clipped = "rows keep their bucket bounds (not clipped)", False
        return Finding(
            "Rows clipped to the queried range",
            answer,
            f"{len(rows)} rows for a 1-day range starting at 06:00 UTC",
            "queries start on bucket boundaries, so clipping changes nothing",
            {"clipped": clipped},
        )

    def _language(self, code: str, languages: Sequence[str]) -> Finding:
        now = int(self.clock() * 1000)
        start, end = _day(now) - 3 * DAY_MS, now
        try:
            rows = _rows(self._metric(code, None, start, end))
        except CamsError as error:
            if not error.code.startswith(("InvalidParameter", "MissingParameter")):
                raise
            return Finding(
                "Language omitted",
                f"refused ({error.code})",
                error.message,
                "reads each template-language on its own (per-language)",
                {"omittable": False},
            )
        named = {normal_language(str(r.get("Language"))) for r in rows if r.get("Language")}
        if (
            rows
            and len(named) < len({normal_language(lang) for lang in languages})
            and not all(r.get("Language") for r in rows)
        ):
            answer = "one row summing every language, without Language"
            verdict: bool | None = False
        else:
            units = [
                Unit(
                    UnitKey(self.account.name, self.space.label, code, lang, "WHATSAPP"), self.space
                )
                for lang in languages[:3]
            ]
            context = AccountContext(self.account, self.poll, self.client, self.clock)
            verdict = Grouping(context).matches(units) if len(units) > 1 else None
            answer = {
                True: "one row per language, summing to the per-language answers",
                False: "rows per language that do not match the per-language answers",
                None: "rows per language (too little activity, or one language, to compare)",
            }[verdict]
        return Finding(
            "Language omitted",
            answer,
            f"{len(rows)} rows naming {len(named)} languages for {code}",
            "reads all languages of a template in one call (per-template)"
            if verdict
            else "reads each template-language on its own (per-language)",
            {"omittable": True, "per_template": bool(verdict)},
        )

    def _half_hour(self, code: str, language: str) -> Finding:
        now = int(self.clock() * 1000)
        start = _day(now) - DAY_MS
        try:
            rows = _rows(self._metric(code, language, start, start + DAY_MS, "HALF_HOUR"))
        except CamsError as error:
            if not error.code.startswith("InvalidParameter"):
                raise
            return Finding(
                "HALF_HOUR for templates",
                f"refused ({error.code})",
                error.message,
                "use granularity DAILY (the default)",
                {"works": False},
            )
        lengths = {_bound(r, "End") - _bound(r, "Start") for r in rows}
        works = bool(rows) and lengths <= {HALF_HOUR_MS, HALF_HOUR_MS - 1}
        answer = (
            f"works: {len(rows)} half-hour rows for a day"
            if works
            else f"accepted, but rows of {sorted(lengths)} ms ({len(rows)} rows)"
        )
        return Finding(
            "HALF_HOUR for templates",
            answer,
            f"{len(rows)} rows for one UTC day",
            "HALF_HOUR is usable (best effort); DAILY stays the default"
            if works
            else "use granularity DAILY (the default)",
            {"works": works},
        )

    def _read_window(
        self,
        code: str,
        languages: Sequence[str],
        omittable: bool,
        shape: Finding,
        longest_days: int,
    ) -> Finding:
        """The last WINDOW_DAYS whole days of a few templates (every language of each in one
        call when the API proved it answers per language, else the probed template's languages
        one by one), summed by age: see `exporter.probe.window`."""
        if "aggregate" in str(shape.data.get("shape", "")):
            return Finding(
                WINDOW_QUESTION,
                "not measured: the API sums a range into one row, and a read per day and "
                "template would spend the probe's budget",
                "the answer shape",
                "re-reads poll.lookback days (8d covers the 7-day window) and each settled day "
                "once more, counting a change (cams_settled_bucket_changes_total)",
                {"lookback_days": 8},
            )
        reads: Sequence[tuple[str, str | None]]
        if omittable:
            codes = [code] + [t.code for t in self._listed if t.code != code]
            reads = [(c, None) for c in dict.fromkeys(codes)][:_WINDOW_TEMPLATES]
        else:
            reads = [(code, language) for language in languages[:_WINDOW_TEMPLATES]]
        today = _day(int(self.clock() * 1000))
        return measure_read_window(self._metric, reads, today, longest_days)

    def _longest_range(self, code: str, language: str) -> Finding:
        end = _day(int(self.clock() * 1000))
        accepted = 0
        refusal = ""
        ranges = list(_RANGES_D)
        while ranges:
            days = ranges.pop(0)
            try:
                self._metric(code, language, end - days * DAY_MS, end)
            except CamsError as error:
                if not error.code.startswith("InvalidParameter"):
                    raise
                refusal = refusal or f"{days}d: {error.code}: {error.message}"
                if accepted or days <= 1:
                    break
                ranges = [d for d in _SHORT_RANGES_D if d < days]  # shorter ones, then stop
                continue
            accepted = days
            if days < _RANGES_D[0]:
                break
        answer = (f"{accepted}d accepted" if accepted else "every range tried was refused") + (
            f"; refused {refusal}" if refusal else " (the longest tried)"
        )
        return Finding(
            "Longest Start..End accepted",
            answer,
            "ranges of 30d, 60d, 90d, 180d, 365d ending today (7d and 1d if 30d is refused)",
            f"splits longer spans into poll.max_range chunks (refused: {refusal or 'none'})",
            {"days": accepted, "refusal": refusal},
        )

    def _retention(self, code: str, language: str, longest_days: int) -> Finding:
        step_days = min(longest_days or 30, 90)
        end = _day(int(self.clock() * 1000))
        newest_empty = None
        oldest_active = 0
        for k in range(5):
            upper = end - k * step_days * DAY_MS
            rows = _rows(self._metric(code, language, upper - step_days * DAY_MS, upper))
            if _activity(rows):
                oldest_active = (k + 1) * step_days
            elif newest_empty is None and k > 0:
                newest_empty = k * step_days
                break
        if oldest_active and newest_empty:
            answer = f"activity up to {oldest_active} days back, none {newest_empty}+ days back"
        elif oldest_active:
            answer = f"activity at least {oldest_active} days back"
        else:
            answer = "no activity found for this template"
        return Finding(
            "How far back data goes",
            answer,
            f"windows of {step_days}d going back from today for {code} ({language})",
            "counters_since must be within this reach to backfill exactly",
            {"days": oldest_active},
        )

    def _throttling(self) -> Finding:
        if not self.throttles:
            return Finding(
                "Throttling",
                "none seen",
                f"{self.calls} calls at qps {self.account.qps:g} / list_qps "
                f"{self.account.list_qps:g}",
                "",
            )
        seen = sorted({f"{code} (HTTP {status})" for code, status in self.throttles})
        known = all(is_throttle_code(code) for code, _ in self.throttles)
        return Finding(
            "Throttling",
            "seen: " + ", ".join(seen),
            f"{len(self.throttles)} of {self.calls} calls throttled",
            "backs off, retries and lowers its pace"
            if known
            else "does NOT recognise this code as throttling: report it",
            {"codes": seen},
        )
