"""The mixin: prometheus/*.yml, grafana/dashboards/*.json and both PrometheusRules are what
mixin/generate.py makes of mixin/config.yml, and a config of one's own changes what it says.

The committed files are regenerated and compared byte for byte. A changed config (a job
selector, other thresholds and `for` durations, another runbook base, another stale window and
cluster label) is generated into a temporary directory, where its rules pass `promtool check
rules` and the promtool tests of prometheus/tests still fire and stay silent as they do (the
thresholds they test unchanged), every exporter series the rules and dashboards select carries
the selector, and every dashboard query the cluster matcher.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixin.generate import (
    MixinError,
    add_matchers,
    fill,
    generate,
    load_config,
    words,
)

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = "https://github.com/cams-exporter/cams-exporter/blob/main/docs/runbooks/"
SELECTOR = 'job="cams-exporter"'
MINE = {
    "selector": SELECTOR,
    "runbook_base_url": "https://runbooks.example.com/cams/",
    "stale_window": "45m",
    "dashboards": {"cluster_label": "k8s_cluster"},
    "alerts": {
        "CamsTemplateReadRateDrop": {"below": 0.6, "for": "1h", "severity": "critical"},
        "CamsApiThrottled": {"above": 0.1, "for": "2h"},
        "CamsDataStale": {"after": "2h"},
    },
}
# What the promtool tests rely on: the mine config keeps it (the thresholds they test are
# the default ones); it only adds the job selector, which their series must then carry.
# The alert tests (the campaign scenarios also compare ALERTS samples label by label, which a
# job label changes: they run on the shipped rules in tests/artifacts/test_rules.py).
PROMTOOL_TESTS = [
    p
    for p in sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
    if "promql_expr_test" not in p.read_text()
]


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is not installed (Debian package `prometheus`)"
    return found


def run_generate(config: dict[str, Any], tmp: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """`python -m mixin.generate --config CONFIG --out OUT`, run as a user would, with `config`
    written to tmp/mixin.yml."""
    path = tmp / "mixin.yml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "mixin.generate", "--config", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture(scope="module")
def mine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m mixin.generate --config mine.yml --out DIR`, run as a user would."""
    tmp = tmp_path_factory.mktemp("mixin")
    out = tmp / "out"
    proc = run_generate(MINE, tmp, out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {len(generate(load_config(None)))} files")
    return out


def exprs(rule_file: Path) -> list[str]:
    return [
        rule["expr"]
        for group in yaml.safe_load(rule_file.read_text())["groups"]
        for rule in group["rules"]
    ]


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, its matchers) of every selector of a cams_* or cams:* series."""
    no_strings = re.sub(
        r'\{[^}]*\}|"(?:[^"\\]|\\.)*"',
        lambda m: m.group(0) if m.group(0).startswith("{") else '""',
        expr,
    )
    found = re.findall(r"(?<![\w:{,=])(cams[_:][\w:]*)(\{[^}]*\})?(?!\s*\()", no_strings)
    return [(name, m) for name, m in found]


# --------------------------------------------------------------------------- committed files


@pytest.mark.parametrize("path", sorted(generate(load_config(None))), ids=str)
def test_committed_file_is_what_the_mixin_generates(path: Path) -> None:
    expected = generate(load_config(None))[path]
    committed = (ROOT / path).read_text()
    assert committed == expected, (
        f"{path} differs from what mixin/generate.py makes of mixin/config.yml and its sources "
        "(mixin/rules, mixin/dashboards): edit those, then run python -m mixin.generate"
    )


def test_every_alert_links_its_runbook_and_every_dashboard_has_a_cluster_variable() -> None:
    files = generate(load_config(None))
    alerts = 0
    for name in ("alerts.yml", "sender_alerts.yml"):
        for group in yaml.safe_load(files[Path("prometheus") / name])["groups"]:
            for rule in group["rules"]:
                assert rule["annotations"]["runbook_url"] == f"{RUNBOOKS}{rule['alert']}.md"
                alerts += 1
    assert alerts == 14
    boards = [v for p, v in files.items() if p.suffix == ".json"]
    assert len(boards) == 4
    for text in boards:
        variables = json.loads(text)["templating"]["list"]
        assert [v["name"] for v in variables[:2]] == ["datasource", "cluster"]
        assert variables[1]["query"]["query"] == "label_values(cams_up, cluster)"
        assert variables[1]["allValue"] == ".*"


# --------------------------------------------------------------------------- a config of one's own


def test_my_rules_pass_promtool(mine: Path) -> None:
    files = [str(mine / "prometheus" / n) for n in ("recording.yml", "alerts.yml")]
    files.append(str(mine / "prometheus" / "sender_alerts.yml"))
    files += sorted(map(str, (mine / "prometheus" / "backfill").glob("pass-*.yml")))
    assert len(files) == 3 + 7
    proc = subprocess.run(
        [promtool(), "check", "rules", *files], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_my_rules_select_only_my_job(mine: Path) -> None:
    raw = 0
    names = ("recording.yml", "alerts.yml", "sender_alerts.yml")
    shipped = sum(
        1
        for name in names
        for expr in exprs(ROOT / "prometheus" / name)
        for metric, _ in selectors(expr)
        if metric.startswith("cams_")
    )
    for name in names:
        for expr in exprs(mine / "prometheus" / name):
            for metric, matchers in selectors(expr):
                if metric.startswith("cams_"):
                    assert matchers.startswith("{" + SELECTOR), (metric, expr)
                    raw += 1
                else:
                    assert SELECTOR not in matchers, (metric, expr)
    assert raw == shipped >= 25, (raw, shipped)
    # the rules over backfilled history read the same series, with the same selector
    for path in (mine / "prometheus" / "backfill").glob("pass-*.yml"):
        for expr in exprs(path):
            for metric, matchers in selectors(expr):
                if metric.startswith("cams_"):
                    assert matchers.startswith("{" + SELECTOR), (metric, expr)


def test_my_thresholds_and_links_are_in_the_rules(mine: Path) -> None:
    alerts = {
        rule["alert"]: rule
        for name in ("alerts.yml", "sender_alerts.yml")
        for group in yaml.safe_load((mine / "prometheus" / name).read_text())["groups"]
        for rule in group["rules"]
    }
    read = alerts["CamsTemplateReadRateDrop"]
    assert (read["for"], read["labels"]["severity"]) == ("1h", "critical")
    assert "under 60% of its baseline" in read["annotations"]["description"]
    assert read["annotations"]["runbook_url"] == (
        "https://runbooks.example.com/cams/CamsTemplateReadRateDrop.md"
    )
    throttled = alerts["CamsApiThrottled"]
    assert throttled["for"] == "2h" and "> 0.1" in throttled["expr"]
    assert "for 2 hours." in throttled["annotations"]["description"]
    assert throttled["expr"].count("> 0.1") == 1
    assert alerts["CamsDataStale"]["expr"].count("> 7200") == 3
    recorded = {
        rule["record"]: rule["expr"]
        for group in yaml.safe_load((mine / "prometheus" / "recording.yml").read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    assert recorded["cams:template_read_rate:threshold"].startswith("0.6 * max by")
    stale = recorded["cams:template_data:stale"]  # idle units: 2700 s past their interval
    assert "> 2700\n" in stale and "<= 2700 + max by" in stale
    # the PrometheusRules carry the same rules
    chart = yaml.safe_load((mine / "charts/cams-exporter/files/prometheus-rules.yaml").read_text())
    assert any(
        r.get("alert") == "CamsTemplateReadRateDrop" and r["for"] == "1h"
        for g in chart["groups"]
        for r in g["rules"]
    )
    kustomize = yaml.safe_load((mine / "deploy/kubernetes/prometheusrule.yaml").read_text())
    assert kustomize["spec"]["groups"] == [
        g for g in chart["groups"] if g["name"] != "cams-sender-health"
    ]


# The alerts whose expression aggregates the job label away (sum by, or recorded series).
AGGREGATED = {
    "CamsApiThrottled",
    "CamsTemplateReadRateDrop",
    "CamsTemplateDeliveryRateDrop",
    "CamsTemplateSilent",
}


def job_labelled(test_file: Path) -> dict[str, Any]:
    """A promtool test whose every input series, and every expected alert that keeps the job
    label, has job="cams-exporter"."""
    data = yaml.safe_load(test_file.read_text())
    for case in data["tests"]:
        for series in case.get("input_series", []):
            name = re.sub(r',?job="[^"]*"', "", series["series"]).replace("{,", "{")
            name = name.replace("{}", "")
            if "{" in name:
                series["series"] = name.replace("{", "{" + SELECTOR + ",", 1)
            else:
                series["series"] = name + "{" + SELECTOR + "}"
        for check in case.get("alert_rule_test", []):
            for alert in check.get("exp_alerts", []):
                if check["alertname"] not in AGGREGATED:  # it keeps the series' job
                    alert.setdefault("exp_labels", {})["job"] = "cams-exporter"
    return data


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_tests_pass_on_rules_with_a_job_selector(
    test_file: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The default thresholds with a job selector: the shipped promtool tests, their series
    labelled with the job, fire and stay silent as on the shipped rules."""
    out = tmp_path / "out"
    proc = run_generate({"selector": SELECTOR}, tmp_path, out)
    assert proc.returncode == 0, proc.stderr
    data = job_labelled(test_file)
    data["rule_files"] = [str(out / "prometheus" / Path(f).name) for f in data["rule_files"]]
    path = tmp_path / test_file.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    run = subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_my_dashboards_select_my_job_and_cluster(mine: Path) -> None:
    cluster = 'k8s_cluster=~"$cluster"'
    queries = 0
    shipped = sum(
        len(selectors(t["expr"]))
        for board in (ROOT / "grafana" / "dashboards").glob("*.json")
        for p in all_panels(json.loads(board.read_text())["panels"])
        for t in p.get("targets", [])
    )
    for board in sorted((mine / "grafana" / "dashboards").glob("*.json")):
        data = json.loads(board.read_text())
        variables = data["templating"]["list"]
        assert variables[1]["query"]["query"] == (
            f"label_values(cams_up{{{SELECTOR}}}, k8s_cluster)"
        )
        found = [t["expr"] for p in all_panels(data["panels"]) for t in p.get("targets", [])] + [
            v["query"]["query"] for v in variables[2:] if v["type"] == "query"
        ]
        for expr in found:
            for metric, matchers in selectors(expr):
                assert cluster in matchers, (board.name, metric, expr)
                assert (SELECTOR in matchers) == metric.startswith("cams_"), (metric, expr)
                queries += 1
    assert queries > shipped >= 100, (queries, shipped)  # and the variables' own


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out += all_panels(panel.get("panels", []))
    return out


# --------------------------------------------------------------------------- the pieces


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("cams_up == 0", 'cams_up{job="x"} == 0'),
        (
            'max by (account) (cams_template_info{cams_always_on="true"})',
            'max by (account) (cams_template_info{job="x",cams_always_on="true"})',
        ),
        (
            "rate(cams_api_requests_total[10m]) / on (account) cams:a:b",
            'rate(cams_api_requests_total{job="x"}[10m]) / on (account) cams:a:b{c="y"}',
        ),
        (
            'label_replace(cams:x, "cams_label", "v", "", "")',
            'label_replace(cams:x{c="y"}, "cams_label", "v", "", "")',
        ),
        ("sum by (cams_odd_label) (up)", "sum by (cams_odd_label) (up)"),
    ],
)
def test_add_matchers(expr: str, expected: str) -> None:
    assert add_matchers(expr, 'job="x"', 'c="y"') == expected


def test_durations_in_words() -> None:
    assert [words("k", v) for v in ("1h", "30m", "2h", "1d", "90m", "45s")] == [
        "an hour",
        "30 minutes",
        "2 hours",
        "a day",
        "90 minutes",
        "45 seconds",
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"alerts": {"CamsDataStale": {"after": "an hour"}}}, "alerts.CamsDataStale.after"),
        (
            {"alerts": {"CamsTemplateReadRateDrop": {"below": 70}}},
            "alerts.CamsTemplateReadRateDrop.below",
        ),
        ({"alerts": {"CamsNoSuchAlert": {"for": "5m"}}}, "alerts.CamsNoSuchAlert"),
        ({"dashboards": {"cluster_label": "k8s-cluster"}}, "dashboards.cluster_label"),
    ],
)
def test_a_bad_config_names_its_key(config: dict[str, Any], message: str, tmp_path: Path) -> None:
    proc = run_generate(config, tmp_path, tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("mixin: error: ") and message in line, line
    assert not (tmp_path / "prometheus").exists()


def test_an_unknown_placeholder_names_itself() -> None:
    with pytest.raises(MixinError, match=r"alerts\.Nope\.for: no such key"):
        fill("for: ${alerts.Nope.for}", load_config(None))
