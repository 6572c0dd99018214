"""What `promtool tsdb create-blocks-from rules` makes of prometheus/recording.yml over
backfilled history (issue 27): every recorded series, level by level.

The simulator (static, 30 days of history) is backfilled (`cams-exporter backfill`, then
`promtool tsdb create-blocks-from openmetrics`) into the data directory of a Prometheus that
scrapes nothing. A rule group can read only what that Prometheus already holds, so the groups
are evaluated in passes, by level: level 1 reads only the exporter's series, level n reads
recorded series of lower levels (a group that reads its own past counts as reading its level).
After each pass the new blocks are moved into the data directory and Prometheus is restarted.
The table gives, for each record, its group's interval, and the samples and series it got over
the evaluated days; then each pass's time.

Run: `python bench/backfill_rules.py [--days 2] [--templates 3]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness
from tests.kit.configs import Account, config_text
from tests.kit.procs import ROOT, Children, Service, child_env, start_prometheus
from tests.kit.waits import wait_http

DAY_S = 86400
HISTORY_DAYS = 30
_RECORDED = re.compile(r"cams:[a-z0-9_:]+")


def levels(groups: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Group name -> its level (1: reads no recorded series)."""
    recorded_by = {rule["record"]: g["name"] for g in groups for rule in g["rules"]}
    reads = {
        g["name"]: {recorded_by[n] for r in g["rules"] for n in _RECORDED.findall(r["expr"])}
        - {g["name"]}
        for g in groups
    }
    level: dict[str, int] = {}
    while len(level) < len(groups):
        for name, needs in reads.items():
            if name not in level and needs <= level.keys():
                level[name] = 1 + max((level[n] for n in needs), default=0)
    return level


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2, help="days the rules are evaluated over")
    parser.add_argument("--templates", type=int, default=3, help="templates (x en,es)")
    args = parser.parse_args(argv)
    groups = yaml.safe_load((ROOT / "prometheus" / "recording.yml").read_text())["groups"]
    level = levels(groups)
    junction = int(time.time()) // DAY_S * DAY_S
    start = junction - args.days * DAY_S
    rows: list[tuple[int, str, str, str, int, int]] = []
    passes: list[tuple[int, int, float]] = []
    baselines: set[str] = set()  # the `baseline` label values recorded (own, peers, floor)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-rules-") as tmp:
        work = Path(tmp)
        children = Children(work)
        prom: Service | None = None
        try:
            sim = harness.start_simulator(
                children,
                "simulator",
                ["--templates", str(args.templates), "--static", "--history", f"{HISTORY_DAYS}d"],
            )
            since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=HISTORY_DAYS)
            config = work / "config.yml"
            account = Account(sim.url, spaces=({"cust_space_id": "cams-bench"},))
            config.write_text(config_text(account, poll={"counters_since": since.isoformat()}))
            history = work / "history.om"
            command = [sys.executable, "-m", "exporter", "backfill", "--config.file", str(config)]
            subprocess.run(
                [*command, "--output", str(history)],
                env=child_env(),
                check=True,
                timeout=600,
                capture_output=True,
            )
            data = work / "data"
            promtool = ["promtool", "tsdb", "create-blocks-from"]
            subprocess.run(
                [*promtool, "openmetrics", "-q", str(history), str(data)], check=True, timeout=600
            )
            prom_config = work / "prometheus.yml"
            prom_config.write_text("global: {}\nscrape_configs: []\n")

            def started(n: int) -> Service:
                service = start_prometheus(
                    work / f"prometheus-{n}.log",
                    prom_config,
                    data,
                    f"--storage.tsdb.retention.time={HISTORY_DAYS + 30}d",
                )
                wait_http(f"{service.url}/-/ready", timeout=120)
                return service

            prom = started(0)
            for n in range(1, max(level.values()) + 1):
                chosen = [g for g in groups if level[g["name"]] == n]
                rules = work / f"level-{n}.yml"
                rules.write_text(yaml.safe_dump({"groups": chosen}, sort_keys=False))
                out = work / f"rules-{n}"
                began = time.monotonic()
                subprocess.run(
                    [*promtool, "rules", f"--url={prom.url}", f"--start={start}",
                     f"--end={junction}", f"--output-dir={out}", str(rules)],
                    check=True, timeout=3600, capture_output=True,
                )  # fmt: skip
                passes.append((n, len(chosen), time.monotonic() - began))
                prom.stop(timeout=30)
                for block in out.iterdir():
                    shutil.move(str(block), data / block.name)
                prom = started(n)
                for group in chosen:
                    for rule in group["rules"]:
                        name = rule["record"]
                        span = f"{junction - start}s"
                        query = f"count_over_time({{__name__={name!r}}}[{span}])"
                        params: dict[str, str | int] = {"query": query, "time": junction}
                        got = requests.get(f"{prom.url}/api/v1/query", params=params, timeout=60)
                        result = got.json()["data"]["result"]
                        samples = int(sum(float(r["value"][1]) for r in result))
                        interval = str(group.get("interval", "-"))
                        rows.append((n, group["name"], name, interval, samples, len(result)))
                        sources = {r["metric"].get("baseline") for r in result} - {None}
                        if sources:
                            baselines.update(str(s) for s in sources)
        finally:
            if prom is not None:
                prom.stop(timeout=30)
            children.stop_all()
    units = args.templates * 2
    print(
        f"{units} template-languages, {HISTORY_DAYS} days backfilled, rules over {args.days} days"
    )
    print("| level | group | record | interval | samples | series |")
    print("|---|---|---|---|---|---|")
    for n, group_name, name, interval, samples, series in rows:
        print(f"| {n} | {group_name} | {name} | {interval} | {samples} | {series} |")
    print(f"\nbaseline sources recorded: {', '.join(sorted(baselines)) or 'none'}\n")
    print("| pass (level) | groups | promtool s |")
    print("|---|---|---|")
    for n, count, seconds in passes:
        print(f"| {n} | {count} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
