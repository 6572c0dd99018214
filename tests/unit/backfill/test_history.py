"""The backfill's pure parts: a unit's history from its rows, and the file it becomes.

No sockets: rows are built here as the API's answers would carry them; the file is read back by
client_python's own OpenMetrics parser, which refuses interleaved families and series.
"""

from __future__ import annotations

import io

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.backfill.history import (
    READ_WINDOW_MS,
    Window,
    sample_times,
    unit_history,
    zeroed_reads_until,
)
from exporter.backfill.openmetrics import FAMILIES, BackfillFile, escape, timestamp
from exporter.cams.model import (
    DAY_MS,
    ButtonCount,
    MetricRow,
    NumberKey,
    TemplateMeta,
    UnitKey,
)
from exporter.publish.collector import LABELS, TEMPLATE_FAMILIES

ORIGIN = 20_000 * DAY_MS  # a UTC midnight
UTC8 = 8 * 3_600_000


def row(
    day: int,
    sent: int,
    delivered: int | None = None,
    read: int | None = None,
    clicks: int = 0,
    offset: int = 0,
) -> MetricRow:
    """A one-day row `day` days after ORIGIN (shifted by `offset` ms), counts as given."""
    start = ORIGIN + day * DAY_MS + offset
    delivered = sent if delivered is None else delivered
    read = delivered // 2 if read is None else read
    buttons = (ButtonCount("url_button", "Shop now", clicks),) if clicks else ()
    return MetricRow("t1", "en", sent, delivered, read, buttons, start, start + DAY_MS)


def window(days: int, since: int = 0, now_days: int | None = None) -> Window:
    now = ORIGIN + (days if now_days is None else now_days) * DAY_MS
    return Window(ORIGIN, ORIGIN + since * DAY_MS, ORIGIN + days * DAY_MS, now)


def test_the_counters_at_each_day_end_add_up_the_days_from_the_origin() -> None:
    rows = [row(0, 10, clicks=2), row(1, 5), row(2, 7, clicks=1)]
    history = unit_history(rows, window(3))
    assert [p.at_ms for p in history.points] == [ORIGIN + d * DAY_MS for d in range(4)]
    assert [p.counts.sent for p in history.points] == [0, 10, 15, 22]
    assert [p.counts.read for p in history.points] == [0, 5, 7, 10]
    # every button the answers named has a value at every point, 0 before its first click
    assert [p.counts.clicks for p in history.points] == [
        (("url", "Shop now", 0),),
        (("url", "Shop now", 2),),
        (("url", "Shop now", 2),),
        (("url", "Shop now", 3),),
    ]
    assert history.buttons == (("url", "Shop now"),)


def test_since_and_until_bound_the_samples_not_the_sums() -> None:
    rows = [row(d, 10) for d in range(5)]
    history = unit_history(rows, window(4, since=2))
    assert [(p.at_ms - ORIGIN) // DAY_MS for p in history.points] == [2, 3, 4]
    assert [p.counts.sent for p in history.points] == [20, 30, 40]  # still from the origin


def test_a_bucket_not_complete_by_now_is_left_to_the_live_exporter() -> None:
    rows = [row(0, 10), row(1, 10), row(2, 4)]  # day 2 still running
    history = unit_history(rows, window(5, now_days=2))
    assert [p.counts.sent for p in history.points] == [0, 10, 20]


def test_days_the_api_leaves_out_count_zero_and_still_get_a_sample() -> None:
    rows = [row(0, 10), row(3, 5)]  # a sparse answer: days 1 and 2 had nothing
    history = unit_history(rows, window(4))
    assert [p.counts.sent for p in history.points] == [0, 10, 10, 10, 15]


def test_buckets_aligned_to_utc8_count_whole_from_the_one_straddling_the_origin() -> None:
    # the live exporter keeps a bucket that ends after its origin whole (UnitState.put)
    rows = [row(d, 10, offset=-UTC8) for d in range(4)]  # days start at 16:00 UTC
    history = unit_history(rows, window(3))
    times = [p.at_ms - ORIGIN for p in history.points]
    assert times == [0, DAY_MS - UTC8, 2 * DAY_MS - UTC8, 3 * DAY_MS - UTC8]
    assert [p.counts.sent for p in history.points] == [0, 10, 20, 30]


def test_rows_that_ended_by_the_origin_are_not_counted() -> None:
    rows = [row(-2, 99), row(-1, 99), row(0, 1)]
    assert [p.counts.sent for p in unit_history(rows, window(1)).points] == [0, 1]


def test_sample_times_are_the_origin_then_the_bucket_ends() -> None:
    assert sample_times(window(2), 0) == [ORIGIN, ORIGIN + DAY_MS, ORIGIN + 2 * DAY_MS]
    half = Window(ORIGIN, ORIGIN, ORIGIN + 3_600_000, ORIGIN + DAY_MS, 1_800_000)
    assert sample_times(half, 0) == [ORIGIN, ORIGIN + 1_800_000, ORIGIN + 3_600_000]


def test_reads_zeroed_past_the_read_window_start_their_series_at_its_edge() -> None:
    days = 20
    now = ORIGIN + days * DAY_MS
    rows = [
        row(d, 100, read=0 if d < days - 7 else 40, clicks=0 if d < days - 7 else 3)
        for d in range(days)
    ]
    edge = max(r.end_ms for r in rows if r.end_ms + READ_WINDOW_MS <= now)
    assert zeroed_reads_until(rows, now) == edge == ORIGIN + (days - 7) * DAY_MS
    history = unit_history(rows, window(days))
    assert history.reads_from_ms == edge
    assert not history.reads_at(edge - DAY_MS)
    assert history.reads_at(edge)
    at_edge = next(p for p in history.points if p.at_ms == edge)
    assert at_edge.counts.read == 0  # what the API still counts before the edge
    assert history.points[-1].counts.read == 40 * 7
    assert history.points[-1].counts.sent == 100 * days  # sent and delivered are all there


def test_old_reads_the_api_still_holds_are_kept() -> None:
    rows = [row(d, 100, read=30) for d in range(20)]
    assert zeroed_reads_until(rows, ORIGIN + 20 * DAY_MS) is None
    # one old read is enough to show the API did not zero them
    rows = [row(d, 100, read=1 if d == 3 else 0) for d in range(20)]
    assert zeroed_reads_until(rows, ORIGIN + 20 * DAY_MS) is None


def test_old_days_without_deliveries_say_nothing_about_zeroed_reads() -> None:
    rows = [row(d, 0) for d in range(12)] + [row(d, 50) for d in range(12, 20)]
    assert zeroed_reads_until(rows, ORIGIN + 20 * DAY_MS) is None


def test_the_file_has_the_live_exporters_names_help_and_labels() -> None:
    by_name = {f.name: f for f in FAMILIES}
    for live in TEMPLATE_FAMILIES[:5]:  # the four counters and cams_template_info
        mine = by_name[live.name]
        assert (mine.kind, mine.help, mine.labels) == (live.kind, live.help, LABELS + live.extra)


def test_the_file_is_openmetrics_with_every_family_and_series_together() -> None:
    key = UnitKey("main", "cams-demo", "t1", "en", "WHATSAPP")
    other = UnitKey("main", "cams-demo", "t2", "pt_BR", "WHATSAPP")
    number = NumberKey("main", "cams-demo", "+6580001")
    history = unit_history([row(0, 10, clicks=2), row(1, 5)], window(2))
    content = BackfillFile()
    try:
        content.add_unit(key, TemplateMeta("promo_1", "MARKETING", "pass"), history)
        content.add_unit(other, TemplateMeta('say "hi"\\', "UTILITY", "pass"), history)
        content.add_number(number, history, with_reads=False)
        out = io.BytesIO()
        content.write_to(out)
    finally:
        content.close()
    text = out.getvalue().decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sent = families["cams_template_messages_sent"]
    assert sent.type == "counter"
    assert [(s.labels["template_code"], s.value, float(s.timestamp)) for s in sent.samples] == [
        (code, value, (ORIGIN + day * DAY_MS) / 1000)
        for code in ("t1", "t2")
        for day, value in ((0, 0), (1, 10), (2, 15))
    ]
    info = families["cams_template_info"]
    assert {s.labels["template_name"] for s in info.samples} == {"promo_1", 'say "hi"\\'}
    clicks = families["cams_template_button_clicks"]
    assert {(s.labels["button_type"], s.labels["button"]) for s in clicks.samples} == {
        ("url", "Shop now")
    }
    assert [s.value for s in families["cams_phone_number_messages_sent"].samples] == [0, 10, 15]
    assert not families["cams_phone_number_messages_read"].samples  # its answers had no reads


def test_timestamps_and_escapes_are_exact() -> None:
    assert timestamp(1_764_028_800_123) == "1764028800.123"
    assert timestamp(1_764_028_800_000) == "1764028800.000"
    assert escape('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
