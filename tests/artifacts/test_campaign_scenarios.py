"""The generated campaign promtool tests: up to date, and every asserted fire time within the
issue's bounds (tests/artifacts/test_rules.py runs them through promtool).

- read-rate drops fire within 12 h of the first badly-read send (24 h for small templates),
  delivery drops within 12 h, silences within about 25 h of the last send;
- every situation of the issue's table is a scenario, and the healthy ones never fire;
- points 1-4: new campaigns (typical and slow audiences), established templates, campaigns
  broken from the start (peers, floor), small templates, burst schedules, four weeks of healthy
  traffic, always-on senders by category, by three weeks of daily sends and by name, opt-out,
  campaign ends, a pause that resolves;
- stale data: while the exporter's reads of a unit fail, its standing counters fire no template
  alert (CamsDataStale does), and the guard that makes it so is what keeps them quiet;
- issue 27: the short scenario at 1h, 5m and 1m evaluation intervals fires the same alerts for
  the same templates, within one step of the coarsest interval, and a healthy new campaign whose
  first send is Friday 20:00 to an audience asleep at night pages no one at any of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from exporter.config.durations import parse_duration
from tests.kit.campaign_scenarios import (
    CASES,
    PROM,
    READ_DROP,
    SHORT_CASES,
    SHORT_FIRE_AT,
    SILENT,
    STALE,
    Case,
    probe,
    render,
)
from tests.kit.trafficmodel import SLOW

TABLE = {
    "new campaign, read rate 60% -> 25% on its 4th day",
    "the same, campaign ends 4 days after the drop",
    "new campaign broken from its first send (25% while the account's other marketing "
    "templates read 50-60%)",
    "established template, 70% -> 35%",
    "small template, 200 deliveries a day, 60% -> 20%",
    "healthy Mon/Thu bursts whose send time moves between morning and evening",
    "normal end of a daily campaign",
}


def cases() -> list[Case]:
    return [make() for make in CASES.values()]


def test_generated_files_are_up_to_date() -> None:
    for name in CASES:
        path = PROM / "tests" / name
        assert path.exists(), f"{name} is missing: run python3 -m tests.kit.campaign_scenarios"
        assert path.read_text() == render(name), (
            f"{name} is out of date: run python3 -m tests.kit.campaign_scenarios"
        )


def test_generated_files_load_the_real_rules_in_order() -> None:
    for name in CASES:
        doc = yaml.safe_load((PROM / "tests" / name).read_text())
        assert doc["rule_files"] == ["../recording.yml", "../alerts.yml"]
        groups = yaml.safe_load((PROM / "recording.yml").read_text())["groups"]
        recording = [g["name"] for g in groups]
        assert sorted(doc["group_eval_order"][: len(recording)]) == sorted(recording)


def test_every_fire_time_is_within_the_issues_bound() -> None:
    for case in cases():
        for fire in case.fires:
            late = fire.at_h - fire.since_h
            assert 0 < late <= fire.within_h, (fire.unit.template_code, late)
            assert fire.at_h < case.end_h
            assert all(fire.at_h < at < case.end_h for at in fire.still_at_h)


def test_the_bounds_are_the_issues() -> None:
    bounds = {(f.alert, f.unit.template_code): f.within_h for case in cases() for f in case.fires}
    for (alert, code), within in bounds.items():
        if alert == READ_DROP:
            assert within == (24 if code.startswith("t_small") else 12), code
        elif alert == SILENT:
            assert within <= 25.5, code
        elif alert == STALE:
            # over an hour without a read, then 10 minutes pending: 3 h at hourly steps
            assert within <= 3, code
        else:
            assert within == 12, code


def test_every_row_of_the_issues_table_is_a_scenario() -> None:
    rows = {f.table_row for case in cases() for f in case.fires} | {
        row for case in cases() for _, row in case.quiet_rows
    }
    assert rows >= TABLE
    # the quiet rows are templates of their case that no alert may fire for
    for case in cases():
        codes = {u.template_code for u in case.units}
        fired = {f.unit.template_code for f in case.fires}
        for code, _ in case.quiet_rows:
            assert code in codes and code not in fired


def test_points_one_to_four_are_covered() -> None:
    fires = [f for case in cases() for f in case.fires]
    baselines = {dict(f.extra_labels).get("baseline") for f in fires if f.alert == READ_DROP}
    assert baselines == {"own", "peers", "floor"}
    assert any(f.unit.shape == SLOW for f in fires if f.alert == READ_DROP)
    reasons = {dict(f.extra_labels)["always_on"] for f in fires if f.alert == SILENT}
    assert reasons == {"category", "daily", "named"}
    assert any(f.still_at_h and f.alert == SILENT for f in fires)
    assert any(f.resolved_at_h and f.alert == SILENT for f in fires)
    healthy = CASES["campaign_healthy_test.yml"]()
    assert healthy.days >= 28 and not healthy.fires
    shapes = {u.shape for u in healthy.units}
    assert SLOW in shapes and len(shapes) == 2
    weekdays_only = [
        u for u in healthy.units if len({int(w.start_h // 24) % 7 for w in u.windows}) < 7
    ]
    assert weekdays_only, "no burst schedule in the healthy traffic"


STALE_GUARD = "unless on (account, space, template_code, language) cams:template_data:stale"


def test_stale_units_fire_no_template_alert_because_of_the_guard(tmp_path: Path) -> None:
    """In the stale case, the units whose reads fail fire no template alert with the shipped
    rules (campaign_stale_test.yml asserts it), and do fire them with the guard taken out of
    alerts.yml: their standing counters look like a read-rate drop and a silence."""
    case = CASES["campaign_stale_test.yml"]()
    failing = {u.template_code for u in case.units if u.frozen_from_h is not None and u.reads_fail}
    assert failing == {"x_outage", "x_outage_utility"}
    text = (PROM / "alerts.yml").read_text()
    assert text.count(STALE_GUARD) == 3  # the three template alerts
    unguarded = tmp_path / "alerts.yml"
    unguarded.write_text("\n".join(line for line in text.splitlines() if STALE_GUARD not in line))
    shipped = probe([PROM / "recording.yml", PROM / "alerts.yml"], ["campaign_stale_test.yml"])
    without = probe([PROM / "recording.yml", unguarded], ["campaign_stale_test.yml"])
    assert not {r["template"] for r in shipped} & failing
    fired = {(r["template"], r["alert"]) for r in without}
    assert {("x_outage", READ_DROP), ("x_outage_utility", SILENT)} <= fired
    # the sender that really stopped (its reads succeed) is judged the same either way
    assert {
        (r["alert"], r["first_h"]) for r in shipped if r["template"] == "x_stopped_utility"
    } == {(r["alert"], r["first_h"]) for r in without if r["template"] == "x_stopped_utility"}


def test_the_rules_fire_the_same_at_every_evaluation_interval() -> None:
    """The short scenario's fire times at 1m, 5m and 1h (each asserted by its promtool file) are
    measured ones, and agree within one step at 1h, plus what rounding the alert's `for` up to
    whole steps adds there (an alert that must hold for 10 minutes fires at the second hourly
    evaluation that sees it: 50 minutes more than at 1m)."""
    cases = {step: CASES[name]() for name, step in SHORT_CASES.items()}
    assert sorted(cases) == [60, 300, 3600]
    holds = {
        rule["alert"]: parse_duration(rule["for"]) / 3600
        for group in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }

    def fires(case: Case) -> dict[tuple[str, str, tuple[tuple[str, str], ...]], float]:
        return {(f.alert, f.unit.template_code, f.extra_labels): f.at_h for f in case.fires}

    coarse = fires(cases[3600])
    for step, case in cases.items():
        measured = {f"{f.unit.template_code}/{f.alert}" for f in case.fires}
        assert set(SHORT_FIRE_AT[step]) == measured, step
        mine = fires(case)
        assert mine.keys() == coarse.keys(), step
        for key, at in mine.items():
            rounding = math.ceil(holds[key[0]]) - holds[key[0]]
            assert abs(at - coarse[key]) <= 1 + rounding, (step, key, at, coarse[key])
        quiet = {u.template_code for u in case.units} - {f.unit.template_code for f in case.fires}
        assert {"q_promo_typical", "q_promo_slow", "q_promo_peers"} <= quiet
        assert all(u.night_reads < 1 for u in case.units if u.template_code.startswith("q_promo"))
