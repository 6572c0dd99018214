"""Every answer variant the simulator plays: read exactly, or flagged, never silently wrong.

For each variant an exporter polls a simulator playing it (static data, 3 templates x en, pt_BR,
an origin 5 days back) over real HTTP. Its counters are compared with the official SDK's sums
read from an honest twin simulator (same seed, no variant):
- `exact`: every counter equals the truth, and the metric answers raised no anomaly;
- `flagged`: the anomaly is counted in cams_api_answer_anomalies_total with its kind, logged once
  per unit and kind at warn, shown as the unit's last error; no counter exceeds the truth (never
  a double count or a wrong number), and once the API answers honestly again every counter is
  exact.
`python -m pytest -s tests/e2e/test_variants.py` prints a table row per variant: variant, expected,
units exact during, anomalies counted, units exact after.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

from cams_simulator import SimulatorOptions
from cams_simulator.variants import VARIANTS
from tests.kit.configs import days_back
from tests.kit.exact import compare, truths
from tests.kit.inproc import polled_exporter
from tests.kit.logs import LogLines, captured_logs
from tests.kit.series import Series
from tests.kit.sim import running

LANGUAGES = ("en", "pt_BR")
SINCE, ORIGIN_MS = days_back(5)


@dataclass(frozen=True)
class Expect:
    """What the exporter must make of a variant."""

    outcome: str  # "exact" or "flagged"
    kind: str = ""  # the anomaly kind when flagged (or counted while still exact)
    action: str = "GetChatappTemplateMetric"
    simulator: dict[str, object] = field(default_factory=dict)  # the variant simulator's
    templates: int = 3
    polls: int = 3  # polls while the variant plays


EXPECTED: dict[str, Expect] = {
    "surrogate-button": Expect("exact"),
    "control-chars": Expect("exact"),
    "invalid-utf8": Expect("exact"),
    "count-strings": Expect("exact"),
    "count-fraction": Expect("flagged", "bad_count"),
    "negative-count": Expect("flagged", "bad_count"),
    "duplicate-rows": Expect("exact"),
    "other-languages": Expect("exact"),
    "other-templates": Expect("exact"),
    "language-spelling": Expect("exact"),
    "clipped": Expect("exact"),
    "inclusive-end": Expect("exact"),
    "summary-row": Expect("exact"),
    "seconds": Expect("flagged", "outside_range"),
    "end-windows": Expect("flagged", "misaligned"),
    "utc8-flip": Expect("flagged", "alignment_changed"),
    "outside-row": Expect("flagged", "outside_range"),
    "bad-bounds": Expect("flagged", "bad_bounds"),
    "success-false": Expect("flagged", "success_false"),
    "missing-data": Expect("flagged", "missing_data"),
    "null-data": Expect("flagged", "missing_data"),
    "language-required": Expect("exact"),
    "language-summed": Expect("exact"),
    "half-hour-refused": Expect("exact"),
    "page-cap": Expect("exact", "short_page", "ListChatappTemplate", templates=8),
    "lowercase-page": Expect("exact", "page_keys", "ListChatappTemplate", templates=8),
    "total-string": Expect("exact"),
    "total-missing": Expect("exact"),
    "total-codes": Expect("exact"),
    "list-success-false": Expect("flagged", "success_false", "ListChatappTemplate"),
    # One empty listing drops nothing (a second one would: the API says they are gone).
    "list-empty": Expect("exact", polls=1),
    "throttle-429": Expect("exact", simulator={"qps_limit": 4}),
    "number-no-read-count": Expect("exact"),  # template answers are not touched
}


def test_every_variant_has_an_expectation() -> None:
    assert set(EXPECTED) == set(VARIANTS)


@pytest.fixture
def warnings() -> Iterator[LogLines]:
    with captured_logs(debug=False) as logs:
        yield logs


def _anomalies(series: Series, action: str, kind: str) -> float:
    return sum(
        v
        for (name, labels), v in series.items()
        if name == "cams_api_answer_anomalies_total"
        and dict(labels).get("action") == action
        and (not kind or dict(labels).get("kind") == kind)
    )


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_variant(variant: str, warnings: LogLines) -> None:
    expect = EXPECTED[variant]
    base = {"templates": expect.templates, "languages": LANGUAGES, "static": True}
    tuned = {**base, "list_qps_limit": 50, "qps_limit": 1000, **expect.simulator}
    options = SimulatorOptions(**tuned)  # type: ignore[arg-type]
    honest_options = SimulatorOptions(**base)  # type: ignore[arg-type]
    with running(honest_options) as honest, running(options) as sim:
        truth = truths(honest, ORIGIN_MS)
        with polled_exporter(sim.url, SINCE) as polled:
            # an empty listing once the templates are known; an alignment that changes once the
            # exporter has stored the API's own (a first answer aligned to UTC+8 is an API that
            # counts UTC+8 days, read exactly, not the honest simulator's truth)
            if variant in ("list-empty", "utc8-flip"):
                polled.cycle()
            sim.set_variants(variant)
            for _ in range(expect.polls):
                polled.cycle()
            during = polled.scrape()
            exact, above = compare(during, truth)
            counted = _anomalies(during, expect.action, expect.kind)
            logged = [k for k in warnings.kinds() if k[0] == expect.kind]
            row = [variant, expect.outcome, f"{exact}/{len(truth)}", f"{counted:g}"]
            assert above == 0, f"{above} units above the truth: silently wrong"
            if expect.outcome == "exact":
                assert exact == len(truth), f"only {exact} of {len(truth)} units exact"
                if expect.kind:
                    assert counted >= 1, f"expected {expect.kind} counted"
                else:
                    assert _anomalies(during, "GetChatappTemplateMetric", "") == 0
                if variant == "throttle-429":  # the throttling was seen and retried
                    seen = [
                        v
                        for (n, labels), v in during.items()
                        if n == "cams_api_requests_total"
                        and dict(labels).get("code") == "Throttling.User"
                    ]
                    assert sum(seen) > 0
            else:
                assert counted >= 1, f"no {expect.kind} anomaly counted"
                assert logged, f"no warn line for {expect.kind}"
                assert len(logged) == len(set(logged)), "an anomaly was logged twice"
                page = requests.get(f"{polled.url}/", timeout=10).text
                assert "Answers not applied" in page and expect.kind in page
                if expect.action == "GetChatappTemplateMetric":
                    up = [v for (n, _), v in during.items() if n == "cams_up"]
                    assert up == [0.0], "cams_up stayed 1 while answers were not applied"
                sim.set_variants("")
                polled.cycle()
                after = polled.scrape()
                exact_after, above_after = compare(after, truth)
                assert above_after == 0
                assert exact_after == len(truth), "not exact once the API answered honestly"
                row.append(f"{exact_after}/{len(truth)}")
            print("\n| " + " | ".join(row) + " |")
