"""Grafana dashboards: structure, provisioning, and every panel query against real data.

The live part starts the demo exporter (`python -m exporter --demo`) and a real Prometheus that
scrapes it every second and evaluates prometheus/recording.yml and alerts.yml, then runs every
panel target, with its variables filled in from the exporter's own labels, through
/api/v1/query and expects data. Only the targets listed in WEEK_AGO (comparisons with
`offset 1w`) may come back empty: the test's Prometheus holds seconds of data, not a week.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.kit.procs import Children, start_exporter, start_prometheus
from tests.kit.waits import wait_until

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
PROVISIONING = ROOT / "grafana" / "provisioning"
RECORDING = ROOT / "prometheus" / "recording.yml"
ALERTS = ROOT / "prometheus" / "alerts.yml"

REQUIRED_VARIABLES = ("datasource", "account", "space", "template", "language")
# (dashboard uid, panel title, refId) of the week-ago comparisons, the only targets that may
# return nothing in a Prometheus that is seconds old.
WEEK_AGO = {
    ("cams-template", "Read rate (rolling 24h) against last week", "B"),
}
# What the built-in Grafana variables become in the live queries.
BUILTINS = {"__range": "5m", "__rate_interval": "30s", "__interval": "5s"}
# Variable values are picked from these series when present, so that the drill-down shows a
# template that has buttons (and click panels have data).
PREFERRED = {
    "template": ('cams_template_button_clicks_total{account=~"$account"}', "template_code")
}

VAR_REF = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")
DEADLINE_S = 60


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that queries (rows and their nested panels included, rows themselves not)."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return dashboard["templating"]["list"]


def var_query(var: dict[str, Any]) -> str:
    query = var.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    return str(query or var.get("definition") or "")


def references(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in VAR_REF.finditer(text)}


# --------------------------------------------------------------------------- structure


def test_there_are_three_dashboards() -> None:
    uids = {load(p)["uid"] for p in DASHBOARDS}
    assert uids == {"cams-campaigns", "cams-template", "cams-exporter-health"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dash = load(path)
    assert dash["uid"] and len(dash["uid"]) <= 40
    assert dash["title"].strip()
    assert dash["schemaVersion"] >= 39
    assert "id" not in dash or dash["id"] is None, "provisioned dashboards must not pin an id"
    ids = [p["id"] for p in dash["panels"]] + [
        p["id"] for row in dash["panels"] for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in panels(dash)]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    found = list(panels(dash))
    assert found
    for panel in found:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], f"{title}: no target"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target["expr"].strip(), title
            assert target.get("datasource", panel["datasource"])["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, title


def test_uids_and_titles_are_unique() -> None:
    dashes = [load(p) for p in DASHBOARDS]
    assert len({d["uid"] for d in dashes}) == len(dashes)
    assert len({d["title"] for d in dashes}) == len(dashes)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_variables(path: Path) -> None:
    dash = load(path)
    by_name = {v["name"]: v for v in variables(dash)}
    assert set(REQUIRED_VARIABLES) <= set(by_name)
    ds = by_name["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for name in REQUIRED_VARIABLES[1:]:
        var = by_name[name]
        assert var["type"] == "query", name
        assert var["datasource"]["uid"] == "${datasource}", name
        query = var_query(var)
        assert query.startswith(("label_values(", "query_result(")), name
        assert re.search(r"cams_\w+", query), name
        if var.get("includeAll"):
            assert var.get("allValue") == ".*", f"{name}: All must match series without the label"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_referenced_variable_is_defined(path: Path) -> None:
    dash = load(path)
    defined = {v["name"] for v in variables(dash)}
    texts = [json.dumps(p) for p in panels(dash)] + [var_query(v) for v in variables(dash)]
    used = set().union(*(references(t) for t in texts))
    builtin = {u for u in used if u.startswith("__")}
    assert used - builtin <= defined
    # and every defined variable is used somewhere
    assert defined <= used | {"datasource"} | {
        name for v in variables(dash) for name in references(var_query(v))
    }


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_range_and_rate_conventions(path: Path) -> None:
    """Totals use $__range, rates $__rate_interval; no hard-coded short windows."""
    dash = load(path)
    for panel in panels(dash):
        for target in panel["targets"]:
            expr = target["expr"]
            for window in re.findall(r"\[([^\]:]+)\]", expr):
                assert window in {"$__range", "$__rate_interval", "1d"}, (panel["title"], window)
            if "rate(" in expr.replace("irate(", ""):
                assert "$__rate_interval" in expr or "[1d]" in expr, panel["title"]
            if target.get("instant"):
                assert "$__rate_interval" not in expr, panel["title"]


def test_week_ago_list_matches_the_dashboards() -> None:
    found = set()
    for path in DASHBOARDS:
        dash = load(path)
        for panel in panels(dash):
            for target in panel["targets"]:
                if "offset 1w" in target["expr"]:
                    found.add((dash["uid"], panel["title"], target["refId"]))
    assert found == WEEK_AGO


def test_provisioning_files() -> None:
    dash_prov = yaml.safe_load((PROVISIONING / "dashboards" / "cams.yml").read_text())
    assert dash_prov["apiVersion"] == 1
    (provider,) = dash_prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    ds_prov = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert ds_prov["apiVersion"] == 1
    (ds,) = ds_prov["datasources"]
    assert ds["type"] == "prometheus" and ds["url"].startswith("http")


# --------------------------------------------------------------------------- live


class Prom:
    def __init__(self, base: str) -> None:
        self.base = base

    def query(self, expr: str) -> dict[str, Any]:
        resp = requests.get(f"{self.base}/api/v1/query", params={"query": expr}, timeout=10)
        body = resp.json()
        assert body["status"] == "success", (expr, body)
        return body["data"]

    def series(self, match: str) -> list[dict[str, str]]:
        resp = requests.get(f"{self.base}/api/v1/series", params={"match[]": match}, timeout=10)
        body = resp.json()
        assert body["status"] == "success", (match, body)
        return body["data"]


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is not installed (Debian package `prometheus`)"
    tmp = tmp_path_factory.mktemp("prom")
    children = Children(tmp)
    try:
        demo = children.add(start_exporter(tmp / "exporter.log", "--demo"))
        wait_until(lambda: demo.ready(), DEADLINE_S, "the demo exporter to be ready", every=0.5)
        # The rules as shipped, evaluated every second instead of every minute.
        rule_files = []
        for src in (RECORDING, ALERTS):
            doc = yaml.safe_load(src.read_text())
            for group in doc["groups"]:
                group["interval"] = "1s"
            dst = tmp / src.name
            dst.write_text(yaml.safe_dump(doc, sort_keys=False))
            rule_files.append(str(dst))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rule_files,
            "scrape_configs": [
                {"job_name": "cams-exporter", "static_configs": [{"targets": [demo.url[7:]]}]}
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        server = start_prometheus(tmp / "prometheus.log", tmp / "prometheus.yml", tmp / "data")
        client = Prom(children.add(server).url)

        def scraped_enough() -> bool:
            data = client.query("count_over_time(cams_up[1m])")
            samples = [float(r["value"][1]) for r in data["result"]]
            recorded = client.query("cams:template_read_rate:ratio_24h")["result"]
            return bool(samples) and min(samples) >= 12 and bool(recorded)

        wait_until(
            scraped_enough, DEADLINE_S, "Prometheus to scrape the exporter a dozen times", every=0.5
        )
        yield client
    finally:
        children.stop_all()


def substitute(text: str, values: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        return values[name] if name in values else m.group(0)

    return VAR_REF.sub(repl, text)


def candidates(prom: Prom, var: dict[str, Any], values: dict[str, str]) -> list[str]:
    """Evaluate a Grafana Prometheus query variable the way Grafana does."""
    query = substitute(var_query(var), values)
    found: list[str] = []
    if m := re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query):
        selector, label = m.groups()
        found = [s[label] for s in prom.series(selector) if s.get(label)]
    elif m := re.fullmatch(r"query_result\((.+)\)", query):
        for r in prom.query(m.group(1))["result"]:
            labels = ", ".join(f'{k}="{v}"' for k, v in sorted(r["metric"].items()))
            found.append("{" + labels + "} " + r["value"][1])
    else:
        raise AssertionError(f"unsupported variable query {query!r}")
    if regex := var.get("regex"):
        pattern = re.compile(regex.strip("/").replace("(?<", "(?P<"))
        picked = []
        for item in found:
            if m := pattern.search(item):
                picked.append(m.groupdict().get("value") or m.group(1))
        found = picked
    return sorted(set(found))


def resolve(prom: Prom, dash: dict[str, Any]) -> dict[str, str]:
    values = dict(BUILTINS)
    for var in variables(dash):
        if var["type"] == "datasource":
            values[var["name"]] = "prometheus"
            continue
        options = candidates(prom, var, values)
        assert options, f"{dash['uid']}: variable {var['name']} has no value"
        if var["name"] in PREFERRED:
            selector, label = PREFERRED[var["name"]]
            preferred = {s[label] for s in prom.series(substitute(selector, values))}
            options = [o for o in options if o in preferred] or options
        values[var["name"]] = options[0]
    return values


def live_targets() -> list[Any]:
    params = []
    for path in DASHBOARDS:
        dash = load(path)
        for panel in panels(dash):
            for target in panel["targets"]:
                key = (dash["uid"], panel["title"], target["refId"])
                params.append(pytest.param(path, *key, id="/".join(key)))
    return params


@pytest.mark.parametrize(("path", "uid", "title", "ref_id"), live_targets())
def test_panel_query_returns_data(
    prom: Prom, path: Path, uid: str, title: str, ref_id: str
) -> None:
    dash = load(path)
    values = resolve(prom, dash)
    (panel,) = [p for p in panels(dash) if p["title"] == title]
    (target,) = [t for t in panel["targets"] if t["refId"] == ref_id]
    expr = substitute(target["expr"], values)
    assert "$" not in expr, expr
    data = prom.query(expr)
    if (uid, title, ref_id) in WEEK_AGO:
        assert data["resultType"] == "vector"
        return
    assert data["result"], f"no data for {expr}"


def test_variables_resolve_to_the_demo_labels(prom: Prom) -> None:
    for path in DASHBOARDS:
        dash = load(path)
        values = resolve(prom, dash)
        assert values["account"] == "demo"
        assert values["space"] == "cams-demo"
        assert values["language"] in {"en", "es"}
        assert re.fullmatch(r"[0-9a-f]{32}", values["template"]), values["template"]


def test_rules_evaluate_without_errors(prom: Prom) -> None:
    resp = requests.get(f"{prom.base}/api/v1/rules", timeout=10).json()
    assert resp["status"] == "success"
    rules = [rule for group in resp["data"]["groups"] for rule in group["rules"]]
    assert len(rules) >= 18
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    recorded = {rule["name"] for rule in rules if rule["type"] == "recording"}
    for name in recorded:
        if not name.endswith("offset1w"):
            assert prom.query(name)["result"], f"recording rule {name} has no data"
