"""The exporter's counters against the oracle: `exact_problems` says, unit by unit, where the
template counters of a scrape differ from what the official SDK sums over origin..now;
`assert_exact` fails on any; `compare` counts the units exact and those above the truth."""

from __future__ import annotations

import time
from typing import Any

from cams_simulator import Simulator
from tests.kit.oracle import Truth, sdk_client, sdk_sum
from tests.kit.series import SENT, Series


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


def exact_problems(
    sim: Simulator,
    series: Series,
    origin_ms: int,
    *,
    secret: str = "demo-secret",
    granularity: str = "DAILY",
    chunk_ms: int | None = None,
    now_ms: int | None = None,
) -> list[str]:
    """Differences between our counters and the SDK's sums over origin..now (`now_ms`, else
    the wall clock), per unit (and "no messages at all" when nothing was sent: an exactness
    check must not be vacuous)."""
    sdk = sdk_client(sim, secret=secret)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    problems = []
    units = sim.templates()
    if not units:
        return ["the simulator lists no template"]
    for unit in units:
        truth = sdk_sum(
            sdk, unit.code, unit.language, origin_ms, now, granularity, chunk_ms=chunk_ms
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
        (t.code, t.language): sdk_sum(sdk, t.code, t.language, origin_ms, now)
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
