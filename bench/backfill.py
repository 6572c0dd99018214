"""Backfill time and peak memory (issue 27): `cams-exporter backfill` over 1,000
template-languages and 90 days of history, against the simulator on 127.0.0.1.

The simulator (500 templates x en,es, static data, 90 days of history, its default 50/s) and
the command (the account's qps 40, `poll.max_range` 30d, so three calls per unit) run as
separate processes; the backfill's peak memory is its `ru_maxrss`, read when it exits
(`os.wait4`). Then `promtool tsdb create-blocks-from openmetrics` turns the file into blocks,
timed and measured the same way. The limit is the calls at the account's qps: the command
cannot be faster than calls / qps.

Run: `python bench/backfill.py [--templates 500] [--days 90] [--qps 40]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness
from exporter.cams.actions import METRIC_ACTION
from tests.kit.configs import Account, config_text
from tests.kit.procs import Children, child_env

_WROTE = re.compile(r"wrote (\d+) series, (\d+) samples")


def measured(argv: Sequence[str], log: Path) -> tuple[float, float, int]:
    """Run `argv` to its end: (seconds, peak RSS in MiB, exit code)."""
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(list(argv), env=child_env(), stdout=out, stderr=out)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - started, usage.ru_maxrss / 1024, process.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=500, help="templates (x en,es)")
    parser.add_argument("--days", type=int, default=90, help="days of history backfilled")
    parser.add_argument("--qps", type=float, default=40, help="the account's qps")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        work = Path(tmp)
        children = Children(work)
        try:
            flags = ["--templates", str(args.templates), "--languages", "en,es", "--static"]
            sim = harness.start_simulator(
                children, "simulator", [*flags, "--history", f"{args.days}d"]
            )
            since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=args.days)
            space = {"cust_space_id": "cams-bench", "discover": True}
            account = Account(sim.url, "bench", qps=args.qps, list_qps=4, spaces=(space,))
            config = work / "config.yml"
            poll = {"counters_since": since.isoformat(), "max_range": "30d", "timeout": "10s"}
            config.write_text(config_text(account, poll=poll))
            output = work / "history.om"
            command = [sys.executable, "-m", "exporter", "backfill", "--config.file", str(config)]
            seconds, rss, code = measured(
                [*command, "--output", str(output), "--label", "job=cams"], work / "backfill.log"
            )
            log = (work / "backfill.log").read_text()
            if code != 0:
                print(log[-3000:], file=sys.stderr)
                return 1
            calls = sim.action(METRIC_ACTION)["calls"]
            throttled = sim.action(METRIC_ACTION)["throttled"]
        finally:
            children.stop_all()
        match = _WROTE.search(log)
        series, samples = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        size_mb = output.stat().st_size / 2**20
        blocks = work / "blocks"
        promtool = ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q"]
        p_seconds, p_rss, p_code = measured(
            [*promtool, str(output), str(blocks)], work / "promtool.log"
        )
    units = args.templates * 2
    print(
        "| units | days | metric calls | throttled | backfill s | limit s (calls/qps) "
        "| backfill peak RSS MiB | file MiB | series | samples | promtool s "
        "| promtool peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    promtool_s = f"{p_seconds:.1f}" if p_code == 0 else f"failed ({p_code})"
    print(
        f"| {units} | {args.days} | {calls} | {throttled} | {seconds:.1f} "
        f"| {calls / args.qps:.1f} | {rss:.0f} | {size_mb:.1f} | {series} | {samples} "
        f"| {promtool_s} | {p_rss:.0f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
