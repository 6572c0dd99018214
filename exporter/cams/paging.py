"""Paging through ListChatappTemplate: every template-language row, however the server pages.

The API pages with one JSON `Page` parameter and says how many entries match in `Total`. The
official SDK sends `{"Index":n,"Size":m}`; so does `list_all`, which asks for pages until one
comes back empty or the template codes seen reach `Total`, and copes with what a server may do
instead of what the docs say:
- a page shorter than asked while `Total` says more: the server caps the size, so paging goes
  on with the size it returns (and says so once);
- a page that only repeats rows already seen: the server ignores the page keys, so the same page
  is asked again with lower-case keys (`{"index":n,"size":m}`, as the doc example spells them),
  and those keys are used from then on if they work;
- `Total` changing between pages: the list changed under us (rows shifted between pages), so it
  lists again from page 1, a few times at most.
When the pages and `Total` disagree at the end, the listing is marked incomplete: the caller
adds what it found but drops nothing. `fetch(index, size, lower_case)` returns one parsed page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from exporter.cams.model import Template

log = logging.getLogger("cams_exporter.client")

# Passes over the pages when the list keeps changing while it is paged.
_LIST_PASSES = 3
# No listing has more pages than this, whatever the server says.
_MAX_PAGES = 10_000


@dataclass(frozen=True, slots=True)
class Page:
    """One parsed page: its rows and the `Total` it announced (None when absent)."""

    rows: tuple[Template, ...]
    total: int | None


@dataclass(frozen=True, slots=True)
class Listing:
    """Every row found; `complete` when the pages agree with `Total`; `notes` are
    (anomaly kind, what was expected and what came) for what could not be taken at face
    value (the caller counts and logs them)."""

    rows: tuple[Template, ...]
    complete: bool
    notes: tuple[tuple[str, str], ...] = ()


Fetch = Callable[[int, int, bool], Page]


class _Pass:
    """One pass over the pages."""

    def __init__(self, fetch: Fetch, size: int, lower_case: bool) -> None:
        self.fetch, self.size, self.lower_case = fetch, size, lower_case
        self.seen: dict[tuple[str, str], Template] = {}
        self.first_total: int | None = None
        self.total: int | None = None
        self.notes: list[tuple[str, str]] = []
        self.changed: tuple[int, int] | None = None

    def _codes(self) -> int:
        return len({code for code, _ in self.seen})

    def _done(self) -> bool:
        return self.total is not None and self._codes() >= self.total

    def _get(self, index: int, size: int, lower_case: bool) -> tuple[Page, int]:
        page = self.fetch(index, size, lower_case)
        new = 0
        for row in page.rows:
            if (row.code, row.language) not in self.seen:
                self.seen[(row.code, row.language)] = row
                new += 1
        if page.total is not None:
            if self.first_total is None:
                self.first_total = page.total
            elif page.total != self.first_total:
                self.changed = (self.first_total, page.total)
            self.total = page.total
        return page, new

    def run(self) -> None:
        index, size = 1, self.size
        capped: tuple[str, str] | None = None  # noted once the next page proves the cap
        while index <= _MAX_PAGES:
            page, new = self._get(index, size, self.lower_case)
            if self.changed is not None or not page.rows:
                return
            if new == 0:  # only rows seen before: the server ignored the page keys?
                page, new = self._get(index, size, not self.lower_case)
                if self.changed is not None or new == 0:
                    return
                self.lower_case = not self.lower_case
                self.notes.append(
                    (
                        "page_keys",
                        f"expected page {index} for the SDK's Page keys, got page 1 again; "
                        f"paging on with {'lower' if self.lower_case else 'upper'}-case keys",
                    )
                )
            if capped is not None:
                self.notes.append(capped)
                capped = None
            if self._done():
                return
            if len(page.rows) < size:
                if index > 1:
                    return  # a short page after full ones: the last page
                capped = (
                    "short_page",
                    f"expected pages of {size} rows while Total is {self.total}, got "
                    f"{len(page.rows)}: paging on with pages of {len(page.rows)}",
                )
                size = len(page.rows)
            index += 1


def list_all(fetch: Fetch, size: int) -> Listing:
    """Every row across the pages, listing again from page 1 when the list changes."""
    lower_case = False
    current = _Pass(fetch, size, lower_case)
    for attempt in range(1, _LIST_PASSES + 1):
        current = _Pass(fetch, size, lower_case)
        current.run()
        lower_case = current.lower_case
        if current.changed is None:
            break
        log.info(
            "ListChatappTemplate: the template list changed while paging (Total %d -> %d)%s",
            current.changed[0],
            current.changed[1],
            ", listing again from page 1" if attempt < _LIST_PASSES else "",
        )
    rows = tuple(current.seen.values())
    notes = list(current.notes)
    total = current.total
    codes = len({row.code for row in rows})
    complete = total is None or codes >= total or len(rows) >= total
    if not complete:
        notes.append(
            (
                "total_mismatch",
                f"expected {total} entries (Total), got {len(rows)} rows of {codes} templates "
                "after the last page",
            )
        )
    return Listing(rows, complete, tuple(notes))
