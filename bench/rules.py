"""Rule evaluation cost at 10,000 template-languages (issue 11, point 5).

    python bench/rules.py                 # 4 accounts x 1,250 templates x 2 languages, ~1 h
    python bench/rules.py --every-2m      # every group every 2 minutes (stress), ~25 min
    python bench/rules.py --accounts 1    # one account of 10,000 units (first poll ~210 s)
    python bench/rules.py --no-history    # a Prometheus without history (what backfill changes)

The simulator (`python -m exporter simulate`) and the exporter (`python -m exporter
--config.file ...`) run as in bench/run.py, on 127.0.0.1. Several accounts on one simulator
(each at the exporter's maximum of 50 calls a second, the simulator allowing their sum) make a
poll of 10,000 units take about a minute instead of ~210 s; the series are the same (account is
one of the unit's labels). The exporter polls every 5 minutes (the default poll.interval), so
that its counters move as in production (standing counters would be stale data after 30
minutes: cams:template_data:stale). The exporter and the simulator run at nice 19: in
production their work is on other machines, and here it waits while Prometheus, the process
measured, wants the two cores. The simulator's traffic is not an audience's: each unit's read
rate is drawn anew each day (25% to 85%) and a day's reads arrive evenly over 3 days, most
likely why, from about half an hour in, thousands of units are pending or firing
CamsTemplateReadRateDrop (not investigated further): the alert group is measured at its most
expensive.

Once the exporter is ready, its counters are read and continued backwards into a history
(bench/history.py): every sample the rules read at their offsets and over their ranges, up to 22
days back, written as TSDB blocks, which an idle Prometheus first compacts. Then a real
Prometheus (Debian's 2.42) starts on that data with prometheus/recording.yml and alerts.yml,
scrapes the exporter every 30 s, and the bench reads `prometheus_rule_group_last_duration_seconds`
after each evaluation of each group, until every group has been evaluated `--evaluations` times
with every unit's series present and at full size (writing at least 90% of its largest output:
the first evaluations of a group fed by others run before their inputs exist, in a chain that
takes most of an hour to fill). Groups run at their shipped intervals (2 and 10 minutes; the
alert groups at Prometheus' default global interval, 1 minute), except that the hourly and
daily ones run every 10 minutes, to be measured within the run: a little more work on the
machine at any moment than in production, where they run 6 and 144 times less often. With
`--every-2m`, every group runs every 2 minutes instead (2.5 times the production load: a
stress test, in which evaluations that coincide slow each other down).

It prints one row per rule group (median and slowest evaluation, series written, target < 1 s),
the slowest rules, and writes everything to bench/results/rules-<timestamp>.json, with the
machine's load average over the measurement (the groups' times are wall-clock times, which other
work on the machine lengthens). A thread samples, every second, the CPU time of Prometheus, the
exporter and the simulator and the machine's busy time (/proc): for each evaluation of 1 s or
more, the output says who was using the cores meanwhile. Everything stops by itself; each wait
is bounded.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import re
import shutil
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):  # `python bench/rules.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client.parser import text_string_to_metric_families

from bench.harness import (
    HOST,
    ROOT,
    Child,
    Children,
    ExporterProcess,
    behind_the_measurement,
    exporter_config,
    http_get,
    machine_info,
    run_main,
    start_exporter,
    start_simulator,
    wait_for,
)
from bench.history import UnitNow, write_history
from exporter.config.durations import format_duration, parse_duration
from tests.kit import procs
from tests.kit.procs import cpu_seconds

LANGUAGES = ("en", "es")
RULE_FILES = ("recording.yml", "alerts.yml")
TARGET_S = 1.0
GLOBAL_INTERVAL = "1m"  # Prometheus' default evaluation_interval: the alert groups' interval
LONGEST_INTERVAL_S = 600.0  # hourly and daily groups run every 10 minutes here
STRESS_INTERVAL = "2m"  # --every-2m


SHIPPED: dict[str, list[dict[str, Any]]] = {
    name: yaml.safe_load((ROOT / "prometheus" / name).read_text())["groups"] for name in RULE_FILES
}
GROUPS = [group["name"] for name in RULE_FILES for group in SHIPPED[name]]
RECORDING_GROUPS = frozenset(group["name"] for group in SHIPPED["recording.yml"])
# Each group's interval in seconds as shipped (the alert groups: the global default).
SHIPPED_INTERVALS = {
    group["name"]: parse_duration(group.get("interval", GLOBAL_INTERVAL))
    for name in RULE_FILES
    for group in SHIPPED[name]
}
JOB = "cams-exporter"
SCRAPE_S = 30
POLL_S = 300  # the exporter's poll.interval (its default)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def units_now(exporter: ExporterProcess) -> list[UnitNow]:
    """Every template-language the exporter exposes, with its counters and category."""
    values: dict[tuple[str, str, str, str], dict[str, float]] = {}
    category: dict[tuple[str, str, str, str], str] = {}
    names = {
        "cams_template_messages_sent": "sent",
        "cams_template_messages_delivered": "delivered",
        "cams_template_messages_read": "read",
    }
    for family in text_string_to_metric_families(exporter.metrics_text()):
        for sample in family.samples:
            labels = sample.labels
            if "template_code" not in labels:
                continue
            key = (labels["account"], labels["space"], labels["template_code"], labels["language"])
            if family.name == "cams_template_info":
                category[key] = labels["category"]
            elif family.name in names and sample.name.endswith("_total"):
                slot = values.setdefault(key, {})
                slot[names[family.name]] = slot.get(names[family.name], 0.0) + sample.value
    out = []
    for key, v in values.items():
        out.append(
            UnitNow(
                *key,
                category=category.get(key, "MARKETING"),
                sent=v.get("sent", 0.0),
                delivered=v.get("delivered", 0.0),
                read=v.get("read", 0.0),
                per_day=v.get("delivered", 0.0) / 3.5,  # the counters start ~3.5 days back
            )
        )
    return out


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


class CpuSampler(threading.Thread):
    """Every second: the CPU seconds so far of each named process, and the machine's busy
    cores (0 to the number of cores) over the last second."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(name="cpu-sampler", daemon=True)
        self._pids = pids
        self._done = threading.Event()
        self.samples: list[dict[str, float]] = []

    def run(self) -> None:
        cores = os.cpu_count() or 1
        last = _machine_ticks()
        while not self._done.wait(1.0):
            now = _machine_ticks()
            busy, total = now[0] - last[0], now[1] - last[1]
            last = now
            row = {"t": time.time(), "machine": cores * busy / total if total else 0.0}
            for name, pid in self._pids.items():
                row[name] = cpu_seconds(pid) or 0.0
            self.samples.append(row)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def during(self, start: float, end: float) -> dict[str, float]:
        """Each process's mean cores used from `start` to `end` (from the samples a second
        either side), and the machine's busiest second in between (cores)."""
        rows = [r for r in self.samples if start - 1 <= r["t"] <= end + 1]
        if len(rows) < 2:
            return {}
        span = rows[-1]["t"] - rows[0]["t"]
        out = {name: (rows[-1][name] - rows[0][name]) / span for name in self._pids}
        out["machine_busiest"] = max(r["machine"] for r in rows[1:])
        return out


def rule_files(work: Path, every_2m: bool) -> list[Path]:
    """The shipped rule files, the hourly and daily groups every 10 minutes (so that they are
    measured within minutes too); with `every_2m`, every group every 2 minutes."""
    out = []
    for name in RULE_FILES:
        groups = copy.deepcopy(SHIPPED[name])
        for group in groups:
            if every_2m:
                group["interval"] = STRESS_INTERVAL
            elif SHIPPED_INTERVALS[group["name"]] > LONGEST_INTERVAL_S:
                group["interval"] = format_duration(LONGEST_INTERVAL_S)
        path = work / name
        path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        out.append(path)
    return out


@dataclass(frozen=True)
class PrometheusProcess:
    child: Child
    port: int

    def stop(self, children: Children) -> None:
        self.child.stop(timeout=60)
        children.started.remove(self.child)


def start_prometheus(
    children: Children, work: Path, target: str | None, data: Path, every_2m: bool = False
) -> PrometheusProcess:
    """Prometheus on `data` (127.0.0.1:0, the port read back); with a target, scraping it and
    evaluating the rules; without one, idle (to let it compact the backfilled blocks first)."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": f"{SCRAPE_S}s",
            "evaluation_interval": STRESS_INTERVAL if every_2m else GLOBAL_INTERVAL,
        }
    }
    if target:
        config["rule_files"] = [str(p) for p in rule_files(work, every_2m)]
        config["scrape_configs"] = [{"job_name": JOB, "static_configs": [{"targets": [target]}]}]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = procs.start_prometheus(
        work / ("prometheus.log" if target else "prometheus-idle.log"),  # each its own log
        work / "prometheus.yml",
        data,
        "--storage.tsdb.retention.time=40d",
        timeout=300,
        new_session=True,
    )
    children.add(server)

    def ready() -> bool:
        if not server.child.alive():
            raise RuntimeError(f"prometheus exited: {server.child.log_tail()}")
        return http_get(server.port, "/-/ready", timeout=5)[0] == 200

    wait_for("prometheus ready", ready, timeout=300, every=1)
    return PrometheusProcess(server.child, server.port)


def query(port: int, expr: str) -> list[dict[str, Any]]:
    from urllib.parse import quote

    status, _, body = http_get(port, f"/api/v1/query?query={quote(expr)}", timeout=60)
    if status != 200:
        raise ValueError(f"query {expr!r} answered {status}")
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def scalar(port: int, expr: str) -> float | None:
    result = query(port, expr)
    return float(result[0]["value"][1]) if result else None


def group_metrics(port: int) -> dict[str, dict[str, float]]:
    """Per rule group: last duration, last evaluation time, samples, rules."""
    _, _, body = http_get(port, "/metrics", timeout=120)
    out: dict[str, dict[str, float]] = {}
    wanted = {
        "prometheus_rule_group_last_duration_seconds": "duration",
        "prometheus_rule_group_last_evaluation_timestamp_seconds": "at",
        "prometheus_rule_group_last_evaluation_samples": "samples",
        "prometheus_rule_group_rules": "rules",
    }
    for line in body.decode().splitlines():
        m = re.match(r'^(\w+)\{rule_group="[^"]*;([^"]+)"\} (\S+)$', line)
        if m and m.group(1) in wanted:
            out.setdefault(m.group(2), {})[wanted[m.group(1)]] = float(m.group(3))
    return out


def own_metric(port: int, name: str) -> float:
    """A sample of Prometheus' own /metrics (it does not scrape itself here)."""
    _, _, body = http_get(port, "/metrics", timeout=120)
    m = re.search(rf"^{re.escape(name)} (\S+)$", body.decode(), re.M)
    return float(m.group(1)) if m else 0.0


def settle_blocks(port: int, timeout: float = 600) -> float:
    """Wait until the number of loaded blocks stops changing for 150 s (compaction of the
    backfilled 2-hour blocks); return it."""
    deadline = time.monotonic() + timeout
    last, since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        blocks = own_metric(port, "prometheus_tsdb_blocks_loaded")
        if blocks != last:
            compactions = own_metric(port, "prometheus_tsdb_compactions_total")
            _log(f"  {blocks:.0f} blocks loaded, {compactions:.0f} compactions")
            last, since = blocks, time.monotonic()
        elif time.monotonic() - since >= 150:
            return blocks
        time.sleep(5)
    return last


def measure(
    port: int, units: int, evaluations: int, timeout: float
) -> dict[str, list[dict[str, float]]]:
    """Evaluations of each group once Prometheus holds every unit's series."""

    def scraped() -> bool:
        n = scalar(port, "count(cams_template_messages_delivered_total)") or 0
        return n >= units

    wait_for("the first full scrape", scraped, timeout=timeout, every=2)
    start = time.time()
    seen: dict[str, list[dict[str, float]]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for group, m in group_metrics(port).items():
            if m.get("at", 0) <= start:
                continue
            evals = seen.setdefault(group, [])
            if not evals or evals[-1]["at"] != m["at"]:
                evals.append(m)
                _log(f"  {group}: {m['duration']:.3f} s, {m.get('samples', 0):.0f} series")
        if len(seen) >= len(GROUPS) and all(
            len(full_size(g, e)) >= evaluations for g, e in seen.items()
        ):
            return seen
        time.sleep(5)
    raise TimeoutError(f"fewer than {evaluations} evaluations of every group in {timeout:.0f}s")


def full_size(group: str, evals: list[dict[str, float]]) -> list[dict[str, float]]:
    """A recording group's evaluations that wrote at least 90% of its largest output so far. A
    group whose inputs come from other groups writes little until they have run (at 10-minute
    intervals, a chain of them takes most of an hour to fill): those evaluations cost next to
    nothing and are not what the goal is about. An alerting group's output is the alerts that
    fire, which come and go: all its evaluations count."""
    if group not in RECORDING_GROUPS:
        return evals
    top = max(e.get("samples", 0) for e in evals)
    return [e for e in evals if e.get("samples", 0) >= 0.9 * top]


def slowest_rules(port: int, count: int = 8) -> list[tuple[str, str, float]]:
    """(group, rule, seconds) of the rules with the longest last evaluation (/api/v1/rules)."""
    _, _, body = http_get(port, "/api/v1/rules", timeout=30)
    rules = [
        (group["name"], rule["name"], float(rule.get("evaluationTime", 0)))
        for group in json.loads(body)["data"]["groups"]
        for rule in group["rules"]
    ]
    return sorted(rules, key=lambda r: -r[2])[:count]


def sustained_per_hour(rows: list[dict[str, Any]]) -> float:
    """Seconds of rule evaluation an hour at the shipped intervals, from each group's median."""
    every = SHIPPED_INTERVALS
    return sum(float(r["median_s"]) * 3600 / every[r["group"]] for r in rows if r["group"] in every)


def table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "rule group",
        "rules",
        "evaluations",
        "median s",
        "slowest s",
        "series written",
        "< 1 s",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        met = "met" if r["max_s"] < TARGET_S else "MISSED"
        lines.append(
            f"| {r['group']} | {r['rules']:.0f} | {r['evaluations']} | {r['median_s']:.3f} | "
            f"{r['max_s']:.3f} | {r['series']:,.0f} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=4, help="accounts sharing the units")
    parser.add_argument("--units", type=int, default=10_000, help="template-languages in all")
    parser.add_argument("--evaluations", type=int, default=3, help="evaluations per group")
    parser.add_argument(
        "--every-2m", action="store_true", help="every group every 2 minutes (a stress test)"
    )
    parser.add_argument("--no-history", action="store_true", help="skip the backfilled history")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep-data", action="store_true", help="keep Prometheus' data dir")
    args = parser.parse_args(argv)
    for binary in ("prometheus", "promtool"):
        if not shutil.which(binary):
            print(f"{binary} is not installed (Debian package `prometheus`)", file=sys.stderr)
            return 2
    per_account = args.units // args.accounts
    templates = per_account // len(LANGUAGES)
    if templates < 1 or templates * len(LANGUAGES) * args.accounts != args.units:
        print("--units must be a multiple of 2 x --accounts", file=sys.stderr)
        return 2
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    work = args.results_dir / f"rules-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    children = Children(work / "logs")
    started = time.monotonic()
    try:
        sim = start_simulator(
            children,
            "simulator",
            [
                "--templates", str(templates),
                "--languages", ",".join(LANGUAGES),
                "--qps-limit", str(50 * args.accounts),
                "--list-qps-limit", str(5 * args.accounts),
            ],
            preexec=behind_the_measurement,
        )  # fmt: skip
        config = exporter_config(
            endpoint=sim.url,
            names=[f"acct{i}" for i in range(args.accounts)],
            qps=50,
            list_qps=5,
            interval_s=POLL_S,
        )
        config_path = work / "exporter.yaml"
        config_path.write_text(config)
        exporter = start_exporter(children, "exporter", config_path, preexec=behind_the_measurement)
        _log(f"exporter polling {args.units} units ({args.accounts} accounts at 50/s)")
        wait_for("exporter ready", exporter.ready, timeout=per_account / 50 * 1.3 + 180, every=2)
        units = units_now(exporter)
        _log(f"exporter ready after {time.monotonic() - started:.0f} s: {len(units)} units")
        data = work / "data"
        longest = parse_duration(STRESS_INTERVAL) if args.every_2m else LONGEST_INTERVAL_S
        # The measurement may last this long: the chain of 10-minute groups takes most of an
        # hour to fill before each group has run --evaluations times at full size.
        timeout = (args.evaluations + 7) * longest + 600
        history: dict[str, Any] = {"written": False}
        if not args.no_history:
            w = write_history(
                units,
                now=time.time(),
                run_s=timeout + 900,  # and the blocks' compaction and Prometheus' start
                work_dir=work / "openmetrics",
                data_dir=data,
                log=_log,
            )
            history = {
                "written": True,
                "samples": w.samples,
                "files": w.files,
                "blocks_s": w.blocks_s,
            }
            _log(f"history: blocks made in {w.blocks_s:.0f} s")
        blocks = 0.0
        if not args.no_history:
            idle = start_prometheus(children, work, None, data)
            blocks = settle_blocks(idle.port)
            idle.stop(children)
        server = start_prometheus(children, work, f"{HOST}:{exporter.port}", data, args.every_2m)
        prom = server.port
        _log(f"prometheus up, {blocks:.0f} blocks loaded; measuring")
        sampler = CpuSampler(
            {
                "prometheus": server.child.pid,
                "exporter": exporter.child.pid,
                "simulator": sim.child.pid,
            }
        )
        sampler.start()
        load_before = os.getloadavg()
        try:
            seen = measure(prom, len(units), args.evaluations, timeout=timeout)
        finally:
            sampler.stop()
        load_after = os.getloadavg()
        rows: list[dict[str, Any]] = []
        for group, every in sorted(seen.items()):
            evals = full_size(group, every)
            durations = [e["duration"] for e in evals]
            rows.append(
                {
                    "group": group,
                    "rules": evals[-1].get("rules", 0),
                    "evaluations": len(evals),
                    "warming_up": [
                        (e["duration"], e.get("samples", 0)) for e in every if e not in evals
                    ],
                    "median_s": statistics.median(durations),
                    "max_s": max(durations),
                    "series": evals[-1].get("samples", 0),
                    "durations_s": durations,
                }
            )
        slow: list[dict[str, Any]] = [
            {"group": group, "at": e["at"], "duration_s": e["duration"]}
            | sampler.during(e["at"], e["at"] + e["duration"])
            for group, every in seen.items()
            for e in full_size(group, every)
            if e["duration"] >= TARGET_S
        ]
        slow.sort(key=lambda r: r["at"])
        slowest = slowest_rules(prom)
        checks = {
            name: scalar(prom, f"count(last_over_time({name}[70m]))")
            for name in (
                "cams:template_reads_expected:sum",
                "cams:template_read_rate:adjusted_24h",
                "cams:template_read_rate:baseline",
                "cams:template_read_rate:own",
                "cams:template_messages_sent:nonzero24h",
            )
        }
        result = {
            "command": "python bench/rules.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
            "started": stamp,
            "machine": machine_info(),
            "units": len(units),
            "accounts": args.accounts,
            "history": history,
            "blocks_loaded": blocks,
            "load_average_1_5_15": {"before": load_before, "after": load_after},
            "groups": rows,
            "series_counts": checks,
            "slowest_rules": slowest,
            "evaluations_over_target": slow,
            "cpu_samples": sampler.samples,
            "seconds": time.monotonic() - started,
            "sustained_s_per_hour": sustained_per_hour(rows),
        }
        (args.results_dir / f"rules-{stamp}.json").write_text(json.dumps(result, indent=2))
        print(table(rows))
        print()
        print("slowest rules (last evaluation): ")
        for group, rule, seconds in slowest:
            print(f"  {seconds:.3f} s  {group}  {rule}")
        print(f"evaluations of {TARGET_S:.0f} s or more: {len(slow)}")
        if slow:
            print("  at (UTC)  group  s  | cores used meanwhile: prometheus exporter simulator,")
            print("  and the machine's busiest second")
        for r in slow:
            at = dt.datetime.fromtimestamp(r["at"], dt.UTC).strftime("%H:%M:%S")
            print(
                f"  {at}  {r['group']}  {r['duration_s']:.3f}  | {r.get('prometheus', 0):.2f} "
                f"{r.get('exporter', 0):.2f} {r.get('simulator', 0):.2f}, "
                f"{r.get('machine_busiest', 0):.2f}"
            )
        print("series present: " + ", ".join(f"{k} {v:.0f}" for k, v in checks.items() if v))
        print(f"history: {history}; blocks loaded {blocks:.0f}; {result['seconds']:.0f} s in all")
        print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}")
        total = sum(r["median_s"] for r in rows)
        print(f"all groups, one evaluation each (median): {total:.2f} s")
        hourly = sustained_per_hour(rows)
        print(
            f"at the shipped intervals (alert groups every {GLOBAL_INTERVAL}): {hourly:.0f} s of "
            f"evaluation an hour, {hourly / 36:.1f}% of one core"
        )
        return 0 if all(r["max_s"] < TARGET_S for r in rows) else 1
    finally:
        children.stop_all()
        if not args.keep_data:
            shutil.rmtree(work / "data", ignore_errors=True)
        shutil.rmtree(work / "openmetrics", ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
