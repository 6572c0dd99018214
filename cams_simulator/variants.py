"""Answer variants: plausible ways the real API may answer that its reference page does not rule
out, played on request (`--variant NAME[=P],...`, P the share of answers it applies to).

Each variant transforms an honest answer (rows, pages, bodies or bytes) just before it is sent,
so the exporter and `probe` can be tested against every one: read exactly, or flagged as an
anomaly, never silently wrong. `VARIANTS` documents them all (the table of docs/simulator.md is
built from it).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from exporter.cams.model import DAY_MS

# name -> (what the API does, the share of answers by default)
VARIANTS: Final[Mapping[str, tuple[str, float]]] = {
    # GetChatappTemplateMetric rows and values
    "surrogate-button": ("a button text holds a lone UTF-16 surrogate (\\ud83d)", 1.0),
    "control-chars": ("template names and button texts hold control characters", 1.0),
    "invalid-utf8": ("a button text holds bytes that are not UTF-8", 1.0),
    "count-strings": ('counts come as strings and floats ("10", "10.0", 10.0)', 1.0),
    "count-fraction": ('a count is not whole ("10.5")', 1.0),
    "negative-count": ("a count is negative", 1.0),
    "duplicate-rows": ("every row comes twice", 1.0),
    "other-languages": ("rows of every language come even when Language is given", 1.0),
    "other-templates": ("rows of another template come too", 1.0),
    "language-spelling": ("Language is spelled differently (pt_BR as PT-BR)", 1.0),
    "clipped": ("rows are clipped to the queried range", 1.0),
    "inclusive-end": ("End is the last millisecond of the bucket (End - 1)", 1.0),
    "summary-row": ("a row summing the whole range follows the per-day rows", 1.0),
    "seconds": ("Start and End are in seconds", 1.0),
    "end-windows": ("rows are 24-hour windows counted back from the query's End", 1.0),
    "utc8-flip": ("each answer's days are aligned to UTC or to UTC+8, at random", 0.5),
    "outside-row": ("a row of a day outside the queried range comes too", 1.0),
    "bad-bounds": ("a row's End equals its Start", 1.0),
    "success-false": ("HTTP 200, Code OK, but Success false", 1.0),
    "missing-data": ("HTTP 200, Code OK, no Data", 1.0),
    "null-data": ("HTTP 200, Code OK, Data null", 1.0),
    "language-required": ("Language may not be omitted (MissingParameter)", 1.0),
    "language-summed": ("without Language, one row sums every language (no Language)", 1.0),
    "half-hour-refused": ("Granularity HALF_HOUR is refused (InvalidParameter)", 1.0),
    # ListChatappTemplate
    "page-cap": ("Page.Size is capped at 10", 1.0),
    "lowercase-page": ("only lower-case Page keys (index, size) are honoured", 1.0),
    "total-string": ('Total is a string ("37")', 1.0),
    "total-missing": ("Total is absent", 1.0),
    "total-codes": ("Total counts templates, not template-language rows", 1.0),
    "list-success-false": ("ListChatappTemplate answers Success false", 1.0),
    "list-empty": ("ListChatappTemplate answers an empty list", 1.0),
    # GetChatappPhoneNumberMetric (the row and body variants above apply to its answers too)
    "number-no-read-count": ("GetChatappPhoneNumberMetric rows carry no ReadCount", 1.0),
    # flow control
    "throttle-429": ("throttling is HTTP 429 Throttling.User with x-acs-retry-after", 1.0),
}
# Marks a button text that is to hold raw non-UTF-8 bytes once encoded.
BAD_BYTES_MARK: Final = "\ue000"


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """The variants in force, each with the share of answers it applies to."""

    shares: tuple[tuple[str, float], ...] = ()

    def __contains__(self, name: str) -> bool:
        return any(n == name for n, _ in self.shares)


def parse_fraction(text: str, what: str) -> float:
    """`text` as a number from 0 to 1 (a share or a probability); ValueError `{what} must ...`."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be between 0 and 1")
    return value


def parse_variants(spec: str) -> VariantSpec:
    """`name[=share],...`; ValueError naming the bad item."""
    shares: dict[str, float] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, text = (part.strip() for part in item.partition("="))
        if name not in VARIANTS:
            raise ValueError(f"variant {item!r}: unknown (known: {', '.join(VARIANTS)})")
        if name in shares:
            raise ValueError(f"variant {item!r}: {name} is given twice")
        shares[name] = (
            parse_fraction(text, f"variant {item!r}: the share") if sep else VARIANTS[name][1]
        )
    return VariantSpec(tuple(shares.items()))


class Variants:
    """The variants in force and their seeded draws; thread-safe."""

    def __init__(self, spec: VariantSpec, seed: int) -> None:
        self._shares = dict(spec.shares)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def on(self, name: str) -> bool:
        """Whether `name` applies to this answer (a draw when its share is below 1)."""
        share = self._shares.get(name)
        if share is None:
            return False
        if share >= 1.0:
            return True
        with self._lock:
            return self._rng.random() < share

    def any(self) -> bool:
        """Whether any variant is in force."""
        return bool(self._shares)

    # -- GetChatappTemplateMetric --------------------------------------------------------

    def rows(self, rows: list[dict[str, Any]], start: int, end: int) -> list[dict[str, Any]]:
        """The row-level variants, applied to one template-language's honest rows."""
        out = [dict(row, Cliented=[dict(c) for c in row["Cliented"]]) for row in rows]
        if self.on("end-windows"):
            out = _end_windows(out, start, end)
        if self.on("clipped"):
            for row in out:
                row["Start"], row["End"] = max(row["Start"], start), min(row["End"], end)
        if self.on("inclusive-end"):
            for row in out:
                row["End"] -= 1
        if self.on("seconds"):
            for row in out:
                row["Start"] //= 1000
                row["End"] //= 1000
        if self.on("language-spelling"):
            for row in out:
                row["Language"] = str(row["Language"]).replace("_", "-").upper()
        self._texts(out)
        self._counts(out)
        if out and self.on("bad-bounds"):
            out[-1]["End"] = out[-1]["Start"]
        if len(out) >= 2 and self.on("summary-row"):
            out.append(_summary(out, start, end))
        if self.on("duplicate-rows"):
            out = out + [dict(row) for row in out]
        return out

    def _texts(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            for click in row["Cliented"]:
                if self.on("surrogate-button"):
                    click["ButtonContent"] = f"{click['ButtonContent']} \ud83d"
                if self.on("control-chars"):
                    click["ButtonContent"] = f"{click['ButtonContent']}\x07\n"
                if self.on("invalid-utf8"):
                    click["ButtonContent"] = f"{click['ButtonContent']} {BAD_BYTES_MARK}"

    def _counts(self, rows: list[dict[str, Any]]) -> None:
        if self.on("count-strings"):
            forms = (str, lambda v: f"{v}.0", float)
            for index, row in enumerate(rows):
                form = forms[index % 3]
                for name in ("SentCount", "DeliveredCount", "ReadCount"):
                    row[name] = form(row[name])
                for click in row["Cliented"]:
                    click["Count"] = form(click["Count"])
        if rows and self.on("count-fraction"):
            rows[0]["SentCount"] = f"{int(float(rows[0]['SentCount']))}.5"
        if rows and self.on("negative-count"):
            rows[0]["ReadCount"] = -1

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body-level variants of a successful GetChatappTemplateMetric answer."""
        if self.on("success-false"):
            return {**body, "Success": False, "Data": []}
        if self.on("missing-data"):
            return {k: v for k, v in body.items() if k != "Data"}
        if self.on("null-data"):
            return {**body, "Data": None}
        return body

    # -- ListChatappTemplate -------------------------------------------------------------

    def page_keys(self) -> tuple[str, str]:
        """The Page keys the server honours."""
        return ("index", "size") if self.on("lowercase-page") else ("Index", "Size")

    def page_size(self, size: int) -> int:
        """The page size the server serves for an asked size."""
        return min(size, 10) if self.on("page-cap") else size

    def list_body(self, body: dict[str, Any], codes: int) -> dict[str, Any]:
        """The body-level variants of a ListChatappTemplate page (`codes`: templates matched)."""
        out = dict(body)
        if self.on("list-empty"):
            out["ListTemplate"], out["Total"] = [], 0
        if self.on("total-codes"):
            out["Total"] = codes
        if self.on("total-string"):
            out["Total"] = str(out["Total"])
        if self.on("total-missing"):
            out.pop("Total", None)
        if self.on("list-success-false"):
            out["Success"] = False
        return out


def _end_windows(rows: list[dict[str, Any]], start: int, end: int) -> list[dict[str, Any]]:
    """24-hour windows back from `end`, each with the counts of the day its window starts in."""
    by_day = {row["Start"] - row["Start"] % DAY_MS: row for row in rows}
    out = []
    upper = end
    while upper > start and by_day:
        lower = upper - DAY_MS
        source = by_day.get(lower - lower % DAY_MS) or next(iter(by_day.values()))
        out.append(dict(source, Start=lower, End=upper))
        upper = lower
    return out


def _summary(rows: list[dict[str, Any]], start: int, end: int) -> dict[str, Any]:
    """One row summing `rows` over [start, end)."""
    clicks: dict[tuple[str, str], int] = {}
    for row in rows:
        for click in row["Cliented"]:
            key = (click["Type"], click["ButtonContent"])
            clicks[key] = clicks.get(key, 0) + int(float(click["Count"]))
    return {
        **rows[0],
        "SentCount": sum(int(float(r["SentCount"])) for r in rows),
        "DeliveredCount": sum(int(float(r["DeliveredCount"])) for r in rows),
        "ReadCount": sum(int(float(r["ReadCount"])) for r in rows),
        "Cliented": [{"Type": t, "ButtonContent": b, "Count": c} for (t, b), c in clicks.items()],
        "Start": start,
        "End": end,
    }


def encode(body: Mapping[str, Any]) -> bytes:
    """The JSON bytes of a body: lone surrogates escaped (as a JSON encoder must), and
    `BAD_BYTES_MARK` turned into bytes that are not UTF-8."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii").replace(b"\\ue000", b"\xff\xfe")
