"""The fast template renderer writes exactly what client_python's generate_latest writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.cams.model import UnitKey
from exporter.counting.state import Counts
from exporter.publish import exposition
from exporter.publish.exposition import render_template_families
from exporter.publish.snapshot import Snapshot
from exporter.templates.view import AccountStatus, TemplateSeries
from tests.kit.collectors import TemplateCollector, TemplateInfoCollector

text = st.text(max_size=12)
counts = st.integers(0, 10**12)
clicks = st.lists(
    st.tuples(st.sampled_from(["url", "quick_reply", "phone_number", "other"]), text, counts),
    max_size=3,
    unique_by=lambda c: (c[0], c[1]),
).map(lambda items: tuple(sorted(items)))
stamps = st.one_of(st.none(), st.floats(0, 2e9, allow_nan=False))
series = st.builds(
    TemplateSeries,
    key=st.builds(UnitKey, text, text, text, text, text),
    name=text,
    category=text,
    audit_status=text,
    counts=st.builds(Counts, counts, counts, counts, clicks),
    last_success=stamps,
    newest_data=stamps,
)


def reference(snapshot: Snapshot, openmetrics: bool) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TemplateCollector(snapshot))
    registry.register(TemplateInfoCollector(snapshot))
    if openmetrics:
        body: bytes = generate_openmetrics(registry)
        return body.decode().removesuffix("# EOF\n")
    return generate_latest(registry).decode()


@settings(max_examples=150, deadline=None)
@given(st.lists(series, max_size=6))
def test_fast_renderer_equals_generate_latest(items: list[TemplateSeries]) -> None:
    snapshot = Snapshot(1, 0.0, (AccountStatus("a", "e", ()),), tuple(items))
    for openmetrics in (False, True):
        assert render_template_families(snapshot, openmetrics) == reference(snapshot, openmetrics)


def test_tricky_label_values_are_escaped_the_same_way() -> None:
    tricky = 'quote " backslash \\ newline \n unicode ✓'
    item = TemplateSeries(
        UnitKey("main", "", "tpl", "en", "WHATSAPP"),
        tricky,
        "MARKETING",
        "pass",
        Counts(3, 2, 1, (("url", tricky, 1),)),
        1764028800.5,
        None,
    )
    snapshot = Snapshot(1, 0.0, (), (item,))
    for openmetrics in (False, True):
        rendered = render_template_families(snapshot, openmetrics)
        assert rendered == reference(snapshot, openmetrics)
        assert 'button="quote \\" backslash \\\\ newline \\n unicode ✓"' in rendered


@settings(max_examples=60, deadline=None)
@given(st.lists(series, max_size=4), st.lists(series, max_size=4), st.lists(series, max_size=4))
def test_a_publish_renders_again_only_the_parts_that_changed(
    first: list[TemplateSeries], second: list[TemplateSeries], second_again: list[TemplateSeries]
) -> None:
    """The exposition of a snapshot in parts (one per account) is the same bytes as the whole
    snapshot rendered at once, and a part that is the same tuple as before is not rendered
    again."""
    rendered: list[tuple[TemplateSeries, ...]] = []
    original = exposition.render_samples

    def counting(part: tuple[TemplateSeries, ...]) -> tuple[bytes, ...]:
        rendered.append(part)
        return original(part)

    a, b, b2 = tuple(first), tuple(second), tuple(second_again)
    out = exposition.Exposition(lambda: Snapshot(), lambda om: (b"", b""))
    exposition.render_samples = counting  # type: ignore[assignment]
    try:
        out.prepare(Snapshot(1, 0.0, (), (*a, *b), parts=(a, b)))
        rendered.clear()
        snap = Snapshot(2, 0.0, (), (*a, *b2), parts=(a, b2))
        out.prepare(snap)
    finally:
        exposition.render_samples = original  # type: ignore[assignment]
    assert all(part is not a for part in rendered) or not a
    assert [part for part in rendered if part] == [b2] if b2 else not rendered
    for openmetrics in (False, True):
        _, chunks, _ = out.render(openmetrics)
        body = b"".join(chunks).decode()
        assert body.startswith(reference(Snapshot(series=snap.series), openmetrics))
