"""Prometheus rules: promtool accepts them, and every alert has unit tests that fire and that don't.

Also checks what the docs and dashboards rely on: each alert carries a severity, the three
annotations, and a runbook_url pointing at its page in docs/runbooks/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.kit.rules import PLAIN_READ_S, missed_reads, recorded

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = "https://github.com/cams-exporter/cams-exporter/blob/main/docs/runbooks/"
PROM = ROOT / "prometheus"
ALERTS = PROM / "alerts.yml"
RECORDING = PROM / "recording.yml"
# The template and exporter rules' unit tests (sender_alerts_test.yml:
# tests/artifacts/test_sender_rules.py).
UNIT_TESTS = sorted(p for p in (PROM / "tests").glob("*.yml") if not p.name.startswith("sender_"))

# The alert names fixed by docs/design.md.
EXPECTED_ALERTS = {
    "CamsTemplateReadRateDrop",
    "CamsTemplateDeliveryRateDrop",
    "CamsTemplateSilent",
    "CamsExporterPollsFailing",
    "CamsApiThrottled",
    "CamsDataStale",
}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is not installed (Debian package `prometheus`)"
    return path


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_alert_names_are_the_designed_ones() -> None:
    assert {rule["alert"] for rule in alert_rules()} == EXPECTED_ALERTS


@pytest.mark.parametrize("path", [ALERTS, RECORDING], ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    """Every file of prometheus/tests/, two promtool processes at a time (one per core)."""
    assert UNIT_TESTS, "no promtool unit tests in prometheus/tests/"

    # Go's collector at GOGC=2000 instead of 100, its heap capped at 1.5 GiB (GOMEMLIMIT): the
    # 1m file took 64.5 s of CPU and 512 MB at most, against 70.4 s at GOGC=400 (130 s, 22 GB
    # with no collection at all); GOGC=400 had taken the six files of the time from 62 s to 49.
    # One OS thread each (GOMAXPROCS=1): a promtool evaluates on one core anyway, and two run
    # at a time beside the other workers, so the collector's second thread only adds work
    # (6-15% less CPU for the six files in three paired runs).
    env = {**os.environ, "GOGC": "2000", "GOMEMLIMIT": "1500MiB", "GOMAXPROCS": "1"}

    def run(path: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
        proc = subprocess.run(
            [promtool(), "test", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=900,  # the 1m file: 2 min on an idle core, over 5 beside CI's six workers
            cwd=ROOT,
            env=env,
        )
        return path, proc

    # the costliest first, so that the two workers finish together: the 1m file evaluates
    # every rule 3,720 times, more than any other; then by size
    ordered = sorted(UNIT_TESTS, key=lambda p: ("_1m_" not in p.name, -p.stat().st_size))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for path, proc in pool.map(run, ordered):
            assert proc.returncode == 0, f"{path.name}:\n{proc.stdout}{proc.stderr}"
            assert "SUCCESS" in proc.stdout and "FAILED" not in proc.stdout, path.name


def test_unit_tests_load_the_real_rule_files() -> None:
    for path in UNIT_TESTS:
        doc = yaml.safe_load(path.read_text())
        loaded = {(path.parent / f).resolve() for f in doc["rule_files"]}
        assert ALERTS.resolve() in loaded, path
        assert RECORDING.resolve() in loaded, path


def test_unit_tests_evaluate_recording_rules_first() -> None:
    """promtool orders groups at random without group_eval_order; alerts then read stale records."""
    recording = [g["name"] for g in yaml.safe_load(RECORDING.read_text())["groups"]]
    alerting = [g["name"] for g in yaml.safe_load(ALERTS.read_text())["groups"]]
    for path in UNIT_TESTS:
        order = yaml.safe_load(path.read_text())["group_eval_order"]
        assert sorted(order) == sorted(recording + alerting), path
        assert set(order[: len(recording)]) == set(recording), path


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested not firing"


def test_alerts_have_labels_annotations_and_a_runbook() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert rule.get("for"), f"{name}: no `for:` duration"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        ann = rule["annotations"]
        assert ann["summary"].strip() and ann["description"].strip(), name
        assert ann["runbook_url"] == RUNBOOKS + name + ".md", name
        assert (ROOT / "docs" / "runbooks" / f"{name}.md").is_file(), f"no runbook page for {name}"


def test_template_alerts_keep_the_unit_labels() -> None:
    """The template alerts aggregate by unit and use `on(...)` joins over the same labels."""
    unit = "(account, space, template_code, language)"
    for rule in alert_rules():
        if rule["alert"].startswith("CamsTemplate"):
            assert f"on {unit}" in rule["expr"], rule["alert"]


def test_recording_rules_follow_the_naming_convention() -> None:
    groups = yaml.safe_load(RECORDING.read_text())["groups"]
    records = [rule["record"] for group in groups for rule in group["rules"]]
    assert "cams:template_read_rate:adjusted_24h" in records
    assert len(records) == len(set(records)), "a series recorded twice"
    for name in records:
        assert re.fullmatch(r"cams:[a-z0-9_]+:[a-z0-9_]+", name), name
    # Within a group (evaluated in order), a rule reads only rules before it, or its own previous
    # value; it may read any rule of another group (its latest value).
    for group in groups:
        mine = [rule["record"] for rule in group["rules"]]
        for i, rule in enumerate(group["rules"]):
            for used in re.findall(r"cams:[a-z0-9_]+:[a-z0-9_]+", rule["expr"]):
                assert used in records, f"{rule['record']} uses {used}, which no rule records"
                if used in mine:
                    assert mine.index(used) <= i, f"{rule['record']} uses {used} before it"


def test_alerts_only_use_recorded_series_that_exist() -> None:
    records = {
        rule["record"]
        for group in yaml.safe_load(RECORDING.read_text())["groups"]
        for rule in group["rules"]
    }
    for rule in alert_rules():
        for used in re.findall(r"cams:[a-z0-9_]+:[a-z0-9_]+", rule["expr"]):
            assert used in records, f"{rule['alert']} uses {used}, which no rule records"


def test_template_rules_are_in_their_own_groups() -> None:
    """Template rules live in cams-template-* (recording) and cams-templates* (alerts), so other
    groups (sender health, for example) can be added beside them."""
    recording = [g["name"] for g in yaml.safe_load(RECORDING.read_text())["groups"]]
    assert recording and all(name.startswith("cams-template-") for name in recording)
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            if rule["alert"].startswith("CamsTemplate"):
                assert group["name"].startswith("cams-templates"), rule["alert"]


def test_series_of_slower_groups_are_read_over_their_interval() -> None:
    """A rule sees another group's series at that group's last evaluation, up to one interval
    ago (groups run at their own offsets in Prometheus; promtool runs them in order at the same
    step, so its tests cannot show this). A plain selector looks back 5 minutes, so a series
    recorded less often than every 2 minutes is read with last_over_time (or another range
    function) over at least its group's interval, unless it comes from the reader's own group
    (evaluated just before it) or is the reader's own previous value."""
    readers = [
        (group["name"], rule.get("record") or rule["alert"], rule["expr"])
        for path in (RECORDING, ALERTS)
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    slower = {name for name, (_, every) in recorded().items() if every > PLAIN_READ_S}
    checked = 0
    for group, name, expr in readers:
        checked += sum(
            1 for used in re.findall(r"cams:[a-z0-9_]+:[a-z0-9_]+", expr) if used in slower
        )
        assert missed_reads(expr, group) == [], name
    assert checked >= 20


def _expected_reads_terms() -> list[tuple[float, float]]:
    """(weight, hours over which that share of the reads arrives) of the expected reads."""
    rules = {
        rule["record"]: rule["expr"]
        for group in yaml.safe_load(RECORDING.read_text())["groups"]
        for rule in group["rules"]
    }
    expr = rules["cams:template_reads_expected:sum"]
    hourly = "cams:template_messages_delivered:sum_1h"
    mean = (
        rf"sum_over_time\({hourly}\[(\w+)\]\)"
        r" / scalar\(max\(count_over_time\(cams:template_hourly:evaluations\[(\w+)\]\)\)\)"
    )
    terms = []
    read = r"([0-9.]+) \* last_over_time\((\S+?)\[(\w+)\](?: offset (\w+))?\)"
    for weight, name, window, offset in re.findall(read, expr):
        if name == hourly:
            # the hourly value an hour ago: the deliveries of the hour before count in full
            assert window == offset == "1h", expr
            terms.append((float(weight), 1.0))
            continue
        # a mean over time, recorded every 10 minutes: the hourly values of a window one minute
        # short of whole hours, divided by the number of hourly evaluations in the same window
        # (whatever the interval the rules run at)
        m = re.fullmatch(mean, rules[name])
        assert m and m.group(1) == m.group(2) and not offset, rules[name]
        hours = re.fullmatch(r"(\d+)h59m", m.group(1))
        assert hours, m.group(1)
        terms.append((float(weight), float(int(hours.group(1)) + 1)))
    return terms


def test_the_read_delay_shape_sums_to_one_and_matches_the_header() -> None:
    terms = _expected_reads_terms()
    assert len(terms) >= 3
    assert sum(w for w, _ in terms) == pytest.approx(1.0, abs=1e-9)
    assert [h for _, h in terms] == sorted(h for _, h in terms)
    row = r"^#\s+(\d+)%(?: of them)?\s+(?:over|within) its first\s+(\d+) hours?"
    header = [(int(p) / 100, float(h)) for p, h in re.findall(row, RECORDING.read_text(), re.M)]
    assert header == terms
