"""The sender-health alerting rules: promtool accepts them, every alert has unit tests that fire
and that don't, each carries a severity, the three annotations and a runbook_url pointing at
its page in docs/runbooks/, and every series they read is one the exporter's sender-health
collectors produce."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from exporter.cams.sender_model import HealthError, PhoneNumber
from exporter.publish.sender_collector import sender_collectors
from exporter.publish.snapshot import Snapshot
from exporter.senders.view import EntityHealth, NumberView, SenderStatus

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = "https://github.com/cams-exporter/cams-exporter/blob/main/docs/runbooks/"
RULES = ROOT / "prometheus" / "sender_alerts.yml"
UNIT_TESTS = ROOT / "prometheus" / "tests" / "sender_alerts_test.yml"
EXPECTED = {
    "CamsPhoneNumberQualityDegraded",
    "CamsPhoneNumberQualityRed",
    "CamsPhoneNumberMessagingLimitLowered",
    "CamsPhoneNumberNotConnected",
    "CamsWabaCannotSend",
    "CamsPhoneNumberCannotSend",
    "CamsTemplateCannotSend",
    "CamsSenderHealthStale",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool is not installed (Debian package `prometheus`)"
    return subprocess.run(
        [path, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_and_unit_tests_pass() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0 and "SUCCESS: 8 rules found" in checked.stdout, checked
    tested = promtool("test", "rules", str(UNIT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout and "FAILED" not in tested.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    doc = yaml.safe_load(UNIT_TESTS.read_text())
    assert "../sender_alerts.yml" in doc["rule_files"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names == EXPECTED
    assert names - firing == set(), "never tested firing"
    assert names - silent == set(), "never tested silent"


def test_alerts_have_labels_annotations_and_a_runbook() -> None:
    overview = (ROOT / "docs" / "alerts.md").read_text()
    section = overview.split("\n## Sender health alerts\n", 1)[1].split("\n## ", 1)[0]
    for rule in alerts():
        name = rule["alert"]
        assert rule.get("for"), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == RUNBOOKS + name + ".md", name
        body = (ROOT / "docs" / "runbooks" / f"{name}.md").read_text()
        for part in ("## What it means", "## Likely causes", "## What to do"):
            assert f"\n{part}\n" in body, (name, part)
    assert "prometheus/sender_alerts.yml" in section


def test_rules_read_only_series_the_exporter_exports() -> None:
    status = SenderStatus(
        account="main",
        numbers=(NumberView("s", PhoneNumber("1", "n", "CONNECTED", "GREEN", "TIER_50"), 1e4),),
        health=(
            EntityHealth("waba", "s", "AVAILABLE", waba_id="9"),
            EntityHealth("phone", "s", "LIMITED", phone_number="1", errors=(HealthError("7"),)),
            EntityHealth("template", "s", "BLOCKED", template_code="t", language="en"),
        ),
        numbers_listed=(("s", 1.0),),
        health_enabled=True,
        health_interval_s=900,
        health_targets=3,
        health_round_finished=2.0,
        health_round_duration=1.0,
    )
    registry = CollectorRegistry(auto_describe=False)
    for collector in sender_collectors(Snapshot(senders=(status,))):
        registry.register(collector)
    exported = set(re.findall(r"^(cams_\w+)\{", generate_latest(registry).decode(), re.MULTILINE))
    for rule in alerts():
        used = set(re.findall(r"\b(cams_\w+)", rule["expr"]))
        assert used and used <= exported, (rule["alert"], used - exported)
