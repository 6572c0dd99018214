"""Answer checks and paging, on hand-made answers: what is read exactly, what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.cams.answers import (
    count_value,
    normal_language,
    parse_metric_answer,
    parse_templates,
    safe_text,
)
from exporter.cams.errors import AnomalousAnswer
from exporter.cams.model import DAY_MS, HALF_HOUR_MS, MetricRow, Template, UnitKey
from exporter.cams.paging import Page, list_all
from exporter.counting.checks import Query, check_against_buckets, check_rows
from exporter.counting.store import CounterStore
from exporter.publish.exposition import render_template_families
from exporter.publish.snapshot import Snapshot
from exporter.templates.view import TemplateSeries

D = 1_796_083_200_000  # a UTC midnight
UTC8 = 16 * 3_600_000  # UTC+8 days start at 16:00 UTC


def row(start: int, end: int, sent: int = 10, language: str = "en") -> MetricRow:
    return MetricRow("t", language, sent, sent - 1, sent - 2, (), start, end)


def kind_of(call: object) -> str:
    with pytest.raises(AnomalousAnswer) as info:
        call()  # type: ignore[operator]
    return info.value.kind


def test_label_text_is_made_safe() -> None:
    assert safe_text("Shop \ud83d now\x07\n\x9f") == "Shop \ufffd now\ufffd\ufffd\ufffd"
    assert safe_text("Café ✓ 😀") == "Café ✓ 😀"
    assert normal_language("pt-BR") == normal_language("PT_br") == "pt_br"


@pytest.mark.parametrize(("value", "count"), [(10, 10), ("10", 10), (10.0, 10), ("10.0", 10)])
def test_counts_may_be_numeric_strings_and_whole_floats(value: object, count: int) -> None:
    assert count_value(value) == count


@pytest.mark.parametrize("value", ["10.5", -1, True, "ten", 1e400, [3]])
def test_counts_that_are_not_counts_are_refused(value: object) -> None:
    assert kind_of(lambda: count_value(value)) == "bad_count"


def test_structural_anomalies() -> None:
    good = {"Code": "OK", "Data": [{"Start": D, "End": D + DAY_MS, "SentCount": 1}]}
    assert parse_metric_answer(good, "t", "en")[0].sent == 1
    assert kind_of(lambda: parse_metric_answer({**good, "Success": False}, "t", "en")) == (
        "success_false"
    )
    assert kind_of(lambda: parse_metric_answer({"Code": "OK"}, "t", "en")) == "missing_data"
    assert kind_of(lambda: parse_metric_answer({"Data": None}, "t", "en")) == "missing_data"
    flat = {"Data": [{"Start": D, "End": D}]}
    assert kind_of(lambda: parse_metric_answer(flat, "t", "en")) == "bad_bounds"
    nameless = {"Data": [{"Start": D, "End": D + 1}]}
    assert kind_of(lambda: parse_metric_answer(nameless, "t", None)) == "missing_language"
    assert kind_of(lambda: parse_templates({"Success": False, "ListTemplate": []})) == (
        "success_false"
    )


def test_per_bucket_rows_utc_and_utc8_are_read_and_duplicates_kept_once() -> None:
    q = Query(D - 2 * DAY_MS, D + 3_600_000, DAY_MS)
    utc = [row(D - 2 * DAY_MS, D - DAY_MS), row(D - DAY_MS, D), row(D, D + DAY_MS)]
    assert check_rows(utc + utc[:1], q) == tuple(utc)
    utc8 = [
        row(D - 3 * DAY_MS + UTC8, D - 2 * DAY_MS + UTC8),
        row(D - 2 * DAY_MS + UTC8, D + UTC8 - DAY_MS),
    ]
    assert len(check_rows(utc8, q)) == 2
    inclusive = [row(D - DAY_MS, D - 1)]
    assert check_rows(inclusive, q) == tuple(inclusive)
    clipped = [row(D, D + 3_600_000)]  # today's bucket clipped to the query's End
    assert check_rows(clipped, q) == tuple(clipped)


def test_a_summary_row_equal_to_the_sum_is_dropped_any_other_overlap_refused() -> None:
    q = Query(D - 2 * DAY_MS, D, DAY_MS)
    days = [row(D - 2 * DAY_MS, D - DAY_MS, 10), row(D - DAY_MS, D, 20)]
    summary = MetricRow("t", "en", 30, 28, 26, (), D - 2 * DAY_MS, D)
    assert check_rows([*days, summary], q) == tuple(days)
    wrong = MetricRow("t", "en", 31, 28, 26, (), D - 2 * DAY_MS, D)
    assert kind_of(lambda: check_rows([*days, wrong], q)) == "overlap"
    twice = [row(D - DAY_MS, D, 20), row(D - DAY_MS, D, 21)]
    assert kind_of(lambda: check_rows(twice, q)) == "overlap"


def test_rows_that_do_not_fit_the_query_are_refused() -> None:
    q = Query(D - 2 * DAY_MS, D, DAY_MS)
    far = row(D - 9 * DAY_MS, D - 8 * DAY_MS)
    assert kind_of(lambda: check_rows([far], q)) == "outside_range"
    seconds = row((D - DAY_MS) // 1000, D // 1000)
    with pytest.raises(AnomalousAnswer, match="look like seconds"):
        check_rows([seconds], q)
    odd = row(D - DAY_MS + 1234, D + 1234)  # a window counted back from a query's End
    assert kind_of(lambda: check_rows([odd], q)) == "misaligned"
    mixed = [row(D - 2 * DAY_MS, D - DAY_MS), row(D - DAY_MS + UTC8, D + UTC8)]
    assert kind_of(lambda: check_rows(mixed, q)) == "misaligned"
    middle = row(D - 2 * DAY_MS + 3_600_000, D - DAY_MS - 3_600_000)
    assert kind_of(lambda: check_rows([middle], q)) == "bad_length"
    half = Query(D - DAY_MS, D, HALF_HOUR_MS)
    assert len(check_rows([row(D - HALF_HOUR_MS, D)], half)) == 1


def test_the_aggregate_shape_passes_for_the_caller_to_switch() -> None:
    q = Query(D - 3 * DAY_MS, D, DAY_MS)
    whole = row(D - 3 * DAY_MS, D)
    assert check_rows([whole], q) == (whole,)
    gap = Query(D - 3 * DAY_MS, D, DAY_MS, aggregate=True)  # an aggregate read of three days
    days = [row(D - 3 * DAY_MS, D - 2 * DAY_MS), row(D - 2 * DAY_MS, D - DAY_MS)]
    assert check_rows(days, gap) == tuple(days)  # per-day rows again: summed by the caller
    crossed = [row(D - 3 * DAY_MS, D - 2 * DAY_MS, 10), row(D - 3 * DAY_MS, D - 2 * DAY_MS, 11)]
    assert kind_of(lambda: check_rows(crossed, gap)) == "overlap"


def test_rows_aligned_unlike_the_stored_buckets_are_refused() -> None:
    stored = {D - DAY_MS: D, D: D + DAY_MS}
    check_against_buckets([row(D, D + DAY_MS)], stored, D - DAY_MS)
    shifted = [row(D - DAY_MS + UTC8, D + UTC8)]
    assert kind_of(lambda: check_against_buckets(shifted, stored, D - DAY_MS)) == (
        "alignment_changed"
    )


def templates(count: int, languages: int = 1) -> list[Template]:
    return [
        Template(f"code{i:03d}", f"name{i}", f"l{j}", "MARKETING", "pass", "WHATSAPP")
        for i in range(count)
        for j in range(languages)
    ]


def pager(
    rows: list[Template], cap: int = 100, lower_only: bool = False, total: str = "rows"
) -> tuple[list[tuple[int, int, bool]], object]:
    calls: list[tuple[int, int, bool]] = []

    def fetch(index: int, size: int, lower_case: bool) -> Page:
        calls.append((index, size, lower_case))
        if lower_only and not lower_case:
            index, size = 1, 10  # the server ignores keys it does not know
        size = min(size, cap)
        count = len(rows) if total == "rows" else len({r.code for r in rows})
        return Page(tuple(rows[(index - 1) * size : index * size]), count)

    return calls, fetch


@pytest.mark.parametrize(
    ("cap", "lower_only", "total", "languages"),
    [
        (100, False, "rows", 1),
        (10, False, "rows", 1),
        (100, True, "rows", 1),
        (100, False, "codes", 3),
    ],
)
def test_paging_finds_every_row(cap: int, lower_only: bool, total: str, languages: int) -> None:
    rows = templates(37, languages)
    calls, fetch = pager(rows, cap, lower_only, total)
    listing = list_all(fetch, 100)  # type: ignore[arg-type]
    assert {(r.code, r.language) for r in listing.rows} == {(r.code, r.language) for r in rows}
    assert listing.complete
    kinds = {kind for kind, _ in listing.notes}
    assert ("short_page" in kinds) == (cap < 100 or lower_only)
    assert ("page_keys" in kinds) == lower_only
    assert len(calls) <= len(rows) // 10 + 4


def test_pages_that_disagree_with_total_leave_the_listing_incomplete() -> None:
    def fetch(index: int, size: int, lower_case: bool) -> Page:
        return Page(tuple(templates(5)) if index == 1 else (), 40)

    listing = list_all(fetch, 100)
    assert not listing.complete and len(listing.rows) == 5
    assert [kind for kind, _ in listing.notes][-1] == "total_mismatch"


def test_a_state_file_with_unsafe_text_loads_and_renders(tmp_path: Path) -> None:
    """A state file an earlier version wrote with a lone surrogate in a button text."""
    key = json.dumps(["main", "cams-1", "t\ud83d", "en", "WHATSAPP"])
    unit = {
        "origin": D,
        "settled_until": D,
        "settled": [1, 1, 1, [["url", "Shop \ud83d", 3], ["url", "Shop \udc00", 4]]],
        "buckets": [],
        "meta": ["name\x07", "MARKETING", "pass"],
    }
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "shapes": {}, "units": {key: unit}}))
    store, warning = CounterStore.load(str(path))
    assert warning is None
    [(unit_key, state)] = list(store)
    assert unit_key == UnitKey("main", "cams-1", "t\ufffd", "en", "WHATSAPP")
    counts = state.total()
    assert counts.clicks == (("url", "Shop \ufffd", 7),)  # both texts became one safe label
    series = TemplateSeries(unit_key, *state.meta, counts)
    text = render_template_families(Snapshot(series=(series,)), openmetrics=False)
    text.encode("utf-8")
    assert 'button="Shop \ufffd"' in text and 'template_code="t\ufffd"' in text
