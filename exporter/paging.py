"""Paging through ListChatappTemplate: every template-language row, once, however the pages move.

The API pages with one JSON `Page` parameter (`{"Index":n,"Size":m}`) and says how many rows
match in `Total`. `list_all` asks for pages until `Total` rows were seen or a page comes back
empty. When `Total` changes between pages the list changed under us (rows shifted from one page
to another, some seen twice, some never): it lists again from page 1, a few times at most, then
keeps the last pass with duplicates merged. It knows nothing of HTTP: `fetch(index, size)`
returns one parsed page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from exporter.model import Template

log = logging.getLogger("cams_exporter.client")

# Passes over the pages when the list keeps changing while it is paged.
_LIST_PASSES = 3


@dataclass(frozen=True, slots=True)
class Page:
    """One parsed page: its rows and the `Total` it announced (None when absent)."""

    rows: tuple[Template, ...]
    total: int | None


Fetch = Callable[[int, int], Page]


def _one_pass(fetch: Fetch, size: int) -> tuple[tuple[Template, ...], tuple[int, int] | None]:
    """The rows of one pass, and (first Total, new Total) if Total changed on the way."""
    seen: dict[tuple[str, str], Template] = {}
    index = 1
    first_total: int | None = None
    total: int | None = None
    while True:
        page = fetch(index, size)
        for row in page.rows:
            seen.setdefault((row.code, row.language), row)
        if page.total is not None:
            total = page.total
            if first_total is None:
                first_total = total
            elif total != first_total:
                return tuple(seen.values()), (first_total, total)
        if not page.rows or (total is not None and index * size >= total):
            break
        # Guard against a server that never stops: no more pages than Total implies.
        if total is not None and index > total // max(size, 1) + 2:
            break
        index += 1
    return tuple(seen.values()), None


def list_all(fetch: Fetch, size: int) -> tuple[Template, ...]:
    """Every row across the pages, listing again from page 1 when the list changes."""
    rows: tuple[Template, ...] = ()
    for attempt in range(1, _LIST_PASSES + 1):
        rows, changed = _one_pass(fetch, size)
        if changed is None:
            return rows
        log.info(
            "ListChatappTemplate: the template list changed while paging (Total %d -> %d)%s",
            changed[0],
            changed[1],
            ", listing again from page 1" if attempt < _LIST_PASSES else "",
        )
    return rows
