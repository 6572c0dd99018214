"""Reading an exposition as samples, and comparing the exporter's counters with the oracle's.

`Series` maps (sample name, sorted labels) to the value, as client_python's parser reads a
scrape. `exact_problems` says, unit by unit, where the template counters differ from what the
official SDK sums over origin..now; `assert_exact` fails on any.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import Simulator
from tests.kit.oracle import Truth, sdk_client, sdk_total

Labels = tuple[tuple[str, str], ...]
Series = dict[tuple[str, Labels], float]

SENT = "cams_template_messages_sent_total"


def parse(text: str) -> Series:
    """Every sample of a text-format exposition."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def template_counters(series: Series) -> Series:
    """The per-template counters (`cams_template_*_total`)."""
    return {
        k: v
        for k, v in series.items()
        if k[0].startswith("cams_template_") and k[0].endswith("_total")
    }


def nonzero(series: Series) -> Series:
    """The template counters above zero."""
    return {k: v for k, v in template_counters(series).items() if v > 0}


def value(series: Series, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for (sample, sample_labels), sample_value in series.items():
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items()):
            total += sample_value
    return total


def counters(series: Series, code: str, language: str) -> Truth:
    """One unit's template counters, in the oracle's terms."""
    truth = Truth()
    for (name, labels), number in series.items():
        d = dict(labels)
        if d.get("template_code") != code or d.get("language") != language:
            continue
        if name == SENT:
            truth.sent = int(number)
        elif name == "cams_template_messages_delivered_total":
            truth.delivered = int(number)
        elif name == "cams_template_messages_read_total":
            truth.read = int(number)
        elif name == "cams_template_button_clicks_total":
            truth.clicks[d["button"]] = int(number)
    return truth


def decreases(history: list[Series]) -> list[str]:
    """Template counters that went down between two consecutive scrapes."""
    problems = []
    for before, after in itertools.pairwise(history):
        for key, old in template_counters(before).items():
            new = after.get(key)
            if new is not None and new < old:
                problems.append(f"{key[0]} {dict(key[1]).get('template_code')}: {old} -> {new}")
    return problems


def exact_problems(
    sim: Simulator,
    series: Series,
    origin_ms: int,
    *,
    secret: str = "demo-secret",
    granularity: str = "DAILY",
    chunk_ms: int | None = None,
) -> list[str]:
    """Differences between our counters and the SDK's sums over origin..now, per unit (and
    "no messages at all" when nothing was sent: an exactness check must not be vacuous)."""
    sdk = sdk_client(sim, secret=secret)
    now = int(time.time() * 1000)
    problems = []
    units = sim.templates()
    if not units:
        return ["the simulator lists no template"]
    for unit in units:
        truth = sdk_total(
            sdk,
            unit.code,
            unit.language,
            origin_ms,
            now,
            granularity=granularity,
            chunk_ms=chunk_ms,
        )
        ours = counters(series, unit.code, unit.language)
        if ours.counts() != truth.counts():
            problems.append(
                f"{unit.code}/{unit.language}: ours {ours.counts()} truth {truth.counts()}"
            )
        if ours.nonzero_clicks() != truth.nonzero_clicks():
            problems.append(f"{unit.code}/{unit.language}: clicks differ")
    if not any(v for (n, _), v in series.items() if n == SENT):
        problems.append("no messages at all")
    return problems


def assert_exact(sim: Simulator, series: Series, origin_ms: int, **options: Any) -> None:
    """Every unit's counters equal the sum the official SDK reads over origin..now."""
    problems = exact_problems(sim, series, origin_ms, **options)
    assert not problems, problems[:3]


def truths(sim: Simulator, origin_ms: int) -> dict[tuple[str, str], Truth]:
    """The SDK's sum over origin..now of every unit the simulator lists, by (code, language)."""
    sdk = sdk_client(sim)
    now = int(time.time() * 1000)
    return {
        (t.code, t.language): sdk_total(sdk, t.code, t.language, origin_ms, now)
        for t in sim.templates()
    }


def compare(series: Series, truth: dict[tuple[str, str], Truth]) -> tuple[int, int]:
    """(units exact, units above the truth): a unit above it is silently wrong."""
    exact = above = 0
    for (code, language), want in truth.items():
        got = counters(series, code, language)
        clicks_got, clicks_want = got.nonzero_clicks(), want.nonzero_clicks()
        if got.counts() == want.counts() and (
            clicks_got == clicks_want or _same_clicks(clicks_got, clicks_want)
        ):
            exact += 1
        if (
            got.sent > want.sent
            or got.delivered > want.delivered
            or got.read > want.read
            or sum(clicks_got.values()) > sum(clicks_want.values())
        ):
            above += 1
    return exact, above


def _same_clicks(got: dict[str, int], want: dict[str, int]) -> bool:
    """Clicks equal once the texts a variant spoiled are compared by their safe prefix."""
    return sorted(got.values()) == sorted(want.values()) and all(
        any(g.startswith(w) for g in got) for w in want
    )
