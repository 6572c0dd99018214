"""Every answer variant the simulator plays: read exactly, or flagged, never silently wrong.

For each variant an exporter polls a simulator playing it (static data, 3 templates x en, pt_BR,
an origin 5 days back) over real HTTP. Its counters are compared with the official SDK's sums
read from an honest twin simulator (same seed, no variant):
- `exact`: every counter equals the truth, and the metric answers raised no anomaly;
- `flagged`: the anomaly is counted in cams_api_answer_anomalies_total with its kind, logged once
  per unit and kind at warn, shown as the unit's last error; no counter exceeds the truth (never
  a double count or a wrong number), and once the API answers honestly again every counter is
  exact.
`python -m pytest -s tests/test_variants.py` prints a table row per variant: variant, expected,
units exact during, anomalies counted, units exact after.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

from exporter.app import Exporter
from exporter.config import Config, parse_config
from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.variants import VARIANTS
from exporter.web.server import WebServer
from tests.kit.sim import Truth, running, sdk_client, sdk_sum
from tests.test_exporter import Series, counters

LANGUAGES = ("en", "pt_BR")
SINCE = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=5)
ORIGIN_MS = int(dt.datetime(SINCE.year, SINCE.month, SINCE.day, tzinfo=dt.UTC).timestamp() * 1000)


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


def _config(sim: Simulator) -> Config:
    text = (
        "poll:\n  interval: 10s\n  lookback: 3d\n  max_range: 30d\n  timeout: 5s\n"
        f"  counters_since: {SINCE.isoformat()}\n"
        "accounts:\n  - name: main\n"
        f"    endpoint: {sim.url}\n"
        "    credentials: {access_key_id: demo, access_key_secret: demo-secret}\n"
        "    qps: 50\n    list_qps: 5\n"
        "    spaces:\n      - cust_space_id: cams-demo\n"
    )
    return parse_config(text, env={})


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.records.append(record)

    def kinds(self) -> list[tuple[str, str, str]]:
        with self._guard:
            return [
                (getattr(r, "kind", ""), getattr(r, "template", ""), getattr(r, "language", ""))
                for r in self.records
                if getattr(r, "kind", None)
            ]


@pytest.fixture
def warnings() -> Iterator[_Warnings]:
    handler = _Warnings()
    logger = logging.getLogger("cams_exporter")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


class Polled:
    """An exporter with its web server over a simulator; polled by hand."""

    def __init__(self, sim: Simulator) -> None:
        self.exporter = Exporter(_config(sim))
        self.server = WebServer("127.0.0.1:0", self.exporter.handlers())
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def poll(self, times: int = 1) -> None:
        scheduler = self.exporter.scheduler
        for _ in range(times):
            for account in scheduler.accounts:
                account.discovery.forget()
                account.run_cycle(scheduler.stop_event, 4)
            scheduler.publish()

    def scrape(self) -> Series:
        from prometheus_client.parser import text_string_to_metric_families

        response = requests.get(f"{self.url}/metrics", timeout=10)
        assert response.status_code == 200
        out: Series = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.exporter.stop()


def _truth(honest: Simulator) -> dict[tuple[str, str], Truth]:
    sdk = sdk_client(honest)
    now = int(time.time() * 1000)
    return {
        (t.code, t.language): sdk_sum(sdk, t.code, t.language, ORIGIN_MS, now)
        for t in honest.templates()
    }


def _anomalies(series: Series, action: str, kind: str) -> float:
    return sum(
        v
        for (name, labels), v in series.items()
        if name == "cams_api_answer_anomalies_total"
        and dict(labels).get("action") == action
        and (not kind or dict(labels).get("kind") == kind)
    )


def _compare(series: Series, truth: dict[tuple[str, str], Truth]) -> tuple[int, int]:
    """(units exact, units above the truth)."""
    exact = above = 0
    for (code, language), want in truth.items():
        got = counters(series, code, language)
        clicks_got = {k: v for k, v in got.clicks.items() if v}
        clicks_want = {k: v for k, v in want.clicks.items() if v}
        if (got.sent, got.delivered, got.read) == (want.sent, want.delivered, want.read) and (
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


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_variant(variant: str, warnings: _Warnings) -> None:
    expect = EXPECTED[variant]
    base = {"templates": expect.templates, "languages": LANGUAGES, "static": True}
    tuned = {**base, "list_qps_limit": 50, "qps_limit": 1000, **expect.simulator}
    options = SimulatorOptions(**tuned)  # type: ignore[arg-type]
    honest_options = SimulatorOptions(**base)  # type: ignore[arg-type]
    with running(honest_options) as honest, running(options) as sim:
        truth = _truth(honest)
        polled = Polled(sim)
        try:
            if variant == "list-empty":  # an empty listing once the templates are known
                polled.poll()
            sim.set_variants(variant)
            polled.poll(expect.polls)
            during = polled.scrape()
            exact, above = _compare(during, truth)
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
                polled.poll()
                after = polled.scrape()
                exact_after, above_after = _compare(after, truth)
                assert above_after == 0
                assert exact_after == len(truth), "not exact once the API answered honestly"
                row.append(f"{exact_after}/{len(truth)}")
            print("\n| " + " | ".join(row) + " |")
        finally:
            polled.close()
