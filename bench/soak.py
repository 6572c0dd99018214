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
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
SECRET = "S3CR3T-cams-soak-7f3a"
FAULTS = "throttle=0.05,5xx=0.03,timeout=0.01,reset=0.02,malformed=0.02,error200=0.02,seed=7"
DAY_MS = 86_400_000
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"soak: {what} did not happen within {timeout:.0f}s")


def proc_status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def parse(text: str) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(series: Series, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, ls), v in series.items()
        if n == name and all(dict(ls).get(k) == x for k, x in labels.items())
    )


def template_counters(series: Series) -> Series:
    return {
        k: v
        for k, v in series.items()
        if k[0].startswith("cams_template_") and k[0].endswith("_total")
    }


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


def sdk_truth(endpoint: str, units: list[tuple[str, str]], origin_ms: int) -> dict[Any, Any]:
    """(code, language) -> (sent, delivered, read, clicks) summed by the official SDK."""
    from alibabacloud_cams20200606 import models
    from alibabacloud_cams20200606.client import Client
    from alibabacloud_tea_openapi.utils_models import Config

    client = Client(
        Config(
            access_key_id="demo",
            access_key_secret=SECRET,
            endpoint=endpoint,
            protocol="http",
            region_id="ap-southeast-1",
        )
    )
    now = int(time.time() * 1000)
    out: dict[Any, Any] = {}
    for code, language in units:
        sent = delivered = read = 0
        clicks: dict[str, int] = {}
        for lower in range(origin_ms, now, 2 * DAY_MS):
            request = models.GetChatappTemplateMetricRequest(
                template_code=code,
                language=language,
                cust_space_id="cams-soak",
                granularity="DAILY",
                start=lower,
                end=min(now, lower + 2 * DAY_MS),
                template_type="WHATSAPP",
            )
            for attempt in range(20):  # the SDK does not retry; the faults are off by now
                try:
                    body = client.get_chatapp_template_metric(request).body
                    break
                except Exception:
                    if attempt == 19:
                        raise
                    time.sleep(0.2)
            for row in body.data or []:
                sent += row.sent_count or 0
                delivered += row.delivered_count or 0
                read += row.read_count or 0
                for click in row.cliented or []:
                    clicks[click.button_content] = clicks.get(click.button_content, 0) + (
                        click.count or 0
                    )
        out[(code, language)] = (sent, delivered, read, {k: v for k, v in clicks.items() if v})
    return out


def ours(series: Series) -> dict[Any, Any]:
    out: dict[Any, list[Any]] = {}
    for (name, labels), v in series.items():
        d = dict(labels)
        key = (d.get("template_code"), d.get("language"))
        if not name.startswith("cams_template_") or not name.endswith("_total"):
            continue
        entry = out.setdefault(key, [0, 0, 0, {}])
        if name == "cams_template_messages_sent_total":
            entry[0] = int(v)
        elif name == "cams_template_messages_delivered_total":
            entry[1] = int(v)
        elif name == "cams_template_messages_read_total":
            entry[2] = int(v)
        elif name == "cams_template_button_clicks_total" and v:
            entry[3][d["button"]] = int(v)
    return {k: (e[0], e[1], e[2], e[3]) for k, e in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--templates", type=int, default=50, help="templates (x2 languages)")
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    duration = args.duration

    work = Path(tempfile.mkdtemp(prefix="cams-soak-"))
    sim_port, exp_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    exp_url = f"http://127.0.0.1:{exp_port}"
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=5)
    midnight = dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)
    origin_ms = int(midnight.timestamp() * 1000)
    config = work / "cams.yml"
    config.write_text(
        "poll:\n  interval: 10s\n  lookback: 3d\n  max_range: 10d\n  discovery_interval: 30s\n"
        f"  counters_since: {since.isoformat()}\n  timeout: 2s\n  max_retries: 2\n"
        f"state:\n  path: {work / 'state.json'}\n"
        "accounts:\n  - name: soak\n"
        f"    endpoint: {sim_url}\n"
        "    credentials: {access_key_id: demo, access_key_secret: '${SOAK_SECRET}'}\n"
        "    qps: 20\n    list_qps: 2\n"
        "    spaces: [{cust_space_id: cams-soak}]\n"
    )
    env = {**os.environ, "SOAK_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    sim_log = open(work / "simulator.log", "wb")  # noqa: SIM115 - closed in finally
    exp_log_path = work / "exporter.log"
    exp_log = open(exp_log_path, "wb")  # noqa: SIM115 - closed in finally
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "simulate",
            "--listen",
            f"127.0.0.1:{sim_port}",
            "--templates",
            str(args.templates),
            "--static",
            "--access-key-secret",
            SECRET,
            "--qps-limit",
            "1000",
            "--list-qps-limit",
            "50",
            "--faults",
            FAULTS,
            "--timeout-fault",
            "3",
        ],
        stdout=sim_log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    exporter: subprocess.Popen[bytes] | None = None
    session = requests.Session()
    problems: list[str] = []
    samples: list[dict[str, float]] = []
    try:
        wait_for("the simulator", lambda: requests.get(f"{sim_url}/_sim/stats", timeout=2).ok, 30)
        exporter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--config.file",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{exp_port}",
                "--log.format",
                "logfmt",
            ],
            stdout=exp_log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        pid = exporter.pid

        def ready() -> bool:
            if exporter is not None and exporter.poll() is not None:
                raise SystemExit(f"soak: the exporter exited, see {exp_log_path}")
            return requests.get(f"{exp_url}/-/ready", timeout=2).ok

        wait_for("the first poll", ready, 120)

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
                exporter.send_signal(signal.SIGHUP)
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
                    "rss_mb": proc_status(pid, "VmRSS") / 1024,
                    "fds": open_fds(pid),
                    "threads": proc_status(pid, "Threads"),
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
        wait_for(
            "a clean poll cycle after the faults",
            lambda: (
                value(
                    parse(session.get(f"{exp_url}/metrics", timeout=30).text),
                    "cams_poll_last_success_timestamp_seconds",
                    account="soak",
                )
                > ended + 1
            ),
            120,
        )
        final = parse(session.get(f"{exp_url}/metrics", timeout=30).text)
        for key, old in template_counters(previous).items():
            if final.get(key, old) < old:
                decreases += 1
        mine = ours(final)
        truth = sdk_truth(f"127.0.0.1:{sim_port}", sorted(mine), origin_ms)
        wrong = [k for k in truth if truth[k] != mine.get(k)]
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
        if exporter is not None:
            if exporter.poll() is None:
                exporter.send_signal(signal.SIGTERM)
            try:
                exporter.wait(30)
            except subprocess.TimeoutExpired:
                exporter.kill()
                exporter.wait(10)
        if simulator.poll() is None:
            simulator.terminate()
            try:
                simulator.wait(10)
            except subprocess.TimeoutExpired:
                simulator.kill()
                simulator.wait(10)
        sim_log.close()
        exp_log.close()
        session.close()

    log = exp_log_path.read_text()
    if SECRET in log:
        problems.append("the secret is in the exporter's log")
    if "Traceback" in log:
        problems.append("a traceback in the exporter's log")
    if exporter.returncode != 0:
        problems.append(f"the exporter exited with {exporter.returncode}")

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
    sys.exit(main())
