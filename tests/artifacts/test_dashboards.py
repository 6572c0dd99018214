"""Grafana dashboards: structure, provisioning, and every panel query against real data.

The live part starts the demo exporter (`python -m exporter --demo`) and a real Prometheus that
scrapes it every second and evaluates prometheus/recording.yml and alerts.yml, then runs every
panel target, with its variables filled in from the exporter's own labels, through
/api/v1/query and expects data. Only the targets listed in WEEK_AGO (comparisons with
`offset 1w`) may come back empty: the test's Prometheus holds seconds of data, not a week.

The demo's counters move slowly (its simulator spreads a day's messages over the day), so once
Prometheus scrapes, the test moves the demo simulator's clock 10 minutes ahead (POST
/_sim/clock, within the 15-minute signature window): the next poll brings ten minutes' worth of
sends, deliveries and reads at once, and the variables pick a template and language that moved.
The recording rules run on a compressed clock: every duration in recording.yml is divided by
COMPRESS (1h becomes 20s, a day 8 minutes), so that within the test's minutes the expected reads,
the late-read adjusted rates and the baselines exist as they do after hours in production.
Every rate panel (unit percentunit) is also queried over the whole run, at every second: no NaN,
no infinity, nothing above 100%.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.kit.procs import Children, start_exporter, start_prometheus
from tests.kit.rules import missed_reads
from tests.kit.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
PROVISIONING = ROOT / "grafana" / "provisioning"
RECORDING = ROOT / "prometheus" / "recording.yml"
ALERTS = ROOT / "prometheus" / "alerts.yml"
SENDER_ALERTS = ROOT / "prometheus" / "sender_alerts.yml"

REQUIRED_VARIABLES = ("datasource", "account", "space", "template", "language")
# (dashboard uid, panel title, refId) of the week-ago comparisons, the only targets that may
# return nothing in a Prometheus that is seconds old.
WEEK_AGO = {
    ("cams-template", "Read rate (late-read adjusted) against its baseline", "E"),
}
# Recorded series that need a day or more of history even on the compressed clock (a day is 8
# minutes there): the settled own and peer read rates (the week before yesterday), the delivery
# baseline and what reads it, the daily rollup (its group runs every 8 minutes there) and who is
# an always-on sender (7 and 21 days of sends).
# Series that exist only while some unit is not read successfully (none here).
EMPTY_WHILE_FRESH = {"cams:template_data:stale"}
NEEDS_HISTORY = {
    "cams:template_messages_read:increase7d_offset1d",
    "cams:template_reads_expected:increase7d_offset1d",
    "cams:template_messages_delivered:increase7d_offset1d",
    "cams:template_messages_sent:increase7d_offset1d",
    "cams:category_read:increase7d_offset1d",
    "cams:template_read_rate:own",
    "cams:template_read_rate:peers",
    "cams:template_delivery_rate:threshold",
    "cams:template_delivery_rate:floor_24h",
    "cams:template_messages_sent:nonzero24h_min1d",
    "cams:template_messages_sent:every_day_since",
    "cams:template_always_on:qualified",
    "cams:template_always_on:flag",
}
# The exporter's default poll interval; per-hour panels use windows of at least twice it.
POLL_S = 300
# What the built-in Grafana variables become in the live queries.
BUILTINS = {"__range": "5m", "__rate_interval": "30s", "__interval": "5s"}
# Variable values are picked from these series when present, so that the drill-down shows a
# template that has buttons (and click panels have data).
# Variable values are picked, when possible, among these queries' results (by value, highest
# first): a template with buttons (so that click panels have data) and the most sends during the
# test, and its language with the most sends.
SENT_5M = "sum by ({by}) (increase(cams_template_messages_sent_total{{{sel}}}[5m]))"
PREFERRED = {
    "template": (
        "sort_desc("
        + SENT_5M.format(by="template_code", sel='account=~"$account"')
        + " and on (template_code) sum by (template_code)"
        ' (cams_template_button_clicks_total{account=~"$account"}))',
        "template_code",
    ),
    "language": (
        "sort_desc("
        + SENT_5M.format(by="language", sel='account=~"$account",template_code=~"$template"')
        + " > 0)",
        "language",
    ),
}
COMPRESS = 180
CLOCK_BUMP_S = 600

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


def test_there_are_four_dashboards() -> None:
    uids = {load(p)["uid"] for p in DASHBOARDS}
    assert uids == {"cams-campaigns", "cams-template", "cams-exporter-health", "cams-sender-health"}


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
                # 20m and 70m: the 10-minute and hourly recorded series, read over a little
                # more than their interval
                allowed = {"$__range", "$__rate_interval", "1d", "20m", "70m"}
                assert window in allowed, (panel["title"], window)
            if "rate(" in expr.replace("irate(", ""):
                assert "$__rate_interval" in expr or "[1d]" in expr, panel["title"]
            if target.get("instant"):
                assert "$__rate_interval" not in expr, panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_slower_recorded_series_are_read_over_their_interval(path: Path) -> None:
    """A series recorded every 10 minutes or hourly, read with a plain selector (5 minutes of
    lookback), would draw a line with gaps between two evaluations."""
    for panel in panels(load(path)):
        for target in panel["targets"]:
            assert missed_reads(target["expr"]) == [], (panel["title"], target["refId"])


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

    def evaluated_since(self, moment: float) -> bool:
        """Every rule group evaluated at least every 1.5 s has evaluated after `moment`."""
        resp = requests.get(f"{self.base}/api/v1/rules", timeout=10).json()
        groups = [g for g in resp["data"]["groups"] if g["interval"] <= 1.5]
        return bool(groups) and all(
            dt.datetime.fromisoformat(g["lastEvaluation"]).timestamp() > moment for g in groups
        )

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
        simulator = demo.child.wait_log(
            re.compile(r"simulator at (http://127\.0\.0\.1:\d+)")
        ).group(1)
        # The alerts as shipped, evaluated every second; the recording rules on a clock COMPRESS
        # times faster, intervals included (at least a second; see the module docstring).
        rule_files = []
        for src in (RECORDING, ALERTS, SENDER_ALERTS):
            doc = yaml.safe_load(src.read_text())
            for group in doc["groups"]:
                if src == RECORDING:
                    group["interval"] = max(
                        "1s", compress(f"[{group['interval']}]", COMPRESS)[1:-1], key=_ms
                    )
                    for rule in group["rules"]:
                        rule["expr"] = compress(rule["expr"], COMPRESS)
                else:
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
            return bool(samples) and min(samples) >= 5

        wait_until(
            scraped_enough, DEADLINE_S, "Prometheus to scrape the exporter five times", every=0.5
        )
        bump = requests.post(
            f"{simulator}/_sim/clock", json={"offset_seconds": CLOCK_BUMP_S}, timeout=5
        )
        assert bump.status_code == 200, bump.text

        def moved() -> bool:
            increases = client.query(
                "increase(cams_template_messages_delivered_total[5m]) > 0"
                " and on (template_code) cams_template_button_clicks_total"
            )["result"]
            adjusted = client.query("cams:template_read_rate:adjusted_6h")["result"]
            return bool(increases) and bool(adjusted)

        wait_until(moved, 90, "ten minutes of messages to reach Prometheus", every=0.5)
        # A few evaluations of the every-second groups with the new counts.
        moved_at = time.time()
        wait_until(
            lambda: client.evaluated_since(moved_at + 3),
            DEADLINE_S,
            "the rules to evaluate the new counts",
            every=0.5,
        )
        yield client
    finally:
        children.stop_all()


UNIT_S = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
DUR = r"(?:\d+[wdhms])+"


def compress(expr: str, factor: int) -> str:
    """`expr` with every duration (offsets, ranges, subquery steps) divided by `factor`."""

    def shorter(text: str) -> str:
        seconds = sum(int(n) * UNIT_S[u] for n, u in re.findall(r"(\d+)([wdhms])", text))
        return f"{max(1, seconds * 1000 // factor)}ms"

    expr = re.sub(rf"offset\s+({DUR})", lambda m: "offset " + shorter(m.group(1)), expr)
    return re.sub(
        rf"\[({DUR})(?::({DUR}))?\]",
        lambda m: f"[{shorter(m.group(1))}" + (f":{shorter(m.group(2))}]" if m.group(2) else "]"),
        expr,
    )


def _ms(duration: str) -> int:
    """Milliseconds of a duration written by compress() ("480000ms") or in seconds ("1s")."""
    return int(duration[:-2]) if duration.endswith("ms") else int(duration[:-1]) * 1000


def test_compress_divides_every_duration() -> None:
    assert compress("x offset 1h + y offset 8d4h", 3600) == "x offset 1000ms + y offset 196000ms"
    assert compress("last_over_time(a[2h]) and b[1d] offset 20d", 3600) == (
        "last_over_time(a[2000ms]) and b[24000ms] offset 480000ms"
    )
    assert compress("max_over_time((a > 0)[7d:1d])", 180) == (
        "max_over_time((a > 0)[3360000ms:480000ms])"
    )
    assert compress("0.7 * a + 1e3 > bool 0", 180) == "0.7 * a + 1e3 > bool 0"


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
        if not options and var["name"] == "cluster":
            # The demo's series carry no cluster label: Grafana then offers only All.
            values["cluster"] = var["allValue"]
            continue
        assert options, f"{dash['uid']}: variable {var['name']} has no value"
        if var["name"] in PREFERRED:
            query, label = PREFERRED[var["name"]]
            ranked = [r["metric"][label] for r in prom.query(substitute(query, values))["result"]]
            options = [o for o in ranked if o in options] or options
        values[var["name"]] = options[0]
    return values


def live_targets(rates_only: bool = False) -> list[Any]:
    """One param per panel query (only the percent panels' with `rates_only`)."""
    params = []
    for path in DASHBOARDS:
        dash = load(path)
        for panel in panels(dash):
            if rates_only and panel["fieldConfig"]["defaults"].get("unit") != "percentunit":
                continue
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
    assert len(rules) >= 30
    for rule in rules:
        # the daily group may not have run yet on the compressed clock (every 8 minutes)
        allowed = {"ok", "unknown"} if rule["name"] in NEEDS_HISTORY else {"ok"}
        assert rule["health"] in allowed, (rule["name"], rule.get("lastError"))
    recorded = {rule["name"] for rule in rules if rule["type"] == "recording"}
    assert recorded >= NEEDS_HISTORY | EMPTY_WHILE_FRESH
    for name in recorded - NEEDS_HISTORY - EMPTY_WHILE_FRESH:
        assert prom.query(name)["result"], f"recording rule {name} has no data"
    # every unit is read at each poll here: none is stale
    for name in EMPTY_WHILE_FRESH:
        assert prom.query(name)["result"] == [], name


@pytest.mark.parametrize(("path", "uid", "title", "ref_id"), live_targets(rates_only=True))
def test_rate_panels_stay_within_0_and_100_percent(
    prom: Prom, path: Path, uid: str, title: str, ref_id: str
) -> None:
    """Over the whole run, at every second: finite, between 0 and 1 (NaN and Inf are
    values Grafana would draw; a rate above 100% is a bug)."""
    dash = load(path)
    values = resolve(prom, dash)
    (panel,) = [p for p in panels(dash) if p["title"] == title]
    (target,) = [t for t in panel["targets"] if t["refId"] == ref_id]
    expr = substitute(target["expr"], values)
    end = time.time()
    resp = requests.get(
        f"{prom.base}/api/v1/query_range",
        params={"query": expr, "start": end - 180, "end": end, "step": 1},
        timeout=20,
    ).json()
    assert resp["status"] == "success", resp
    points = [float(v) for series in resp["data"]["result"] for _, v in series["values"]]
    if (uid, title, ref_id) not in WEEK_AGO:
        assert points, f"no data for {expr}"
    for value in points:
        assert math.isfinite(value) and 0 <= value <= 1, (title, ref_id, value)


def test_rate_panels_guard_their_denominators() -> None:
    """A rate divides by a filtered (`> 0`) or floored denominator and is clamped to 1, or reads a
    recorded rate that is (recording.yml)."""
    recorded = re.compile(
        r"cams:template_(read_rate:(adjusted_6h|adjusted_24h|baseline)|delivery_rate:ratio_24h)\b"
    )
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            if panel["fieldConfig"]["defaults"].get("unit") != "percentunit":
                continue
            for target in panel["targets"]:
                expr = target["expr"]
                # A denominator filtered (`> 0`) or floored at 1 (`clamp_min(..., 1)`): no NaN,
                # no infinity either way.
                floored = "clamp_min(" in expr and ", 1), 1)" in expr
                guarded = "clamp_max(" in expr and ("> 0)" in expr or floored)
                assert guarded or (recorded.search(expr) and " / " not in expr), (
                    panel["title"],
                    target["refId"],
                )


def test_per_hour_panels_span_two_polls() -> None:
    """Panels with a rate of the template counters over $__rate_interval set a minimum interval
    of at least twice the poll interval, so the window always holds a poll's increment."""
    checked = 0
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            exprs = " ".join(t["expr"] for t in panel["targets"])
            if "cams_template_" in exprs and "[$__rate_interval]" in exprs:
                interval = panel.get("interval", "")
                m = re.fullmatch(r"(\d+)([smh])", interval)
                assert m, f"{panel['title']}: no minimum interval"
                seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
                assert seconds >= 2 * POLL_S, panel["title"]
                checked += 1
    assert checked >= 5
