"""The fast template renderer writes exactly what client_python's generate_latest writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.exposition import render_template_families
from exporter.model import UnitKey
from exporter.snapshot import AccountStatus, Counts, Snapshot, TemplateSeries
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
