"""What `promtool tsdb create-blocks-from rules` makes of prometheus/backfill/pass-N.yml over
backfilled history (issue 27): every recorded series, pass by pass, and each pass's time.

The simulator (static, 30 days of history) is backfilled (`cams-exporter backfill`, then
`promtool tsdb create-blocks-from openmetrics`) into the data directory of a Prometheus that
scrapes nothing. A rule group can read only what that Prometheus already holds, so the rules
the baselines need come in passes (mixin/backfill.py): pass 1 reads only the exporter's series,
pass n recorded series of earlier passes. After each pass the new blocks are moved into the data
directory and Prometheus is restarted. The table gives, for each record, its group's interval,
and the samples and series it got over the evaluated days; then the `baseline` sources recorded
at each of the last 7 days' 23:00, and each pass's time.

Run: `python bench/backfill_rules.py [--days 16] [--templates 3]` (16 days: the past week's
baselines read 8 days back, their expected reads 32 hours more).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=16, help="days the rules are evaluated over")
    parser.add_argument("--templates", type=int, default=3, help="templates (x en,es)")
    args = parser.parse_args(argv)
    files = sorted(
        (ROOT / "prometheus" / "backfill").glob("pass-*.yml"), key=lambda p: int(p.stem[5:])
    )
    junction = int(time.time()) // DAY_S * DAY_S
    start = junction - args.days * DAY_S
    rows: list[tuple[int, str, str, str, int, int]] = []
    passes: list[tuple[int, int, float]] = []
    baselines: dict[str, int] = {}  # units x days judged against each source (own, peers, floor)
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
            for n, rules in enumerate(files, start=1):
                chosen = yaml.safe_load(rules.read_text())["groups"]
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
                        if name == "cams:template_read_rate:baseline":
                            for k in range(1, 8):
                                at = junction - k * DAY_S - 3600
                                # its last value: the group evaluates at an offset of its own
                                last = f"last_over_time({name}[599s])"
                                params = {"query": last, "time": at}
                                got = requests.get(
                                    f"{prom.url}/api/v1/query", params=params, timeout=60
                                )
                                for r in got.json()["data"]["result"]:
                                    source = str(r["metric"]["baseline"])
                                    baselines[source] = baselines.get(source, 0) + 1
        finally:
            if prom is not None:
                prom.stop(timeout=30)
            children.stop_all()
    units = args.templates * 2
    print(
        f"{units} template-languages, {HISTORY_DAYS} days backfilled, rules over {args.days} days"
    )
    print("| pass | group | record | interval | samples | series |")
    print("|---|---|---|---|---|---|")
    for n, group_name, name, interval, samples, series in rows:
        print(f"| {n} | {group_name} | {name} | {interval} | {samples} | {series} |")
    judged = ", ".join(f"{source} {count}" for source, count in sorted(baselines.items()))
    print(f"\nbaselines at 23:00 of the last 7 days (units x days): {judged or 'none'}\n")
    print("| pass | groups | promtool s |")
    print("|---|---|---|")
    for n, count, seconds in passes:
        print(f"| {n} | {count} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
