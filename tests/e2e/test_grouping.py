"""One call per template when the API proves it, per language otherwise; exact either way."""

from __future__ import annotations

import logging

import pytest

from cams_simulator import SimulatorOptions
from exporter.templates.grouping import PER_LANGUAGE, PER_TEMPLATE
from tests.kit.configs import days_back
from tests.kit.exact import compare, truths
from tests.kit.inproc import polled_exporter
from tests.kit.sim import running

LANGUAGES = ("en", "es", "pt_BR")
SINCE, ORIGIN_MS = days_back(5)


def _metric_calls(stats: dict[str, object]) -> int:
    actions = stats["actions"]
    assert isinstance(actions, dict)
    return int(actions.get("GetChatappTemplateMetric", {}).get("calls", 0))


def _units(series: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    out: dict[str, float] = {}  # by mode, active and idle units together
    for (name, labels), value in series.items():
        if name == "cams_poll_units":
            mode = dict(labels)["mode"]
            out[mode] = out.get(mode, 0.0) + value
    return out


def test_one_call_per_template_once_the_api_proves_it(caplog: pytest.LogCaptureFixture) -> None:
    options = SimulatorOptions(templates=4, languages=LANGUAGES, static=True, qps_limit=1000)
    with running(options) as sim:
        truth = truths(sim, ORIGIN_MS)
        with polled_exporter(sim.url, SINCE) as polled:
            with caplog.at_level(logging.INFO, logger="cams_exporter"):
                polled.cycle()
            assert any("per-template" in r.getMessage() for r in caplog.records)
            series = polled.scrape()
            assert _units(series) == {PER_TEMPLATE: 12.0}
            assert series[("cams_poll_reads", (("account", "main"),))] == 4.0
            sim.reset_stats()
            polled.cycle()  # a steady cycle: one call per template, nothing else
            assert _metric_calls(sim.stats()) == 4
            exact, above = compare(polled.scrape(), truth)
            assert (exact, above) == (len(truth), 0)
            assert len(truth) == 12 and ORIGIN_MS > 0


@pytest.mark.parametrize("variant", ["language-summed", "language-required"])
def test_per_language_when_the_api_cannot_read_languages_together(variant: str) -> None:
    options = SimulatorOptions(
        templates=3, languages=LANGUAGES, static=True, qps_limit=1000, variants=variant
    )
    with running(options) as sim, polled_exporter(sim.url, SINCE) as polled:
        polled.cycle()
        series = polled.scrape()
        assert _units(series) == {PER_LANGUAGE: 9.0}
        assert series[("cams_poll_reads", (("account", "main"),))] == 9.0
        sim.reset_stats()
        polled.cycle()
        assert _metric_calls(sim.stats()) == 9


def test_a_failed_recheck_falls_back_to_per_language(caplog: pytest.LogCaptureFixture) -> None:
    options = SimulatorOptions(templates=3, languages=LANGUAGES, static=True, qps_limit=1000)
    with running(options) as sim:
        truth = truths(sim, ORIGIN_MS)
        with polled_exporter(sim.url, SINCE) as polled:
            polled.cycle()
            assert _units(polled.scrape()) == {PER_TEMPLATE: 9.0}
            sim.set_variants("language-summed")
            grouping = polled.exporter.scheduler.accounts[0].grouping
            grouping.forget()  # as if discovery_interval had passed
            with caplog.at_level(logging.INFO, logger="cams_exporter"):
                polled.cycle()
            assert any("did not match" in r.getMessage() for r in caplog.records)
            series = polled.scrape()
            assert _units(series) == {PER_LANGUAGE: 9.0}
            exact, above = compare(series, truth)
            assert (exact, above) == (len(truth), 0)
