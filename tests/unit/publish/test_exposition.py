"""The exposition: client_python's generate_latest over the exporter's collectors, rendered once
per publish, writes the same bytes as reference collectors built from a table of their own and as
the exporter wrote before (tests/unit/publish/golden), and renders the template families again
only when the series changed."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
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
def test_the_exposition_equals_the_reference_collectors(items: list[TemplateSeries]) -> None:
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


GOLDEN = Path(__file__).parent / "golden"


def test_the_bytes_are_those_the_exporter_wrote_before() -> None:
    """Written by the exporter's own writer at 614f6f3 (before client_python rendered them): a
    client_python upgrade that changes a byte of these families fails here."""
    code = "744c4b5c79c9432497a075bdfca3d803"
    clicks = (("quick_reply", "Stop", 3), ("url", 'Shop "now" \\ ✓\nand more', 56))
    a = TemplateSeries(
        UnitKey("main", "cams-1", code, "en", "WHATSAPP"),
        "spring_sale",
        "MARKETING",
        "pass",
        Counts(1234, 1200, 987, clicks),
        1764028800.0,
        1763971200.0,
    )
    b = TemplateSeries(
        UnitKey("main", "cams-1", code, "pt_BR", "WHATSAPP"),
        "spring_sale",
        "MARKETING",
        "pass",
        Counts(10**7, 0, 0, ()),
        1764028800.25,
        None,
    )
    snapshot = Snapshot(series=(a, b))
    text = (GOLDEN / "template_families.txt").read_text(encoding="utf-8")
    openmetrics = (GOLDEN / "template_families.openmetrics.txt").read_text(encoding="utf-8")
    assert render_template_families(snapshot, openmetrics=False) == text
    assert render_template_families(snapshot, openmetrics=True) == openmetrics


@settings(max_examples=60, deadline=None)
@given(
    st.lists(series, max_size=4),
    st.lists(series, max_size=4),
    st.lists(series, min_size=1, max_size=4),
)
def test_a_publish_renders_again_only_the_parts_that_changed(
    first: list[TemplateSeries], second: list[TemplateSeries], second_again: list[TemplateSeries]
) -> None:
    """The exposition of a snapshot in parts (one per account) is the same bytes as the whole
    snapshot rendered at once by client_python, a part that is the same tuple as before is not
    rendered again, and a publish that keeps the series (sender health, account status)
    renders none; every body is the template families, then the status."""
    rendered: list[tuple[TemplateSeries, ...]] = []
    original = exposition.render_samples

    def counting(part: tuple[TemplateSeries, ...]) -> exposition.FamilyBytes:
        rendered.append(part)
        return original(part)

    a, b, b2 = tuple(first), tuple(second), tuple(second_again)
    status = (AccountStatus("a", "e", ()),)
    out = exposition.Exposition(lambda: Snapshot(), lambda om: (b"", b""))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exposition, "render_samples", counting)
        out.prepare(Snapshot(1, 0.0, (), (*a, *b), parts=(a, b)))
        assert rendered == [a, b]
        snap = Snapshot(2, 0.0, status, (*a, *b2), parts=(a, b2))
        out.prepare(snap)
        assert rendered == [a, b, b2], "only the new part is rendered"
        out.prepare(Snapshot(3, 0.0, status, snap.series, parts=snap.parts))
        assert rendered == [a, b, b2], "the same series were rendered again"
    for openmetrics in (False, True):
        chunks, zipped = out.render(openmetrics)
        body = b"".join(chunks).decode()
        assert body.startswith(reference(Snapshot(series=snap.series), openmetrics))
        assert 'cams_up{account="a"} 0.0' in body
        assert gzip.decompress(b"".join(zipped)).decode() == body
