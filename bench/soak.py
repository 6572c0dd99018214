"""Soak test (issue 7): about 10 minutes of a bad API with the exporter as a user runs it.

    python bench/soak.py                     # 10 minutes, 50 templates x 2 languages
    python bench/soak.py --duration 120      # a short run

The CAMS simulator (`python -m exporter simulate`, static data, a recognisable secret) and the
exporter (`python -m exporter --config.file ...`, state file, poll every 10 s) run as separate
processes on 127.0.0.1. Faults stay on the whole time (throttling, 5xx, timeouts, resets,
malformed bodies, HTTP 200 errors), and on top of them, at fixed points of the run: the access
key is rotated away for 30 s, a template is deleted for 40 s, the simulator's clock is skewed by
20 min for 30 s, and the config is reloaded with SIGHUP every 2 minutes.

Every 5 s it samples the exporter's RSS (VmRSS), open file descriptors (/proc/PID/fd), threads
and /metrics; every template counter must never decrease. At the end the faults stop, one clean
poll cycle runs, and every counter must equal the official SDK's sum over origin..now. The
secret must not be in the exporter's log. It prints the figures (and writes them as JSON to
bench/results/soak-<UTC timestamp>.json); exit status 0 only when everything held.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

if __package__ in (None, ""):  # `python bench/soak.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import run_main
from tests.kit.configs import Account, config_text, days_back
from tests.kit.exact import counters
from tests.kit.oracle import Truth, sdk_client, sdk_sum
from tests.kit.procs import ROOT, Children, child_env, start_exporter, start_simulator
from tests.kit.series import Series, parse, template_counters, value
from tests.kit.waits import wait_until

SECRET = "S3CR3T-cams-soak-7f3a"
FAULTS = "throttle=0.05,5xx=0.03,timeout=0.01,reset=0.02,malformed=0.02,error200=0.02,seed=7"
DAY_MS = 86_400_000
SPACE = "cams-soak"


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return 0.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 3600


def sdk_truth(endpoint: str, units: list[tuple[str, str]], origin_ms: int) -> dict[Any, Truth]:
    """(code, language) -> what the official SDK sums over origin..now, two days a call (the
    SDK does not retry: a call that meets a leftover fault is made again)."""
    client = sdk_client(endpoint, secret=SECRET)
    now = int(time.time() * 1000)

    def total(unit: tuple[str, str]) -> Truth:
        code, language = unit
        return sdk_sum(client, code, language, origin_ms, now, chunk_ms=2 * DAY_MS, space=SPACE)

    out: dict[Any, Truth] = {}
    for unit in units:
        out[unit] = wait_until(
            lambda unit=unit: total(unit), 4, "an SDK read", every=0.2, ignore=(Exception,)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--templates", type=int, default=50, help="templates (x2 languages)")
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    duration = args.duration

    work = Path(tempfile.mkdtemp(prefix="cams-soak-"))
    since, origin_ms = days_back(5)
    env = child_env({"SOAK_SECRET": SECRET})
    children = Children(work)
    simulator = children.add(
        start_simulator(
            work / "simulator.log",
            *("--templates", str(args.templates), "--static", "--access-key-secret", SECRET),
            *("--qps-limit", "1000", "--list-qps-limit", "50"),
            *("--faults", FAULTS, "--timeout-fault", "3"),
            env=env,
        )
    )
    sim_url = simulator.url
    poll = {"interval": "10s", "lookback": "3d", "max_range": "10d", "discovery_interval": "30s"}
    poll |= {"counters_since": since, "timeout": "2s", "max_retries": 2}
    account = Account(
        sim_url,
        name="soak",
        secret="${SOAK_SECRET}",
        qps=20,
        list_qps=2,
        spaces=({"cust_space_id": SPACE},),
    )
    config = work / "cams.yml"
    config.write_text(config_text(account, poll=poll, state=work / "state.json"))
    session = requests.Session()
    problems: list[str] = []
    samples: list[dict[str, float]] = []
    exporter = children.add(
        start_exporter(
            work / "exporter.log", "--config.file", str(config), "--log.format", "logfmt", env=env
        )
    )
    exp_url = exporter.url
    try:
        wait_until(exporter.ready, 120, "the first poll", every=0.2)

        def admin(path: str, body: str) -> None:
            requests.post(f"{sim_url}/_sim/{path}", data=body.encode(), timeout=10)

        codes = sorted(
            {
                d["template_code"]
                for (n, ls) in template_counters(parse(session.get(f"{exp_url}/metrics").text))
                for d in [dict(ls)]
            }
        )
        victim = codes[0]
        # (start, end) of each event as fractions of the run, with what starts and ends it
        events: list[tuple[float, float, str, Callable[[], None], Callable[[], None]]] = [
            (
                0.30,
                0.30 + 30 / duration,
                "key rotated",
                lambda: admin("keys", '{"access_key_id":"demo","access_key_secret":"rotated"}'),
                lambda: admin(
                    "keys", json.dumps({"access_key_id": "demo", "access_key_secret": SECRET})
                ),
            ),
            (
                0.45,
                0.45 + 40 / duration,
                "template deleted",
                lambda: admin("templates/delete", json.dumps({"code": victim})),
                lambda: admin("templates/restore", json.dumps({"code": victim})),
            ),
            (
                0.65,
                0.65 + 30 / duration,
                "clock skew 20 min",
                lambda: admin("clock", '{"offset_seconds": 1200}'),
                lambda: admin("clock", '{"offset_seconds": 0}'),
            ),
        ]
        started_at = time.monotonic()
        active: set[str] = set()
        next_reload = 120.0
        reloads = 0
        previous: Series = {}
        decreases = 0
        print(f"soak: {duration:.0f}s, {args.templates * 2} units, faults {FAULTS}", flush=True)
        while (elapsed := time.monotonic() - started_at) < duration:
            fraction = elapsed / duration
            for start, end, name, begin, finish in events:
                if start <= fraction < end and name not in active:
                    begin()
                    active.add(name)
                    print(f"  {elapsed:5.0f}s {name}", flush=True)
                elif fraction >= end and name in active:
                    finish()
                    active.discard(name)
                    print(f"  {elapsed:5.0f}s {name}: over", flush=True)
            if elapsed >= next_reload:
                exporter.child.process.send_signal(signal.SIGHUP)
                reloads += 1
                next_reload += 120.0
            series = parse(session.get(f"{exp_url}/metrics", timeout=30).text)
            for key, old in template_counters(previous).items():
                new = series.get(key)
                if new is not None and new < old:
                    decreases += 1
            previous = series
            samples.append(
                {
                    "t": elapsed,
                    "rss_mb": exporter.child.rss_mb() or 0.0,
                    "fds": exporter.child.open_fds() or 0,
                    "threads": exporter.child.threads() or 0,
                    "up": value(series, "cams_up", account="soak"),
                }
            )
            time.sleep(5.0)
        for _, _, name, _, finish in events:
            if name in active:
                finish()

        # End of the bad hour: faults off, one clean cycle, then exactness.
        admin("faults", "")
        ended = time.time()
        wait_until(
            lambda: (
                value(
                    parse(session.get(f"{exp_url}/metrics", timeout=30).text),
                    "cams_poll_last_success_timestamp_seconds",
                    account="soak",
                )
                > ended + 1
            ),
            120,
            "a clean poll cycle after the faults",
            every=0.2,
        )
        final = parse(session.get(f"{exp_url}/metrics", timeout=30).text)
        for key, old in template_counters(previous).items():
            if final.get(key, old) < old:
                decreases += 1
        units = sorted(
            {
                (dict(ls)["template_code"], dict(ls)["language"])
                for (_, ls) in template_counters(final)
            }
        )
        truth = sdk_truth(simulator.endpoint, units, origin_ms)
        wrong = [
            k
            for k, want in truth.items()
            if (got := counters(final, *k)).counts() != want.counts()
            or got.nonzero_clicks() != want.nonzero_clicks()
        ]
        if wrong:
            problems.append(f"{len(wrong)} of {len(truth)} units differ from the SDK: {wrong[:3]}")
        if decreases:
            problems.append(f"{decreases} counter decreases")
        if len(truth) != args.templates * 2:
            problems.append(f"{len(truth)} units at the end, expected {args.templates * 2}")
        requests_by_code: dict[str, float] = {}
        for (n, ls), v in final.items():
            if n == "cams_api_requests_total":
                code = dict(ls)["code"]
                requests_by_code[code] = requests_by_code.get(code, 0) + v
    finally:
        code = exporter.stop(signal.SIGTERM, timeout=30)
        children.stop_all()
        session.close()

    log = exporter.log
    if SECRET in log:
        problems.append("the secret is in the exporter's log")
    if "Traceback" in log:
        problems.append("a traceback in the exporter's log")
    if code != 0:
        problems.append(f"the exporter exited with {code}")

    warm = [s for s in samples if s["t"] >= 60.0]
    first = [s for s in warm if s["t"] < 120.0] or warm[:12]
    last = [s for s in samples if s["t"] >= duration - 60.0]

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows) if rows else float("nan")

    figures = {
        "duration_s": round(duration),
        "units": args.templates * 2,
        "faults": FAULTS,
        "samples": len(samples),
        "reloads": reloads,
        "rss_mb_minute_2": round(med(first, "rss_mb"), 1),
        "rss_mb_last_minute": round(med(last, "rss_mb"), 1),
        "rss_mb_max": round(max(s["rss_mb"] for s in samples), 1),
        "rss_mb_per_hour_after_warmup": round(
            slope_per_hour([(s["t"], s["rss_mb"]) for s in warm]), 2
        ),
        "fds_minute_2": med(first, "fds"),
        "fds_last_minute": med(last, "fds"),
        "fds_max": max(s["fds"] for s in samples),
        "threads_max": max(s["threads"] for s in samples),
        "up_share": round(sum(s["up"] for s in samples) / len(samples), 2),
        "api_requests_by_code": {k: int(v) for k, v in sorted(requests_by_code.items())},
        "cycles_failed_units": int(value(final, "cams_poll_errors_total")),
        "state_writes_ok": int(value(final, "cams_state_writes_total", result="ok")),
        "state_writes_error": int(value(final, "cams_state_writes_total", result="error")),
        "exact_units": f"{len(truth) - len(wrong)}/{len(truth)}",
        "counter_decreases": decreases,
        "problems": problems,
    }
    print("\n| figure | value |\n|---|---|")
    for name, item in figures.items():
        print(f"| {name} | {item} |")
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results / f"soak-{stamp}.json"
    out.write_text(json.dumps({"figures": figures, "samples": samples}, indent=1))
    print(f"\nwrote {out}; logs in {work}")
    if problems:
        print("soak FAILED: " + "; ".join(problems))
        return 1
    print("soak OK")
    return 0


if __name__ == "__main__":
    run_main(main)
