"""The generated campaign promtool tests: up to date, and every asserted fire time within the
issue's bounds (tests/test_rules.py runs them through promtool).

- read-rate drops fire within 12 h of the first badly-read send (24 h for small templates),
  delivery drops within 12 h, silences within about 25 h of the last send;
- every situation of the issue's table is a scenario, and the healthy ones never fire;
- points 1-4: new campaigns (typical and slow audiences), established templates, campaigns
  broken from the start (peers, floor), small templates, burst schedules, four weeks of healthy
  traffic, always-on senders by category, by three weeks of daily sends and by name, opt-out,
  campaign ends, a pause that resolves.
"""

from __future__ import annotations

import yaml

from tests.campaign_scenarios import CASES, PROM, READ_DROP, SILENT, Case, render
from tests.trafficmodel import SLOW

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
        assert path.exists(), f"{name} is missing: run python3 tests/campaign_scenarios.py"
        assert path.read_text() == render(name), (
            f"{name} is out of date: run python3 tests/campaign_scenarios.py"
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
            assert fire.at_h < case.days * 24
            assert all(fire.at_h < at < case.days * 24 for at in fire.still_at_h)


def test_the_bounds_are_the_issues() -> None:
    bounds = {(f.alert, f.unit.template_code): f.within_h for case in cases() for f in case.fires}
    for (alert, code), within in bounds.items():
        if alert == READ_DROP:
            assert within == (24 if code.startswith("t_small") else 12), code
        elif alert == SILENT:
            assert within <= 25.5, code
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
