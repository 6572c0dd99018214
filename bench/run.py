"""Benchmarks of issue 6 ("Scale and speed"): poll cycles, throttling, memory, scrapes, backfill.

Run from the repository root (nothing to install beyond the package's own dependencies):

    python bench/run.py            # full run, about 20 minutes
    python bench/run.py --quick    # the 1k scenarios and a small scrape set, about 3 minutes

It prints the tables and writes everything it measured to bench/results/<UTC timestamp>.json
(git-ignored), with the child processes' logs beside it in bench/results/<timestamp>-logs/.

Every scenario runs the CAMS simulator (`python -m exporter simulate ...`) and the exporter
(`python -m exporter --config.file ...`) as separate processes, each with its own GIL, on
127.0.0.1 with free ports; every wait is bounded and every child is stopped at the end.

What is measured, and how:
- cycle: `cams_poll_duration_seconds` of the *second* poll cycle (after discovery and the first
  cycle; discovery is cached, so the second cycle is only the metric calls). The exporter times it
  from the start of the cycle to the end of its last unit. poll.interval leaves a gap of several
  seconds between the cycles, in which the simulator's stats are reset, so the calls, throttling
  and busiest 1-second window of the second cycle are counted alone. Lookback 3d: one
  GetChatappTemplateMetric call per unit per cycle (per-bucket shape; the simulator refuses an
  omitted Language, so the exporter reads per language). limit = units / qps.
- max calls/1s: the simulator's `max_calls_in_1s` for GetChatappTemplateMetric, every arrival
  (throttled ones too), measured on the simulator's side, over the discovery + first cycle and over
  the second cycle (the larger is shown).
- throttled: System.LimitControl answers counted by the simulator (both cycles).
- peak RSS: VmHWM of the exporter process (/proc/<pid>/status) at the end of the scenario.
- scrape: N sequential keep-alive GETs of /metrics, plain and gzip, interleaved with the same
  GETs to a static server (bench/static_server.py, a separate process on the same stdlib HTTP
  stack) serving the bytes the exporter sent; timed from request to last byte. "render" is
  client_python's generate_latest(snapshot_registry(snapshot)) on a Snapshot rebuilt from the
  exporter's own exposition (checked byte for byte), timed in this process: the cost a scrape
  would have if the exporter rendered on every scrape. The 100k-series set uses 4 accounts x 3,500
  units on one simulator that allows 200/s for the shared key (so the first cycle takes ~75 s,
  not ~5 min); "during poll" repeats the GETs while a reload makes every account poll again and
  the publisher re-renders the snapshot in the same process.
- backfill: a fresh exporter (no state) with counters_since = today - 89 days (a 90-day span
  including today) and max_range 30d: GetChatappTemplateMetric calls per unit (simulator) and the
  time from starting the process to /-/ready.
- adaptive: the exporter at qps 40 on a simulator allowing 50/s, with a competing client
  (bench/competitor.py, same access key) sending 25/s for a while: the exporter's calls, throttled
  answers and rate limit per 5-second bin, and how long its rate takes to come back to 40/s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness
from bench import render as rendering
from exporter.cams.actions import LIST_ACTION as LIST
from exporter.cams.actions import METRIC_ACTION as METRIC
from exporter.templates.grouping import CHECKED_TEMPLATES
from tests.kit import procs
from tests.kit.waits import WaitTimeout, wait_until

PAGE_SIZE = 100  # the exporter's ListChatappTemplate page size
LIST_QPS = 4.0
# A cycle's floor is units x (1 + latency) / qps: the transport knows only when a call starts
# and when its answer comes, so a call counts in the rate window from its grant to its answer
# plus a second (the server's 1-second windows are never over qps), and a slower answer holds
# its place longer. The target allows 10% over that floor.
TARGET_CYCLE_RATIO = 1.1
TARGET_SCRAPE_VS_STATIC = 2.0
TARGET_SCRAPE_VS_RENDER = 10.0
TARGET_RSS_MB = 250.0
TARGET_SERIES = 100_000
BACKFILL_SPAN_DAYS = 90

Log = Callable[[str], None]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _write_config(children: procs.Children, name: str, text: str) -> Path:
    path = children.log_dir / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _sim_flags(load: harness.Load, qps_limit: float = 50, list_qps_limit: float = 5) -> list[str]:
    return [
        "--templates",
        str(load.templates),
        "--languages",
        ",".join(load.languages),
        "--latency",
        f"{load.latency:g}",
        "--qps-limit",
        f"{qps_limit:g}",
        "--list-qps-limit",
        f"{list_qps_limit:g}",
        # One call per template-language, as these scenarios measure (bench/read_modes.py
        # measures one call per template).
        "--variant",
        "language-required",
    ]


def _start_simulator(
    children: procs.Children, load: harness.Load, **limits: float
) -> procs.SimulatorProcess:
    """The scenarios' simulator (`_sim_flags`), as the child `simulator`."""
    flags = _sim_flags(load, **limits)
    return harness.start_simulator(children, "simulator", flags)


def _start_exporter(children: procs.Children, config: str) -> procs.ExporterProcess:
    """The scenarios' exporter on `config` (written as `config.yaml`), as the child `exporter`."""
    return harness.start_exporter(children, "exporter", _write_config(children, "config", config))


def _discovery_s(units: int, list_qps: float = LIST_QPS) -> float:
    return math.ceil(units / PAGE_SIZE) * 1.03 / list_qps


def _account_values(text: str) -> dict[str, float]:
    """cams_poll_duration_seconds and cams_poll_last_success_timestamp_seconds, summed, and how
    many accounts have a duration yet."""
    return {
        "duration": harness.sample_sum(text, "cams_poll_duration_seconds"),
        "last_success": harness.sample_sum(text, "cams_poll_last_success_timestamp_seconds"),
        "accounts": float(sum(1 for _ in harness.samples(text, "cams_poll_duration_seconds"))),
    }


def _published_cycle(exporter: procs.ExporterProcess, accounts: int, timeout: float = 30) -> str:
    """/metrics once it carries a finished cycle of every account.

    /-/ready reads the newest snapshot while /metrics serves the newest *rendered* one, so right
    after /-/ready turns 200 the exposition can still be the one from before the cycle ended.
    """

    def check() -> str | None:
        text = exporter.metrics_text()
        return text if _account_values(text)["accounts"] >= accounts else None

    return harness.wait_for("the first cycle on /metrics", check, timeout=timeout)


# --------------------------------------------------------------------------------------------
# Scrape measurement


def measure_scrape(
    exporter: procs.ExporterProcess, children: procs.Children, gets: int, render_runs: int, log: Log
) -> dict[str, Any]:
    """Exporter vs static server vs rendering on every scrape, on the exporter's current data."""
    result, plain, served = compare_with_static(exporter, children, gets, log)
    started = time.perf_counter()
    snapshot = rendering.snapshot_from_exposition(plain.decode("utf-8"))
    rebuild_s = time.perf_counter() - started
    rendered = rendering.render(snapshot)
    same = rendering.same_bytes(rendered, [plain, *served])
    render_times = rendering.time_render(snapshot, render_runs)
    del snapshot
    result |= {
        "render_runs": render_runs,
        "render_same_bytes": same,
        "rebuild_snapshot_s": rebuild_s,
    }
    result["render_plain"] = _dist(render_times["plain_s"])
    result["render_gzip"] = _dist(render_times["gzip_s"])
    for fmt in ("plain", "gzip"):
        result[f"x_faster_than_render_{fmt}"] = (
            result[f"render_{fmt}"]["median_ms"] / result[f"exporter_{fmt}"]["median_ms"]
        )
    kinds = ("exporter", "static", "render")
    medians = [result[f"{kind}_{fmt}"]["median_ms"] for kind in kinds for fmt in ("plain", "gzip")]
    log(
        "  scrape median ms: exporter {:.1f}/{:.1f}, static {:.1f}/{:.1f}, render {:.0f}/{:.0f}"
        " (plain/gzip); render same bytes: {}".format(*medians, same)
    )
    return result


def compare_with_static(
    exporter: procs.ExporterProcess, children: procs.Children, gets: int, log: Log
) -> tuple[dict[str, Any], bytes, list[bytes]]:
    """`gets` keep-alive GETs of the exporter's /metrics, plain and gzip, interleaved with the
    same GETs to a static server of the bytes it sent: (each one's times and their ratio, the
    plain body, the first plain bodies served during the GETs)."""
    status, _, plain = harness.http_get(exporter.port, "/metrics")
    status_gz, headers, zipped = harness.http_get(
        exporter.port, "/metrics", {"Accept-Encoding": "gzip"}
    )
    if status != 200 or status_gz != 200 or headers.get("content-encoding") != "gzip":
        raise RuntimeError("the exporter did not serve /metrics plain and gzipped")
    series = harness.sample_lines(plain)
    plain_path = children.log_dir / "metrics.txt"
    zipped_path = children.log_dir / "metrics.txt.gz"
    plain_path.write_bytes(plain)
    zipped_path.write_bytes(zipped)
    static = children.add(
        procs.serve(
            procs.Service,
            "static-server",
            [
                sys.executable,
                str(procs.ROOT / "bench" / "static_server.py"),
                "--listen",
                procs.LOOPBACK_0,
                "--plain",
                str(plain_path),
                "--gzip",
                str(zipped_path),
            ],
            children.log_dir / "static-server.log",
            procs.STATIC_LISTENING,
            new_session=True,
        )
    )
    port = static.port
    log(f"  scrape: {series} series, {len(plain)} B plain, {len(zipped)} B gzip; {gets} GETs each")
    times: dict[str, list[float]] = {
        "exporter_plain": [],
        "exporter_gzip": [],
        "static_plain": [],
        "static_gzip": [],
    }
    conns = {"exporter": harness.KeepAlive(exporter.port), "static": harness.KeepAlive(port)}
    kinds = [
        ("exporter", "plain"),
        ("static", "plain"),
        ("exporter", "gzip"),
        ("static", "gzip"),
    ]
    served: list[bytes] = []
    try:
        for server, fmt in kinds * 3:  # warm-up
            conns[server].get("/metrics", _encoding(fmt))
        for i in range(gets):
            order = kinds[i % 4 :] + kinds[: i % 4]  # rotate, so no one always goes first
            for server, fmt in order:
                seconds, code, body = conns[server].get("/metrics", _encoding(fmt))
                if code != 200:
                    raise RuntimeError(f"{server} /metrics answered {code}")
                times[f"{server}_{fmt}"].append(seconds)
                if server == "exporter" and fmt == "plain" and i < 3:
                    served.append(body)
    finally:
        for conn in conns.values():
            conn.close()
        static.stop()
    result: dict[str, Any] = {
        "series": series,
        "bytes_plain": len(plain),
        "bytes_gzip": len(zipped),
        "gets": gets,
    }
    for name, values in times.items():
        result[name] = _dist(values)
    for fmt in ("plain", "gzip"):
        exporter_median = result[f"exporter_{fmt}"]["median_ms"]
        result[f"x_static_{fmt}"] = exporter_median / result[f"static_{fmt}"]["median_ms"]
    return result, plain, served


def _encoding(fmt: str) -> dict[str, str]:
    return {"Accept-Encoding": "gzip"} if fmt == "gzip" else {"Accept-Encoding": "identity"}


def _dist(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(seconds),
        "median_ms": harness.median(seconds) * 1000,
        "p99_ms": harness.percentile(seconds, 99) * 1000,
        "min_ms": min(seconds) * 1000,
        "max_ms": max(seconds) * 1000,
    }


def measure_scrape_during_poll(
    exporter: procs.ExporterProcess, sim: procs.SimulatorProcess, seconds: float, log: Log
) -> dict[str, Any]:
    """GETs (plain and gzip alternating) while every account polls again after a reload."""
    before = sim.action(METRIC)["calls"]
    if harness.http_post(exporter.port, "/-/reload") != 200:
        raise RuntimeError("POST /-/reload failed")
    harness.wait_for(
        "the reloaded exporter polling", lambda: sim.action(METRIC)["calls"] > before, timeout=120
    )
    cpu0 = exporter.child.cpu_s() or 0.0
    times, wall = harness.scrape_alternately(exporter.port, seconds)
    cpu = (exporter.child.cpu_s() or 0.0) - cpu0
    calls = sim.action(METRIC)["calls"] - before
    result: dict[str, Any] = {
        "window_s": wall,
        "exporter_cpu_share": cpu / wall,
        "api_calls_in_window": calls,
        "plain": _dist(times["plain"]),
        "gzip": _dist(times["gzip"]),
    }
    log(
        "  during poll: median/p99 ms plain {:.1f}/{:.1f}, gzip {:.1f}/{:.1f}; "
        "exporter CPU {:.0%} of a core, {} API calls in the window".format(
            result["plain"]["median_ms"],
            result["plain"]["p99_ms"],
            result["gzip"]["median_ms"],
            result["gzip"]["p99_ms"],
            result["exporter_cpu_share"],
            calls,
        )
    )
    return result


def wait_quiet(exporter: procs.ExporterProcess, timeout: float = 120.0) -> float:
    """Wait until the exporter uses < 5% of a core over a second (no render in progress)."""
    started = time.monotonic()

    def quiet() -> bool:
        before = exporter.child.cpu_s() or 0.0
        time.sleep(1.0)
        return (exporter.child.cpu_s() or 0.0) - before < 0.05

    harness.wait_for("exporter quiet", quiet, timeout=timeout, every=0)
    return time.monotonic() - started


# --------------------------------------------------------------------------------------------
# Scenarios


def scenario_cycle(
    name: str,
    load: harness.Load,
    *,
    log_dir: Path,
    log: Log,
    scrape_gets: int = 0,
    render_runs: int = 3,
) -> dict[str, Any]:
    """Discovery + first cycle, then the second (steady-state) cycle measured on its own."""
    units, qps, latency = load.units, load.qps, load.latency
    discovery = _discovery_s(units)
    cycle_est = units * 1.03 / qps + latency
    gap = max(8.0, 0.1 * cycle_est)
    interval = max(10, math.ceil(discovery + cycle_est * 1.05 + gap))
    log(f"{name}: {units} units at qps {qps:g}, latency {latency:g}s; poll.interval {interval}s")
    children = procs.Children(log_dir / name)
    try:
        sim = _start_simulator(children, load)
        config = harness.exporter_config(
            endpoint=sim.url, names=["main"], qps=qps, list_qps=LIST_QPS, interval_s=interval
        )
        spawned = time.monotonic()
        exporter = _start_exporter(children, config)
        harness.wait_for(
            "first cycle (ready)", exporter.ready, timeout=discovery + cycle_est * 2 + 60
        )
        ready_s = time.monotonic() - spawned
        first = _account_values(_published_cycle(exporter, 1))
        first_metric = sim.action(METRIC)
        first_list = sim.action(LIST)
        sim.reset()
        cpu0 = exporter.child.cpu_s() or 0.0
        log(
            f"  first cycle {first['duration']:.1f}s (with discovery), ready after {ready_s:.1f}s;"
            f" {first_metric['calls']} metric + {first_list['calls']} list calls"
        )

        def second_done() -> dict[str, float] | None:
            if sim.action(METRIC)["calls"] < units:
                return None
            values = _account_values(exporter.metrics_text())
            changed = values["last_success"] != first["last_success"]
            return values if changed or values["duration"] != first["duration"] else None

        second = harness.wait_for(
            "second cycle", second_done, timeout=interval + cycle_est * 2 + 60, every=0.5
        )
        cpu = (exporter.child.cpu_s() or 0.0) - cpu0
        text = exporter.metrics_text()
        metric = sim.action(METRIC)
        listed = sim.action(LIST)
        cycle = second["duration"]
        limit = units / qps
        result: dict[str, Any] = {
            "kind": "cycle",
            "units": units,
            "templates": load.templates,
            "languages": list(load.languages),
            "qps": qps,
            "latency_s": latency,
            "poll_interval_s": interval,
            "ready_s": ready_s,
            "first_cycle_s": first["duration"],
            "first_cycle_metric_calls": first_metric["calls"],
            "first_cycle_list_calls": first_list["calls"],
            "first_cycle_max_calls_in_1s": first_metric["max_calls_in_1s"],
            "first_cycle_list_max_calls_in_1s": first_list["max_calls_in_1s"],
            "cycle_s": cycle,
            "limit_s": limit,
            "ratio": cycle / limit,
            "cycle_metric_calls": metric["calls"],
            "cycle_list_calls": listed["calls"],
            "cycle_max_calls_in_1s": metric["max_calls_in_1s"],
            "cycle_max_ok_in_1s": metric["max_ok_in_1s"],
            "max_calls_in_1s": max(metric["max_calls_in_1s"], first_metric["max_calls_in_1s"]),
            "throttled": metric["throttled"] + first_metric["throttled"],
            "exporter_throttled_total": harness.sample_sum(text, "cams_api_throttled_total"),
            "poll_errors_total": harness.sample_sum(text, "cams_poll_errors_total"),
            "cycle_exporter_cpu_s": cpu,
            "cycle_exporter_cpu_ms_per_call": cpu * 1000 / max(1, metric["calls"]),
            "series": sum(1 for line in text.splitlines() if line and line[0] != "#"),
            "peak_rss_mb": exporter.child.peak_rss_mb(),
            "threads": exporter.child.threads(),
        }
        result["calls_per_unit"] = metric["calls"] / units
        result["overlap_suspected"] = metric["calls"] != units
        log(
            f"  second cycle {cycle:.2f}s vs limit {limit:.1f}s: ratio {cycle / limit:.3f};"
            f" max calls/1s {result['max_calls_in_1s']}, throttled {result['throttled']},"
            f" peak RSS {result['peak_rss_mb']:.0f} MB, exporter CPU {cpu:.1f}s"
        )
        if scrape_gets:
            result["scrape"] = measure_scrape(exporter, children, scrape_gets, render_runs, log)
            result["peak_rss_mb"] = exporter.child.peak_rss_mb()
        return result
    finally:
        children.stop_all()


def scenario_scrape(
    name: str,
    load: harness.Load,
    *,
    accounts: int,
    gets: int,
    render_runs: int,
    during_poll_s: float,
    log_dir: Path,
    log: Log,
) -> dict[str, Any]:
    """A big /metrics: several accounts on one simulator (each with `load`), then the scrape
    measurements."""
    per_account, qps = load.units, load.qps
    units = accounts * per_account
    log(f"{name}: {accounts} accounts x {per_account} units = {units} units")
    children = procs.Children(log_dir / name)
    try:
        sim = _start_simulator(
            children, load, qps_limit=qps * accounts, list_qps_limit=5 * accounts
        )
        config = harness.exporter_config(
            endpoint=sim.url,
            names=[f"acct{i}" for i in range(accounts)],
            qps=qps,
            list_qps=5,
            interval_s=3600,
        )
        spawned = time.monotonic()
        exporter = _start_exporter(children, config)
        budget = _discovery_s(per_account, 5) + per_account * 1.03 / qps * 3 + 120
        harness.wait_for("first cycle (ready)", exporter.ready, timeout=budget)
        ready_s = time.monotonic() - spawned
        _published_cycle(exporter, accounts)
        quiet_s = wait_quiet(exporter)
        log(f"  ready after {ready_s:.1f}s, quiet {quiet_s:.1f}s later")
        result: dict[str, Any] = {
            "kind": "scrape",
            "accounts": accounts,
            "units": units,
            "ready_s": ready_s,
            "peak_rss_mb_after_first_cycle": exporter.child.peak_rss_mb(),
        }
        result["scrape"] = measure_scrape(exporter, children, gets, render_runs, log)
        result["rss_mb_idle"] = exporter.child.rss_mb()
        if during_poll_s:
            # A reload of an unchanged config leaves polling alone: a changed interval makes
            # the reload start every account's cycle again.
            _write_config(children, "config", config.replace("interval: 3600s", "interval: 3599s"))
            result["during_poll"] = measure_scrape_during_poll(exporter, sim, during_poll_s, log)
        result["peak_rss_mb"] = exporter.child.peak_rss_mb()
        result["series"] = result["scrape"]["series"]
        result["metric_calls"] = sim.action(METRIC)["calls"]
        result["max_calls_in_1s"] = sim.action(METRIC)["max_calls_in_1s"]
        result["throttled"] = sim.action(METRIC)["throttled"]
        log(f"  peak RSS {result['peak_rss_mb']:.0f} MB at {result['series']} series")
        return result
    finally:
        children.stop_all()


def scenario_backfill(
    name: str,
    load: harness.Load,
    *,
    max_range_days: int,
    log_dir: Path,
    log: Log,
) -> dict[str, Any]:
    """A fresh exporter with counters_since 90 days back (today included)."""
    units, qps = load.units, load.qps
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=BACKFILL_SPAN_DAYS - 1)
    per_unit = math.ceil(BACKFILL_SPAN_DAYS / max_range_days)
    # Besides the backfill, the first cycle checks whether one call can read every language of
    # a template (exporter.templates.grouping): each language, the template without Language, each
    # language again, for up to CHECKED_TEMPLATES templates; a fixed cost per account.
    evidence = CHECKED_TEMPLATES * (2 * len(load.languages) + 1)
    limit = units * per_unit / qps
    log(f"{name}: {units} units, counters_since {since}, max_range {max_range_days}d")
    children = procs.Children(log_dir / name)
    try:
        sim = _start_simulator(children, load)
        config = harness.exporter_config(
            endpoint=sim.url,
            names=["main"],
            qps=qps,
            list_qps=LIST_QPS,
            interval_s=3600,
            counters_since=since.isoformat(),
            max_range=f"{max_range_days}d",
        )
        spawned = time.monotonic()
        exporter = _start_exporter(children, config)
        harness.wait_for("backfill (ready)", exporter.ready, timeout=limit * 2 + 60)
        ready_s = time.monotonic() - spawned
        text = _published_cycle(exporter, 1)
        metric = sim.action(METRIC)
        result: dict[str, Any] = {
            "kind": "backfill",
            "units": units,
            "qps": qps,
            "latency_s": load.latency,
            "counters_since": since.isoformat(),
            "max_range_days": max_range_days,
            "target_calls_per_unit": per_unit,
            "grouping_evidence_calls_max": evidence,
            "metric_calls": metric["calls"],
            "list_calls": sim.action(LIST)["calls"],
            "calls_per_unit": metric["calls"] / units,
            "ready_s": ready_s,
            "cycle_s": harness.sample_sum(text, "cams_poll_duration_seconds"),
            "limit_s": limit,
            "ratio": ready_s / limit,
            "max_calls_in_1s": metric["max_calls_in_1s"],
            "throttled": metric["throttled"],
            "poll_errors_total": harness.sample_sum(text, "cams_poll_errors_total"),
            "peak_rss_mb": exporter.child.peak_rss_mb(),
        }
        log(
            f"  {metric['calls']} calls = {result['calls_per_unit']:.2f}/unit, ready after"
            f" {ready_s:.1f}s (limit {limit:.1f}s), max calls/1s {metric['max_calls_in_1s']}"
        )
        return result
    finally:
        children.stop_all()


def scenario_adaptive(
    name: str,
    load: harness.Load,
    *,
    competitor_rate: float,
    phases: tuple[float, float, float],
    log_dir: Path,
    log: Log,
) -> dict[str, Any]:
    """The exporter at `qps` while another client on the same key sends `competitor_rate`/s."""
    units, qps = load.units, load.qps
    base_s, compete_s, recover_s = phases
    log(
        f"{name}: exporter qps {qps:g}, competitor {competitor_rate:g}/s for {compete_s:g}s,"
        " simulator limit 50/s"
    )
    children = procs.Children(log_dir / name)
    stop = threading.Event()
    rows: list[dict[str, float]] = []
    try:
        sim = _start_simulator(children, load)
        config = harness.exporter_config(
            endpoint=sim.url, names=["main"], qps=qps, list_qps=LIST_QPS, interval_s=10
        )
        exporter = _start_exporter(children, config)
        harness.wait_for("polling started", lambda: sim.action(METRIC)["calls"] > 0, timeout=60)

        def sample() -> None:
            while not stop.is_set():
                at = time.time()
                try:
                    text = exporter.metrics_text()
                    metric = sim.action(METRIC)
                except (OSError, ValueError):
                    stop.wait(0.2)
                    continue
                rows.append(
                    {
                        "t": at,
                        "calls": harness.sample_sum(text, "cams_api_requests_total", action=METRIC),
                        "ok": harness.sample_sum(
                            text, "cams_api_requests_total", action=METRIC, code="OK"
                        ),
                        "throttled": harness.sample_sum(
                            text, "cams_api_throttled_total", action=METRIC
                        ),
                        "rate": harness.sample_sum(
                            text, "cams_api_rate_limit_per_second", action=METRIC
                        ),
                        "poll_errors": harness.sample_sum(text, "cams_poll_errors_total"),
                        "sim_calls": metric["calls"],
                        "sim_throttled": metric["throttled"],
                    }
                )
                stop.wait(max(0.0, 1.0 - (time.time() - at)))

        sampler = threading.Thread(target=sample, name="sampler", daemon=True)
        sampler.start()
        t0 = time.time()
        time.sleep(base_s)
        out = children.log_dir / "competitor.json"
        competitor = harness.spawn(
            children,
            "competitor",
            [
                str(procs.ROOT / "bench" / "competitor.py"),
                "--endpoint",
                sim.url,
                "--rate",
                f"{competitor_rate:g}",
                "--duration",
                f"{compete_s:g}",
                "--out",
                str(out),
            ],
        )
        competitor.process.wait(compete_s + 30)
        stopped = time.time()

        # Recovery: until the limit has been back at qps for 10 s, at most recover_s.
        def recovered() -> bool:
            back = [r["t"] for r in list(rows) if r["t"] > stopped and r["rate"] >= qps]
            return bool(back) and time.time() - back[0] >= 10

        with contextlib.suppress(WaitTimeout):
            wait_until(recovered, recover_s, "the limit back at qps for 10 s", every=1.0)
        stop.set()
        sampler.join(10)
        comp = json.loads(out.read_text())
        peak = exporter.child.peak_rss_mb()
    finally:
        stop.set()
        children.stop_all()
    return _adaptive_result(rows, comp, t0, qps, competitor_rate, units, phases, peak, log)


def _adaptive_result(
    rows: list[dict[str, float]],
    comp: dict[str, Any],
    t0: float,
    qps: float,
    competitor_rate: float,
    units: int,
    phases: tuple[float, float, float],
    peak_rss: float | None,
    log: Log,
) -> dict[str, Any]:
    c_start, c_stop = float(comp["started"]), float(comp["stopped"])
    events: list[tuple[float, str]] = [(float(t), str(c)) for t, c in comp["events"]]

    def at(t: float) -> dict[str, float]:
        return min(rows, key=lambda r: abs(r["t"] - t))

    bins = []
    t = t0
    end = rows[-1]["t"]
    while t + 5 <= end + 0.5:
        a, b = at(t), at(t + 5)
        span = max(1e-9, b["t"] - a["t"])
        window = [c for when, c in events if a["t"] <= when < b["t"]]
        phase = "alone" if b["t"] <= c_start else ("competing" if a["t"] < c_stop else "after")
        if a["t"] < c_start < b["t"] or a["t"] < c_stop < b["t"]:
            phase = "edge"
        bins.append(
            {
                "t_s": max(0.0, round(a["t"] - t0, 1)),
                "phase": phase,
                "exporter_calls_per_s": (b["calls"] - a["calls"]) / span,
                "exporter_ok_per_s": (b["ok"] - a["ok"]) / span,
                "exporter_throttled_per_s": (b["throttled"] - a["throttled"]) / span,
                "exporter_rate_limit": b["rate"],
                "competitor_calls_per_s": len(window) / span,
                "competitor_throttled_per_s": sum(1 for c in window if c != "OK") / span,
                "simulator_accepted_per_s": (
                    (b["sim_calls"] - b["sim_throttled"]) - (a["sim_calls"] - a["sim_throttled"])
                )
                / span,
            }
        )
        t += 5
    after = [r for r in rows if r["t"] >= c_stop]
    recovered_at = next((r["t"] for r in after if r["rate"] >= qps), None)
    lowest = min((r["rate"] for r in rows if c_start <= r["t"] <= c_stop + 5), default=qps)

    def mean_rate(lo: float, hi: float) -> float | None:
        inside = [r for r in rows if lo <= r["t"] <= hi]
        if len(inside) < 2:
            return None
        return (inside[-1]["calls"] - inside[0]["calls"]) / (inside[-1]["t"] - inside[0]["t"])

    throttled_in = [r for r in rows if c_start <= r["t"]]
    result: dict[str, Any] = {
        "kind": "adaptive",
        "units": units,
        "qps": qps,
        "competitor_rate": competitor_rate,
        "phases_s": list(phases),
        "competitor_s": c_stop - c_start,
        "competitor_calls": len(events),
        "competitor_throttled": sum(1 for _, c in events if c != "OK"),
        "exporter_throttled": rows[-1]["throttled"] - rows[0]["throttled"],
        "exporter_throttled_while_alone": (
            max((r["throttled"] for r in rows if r["t"] <= c_start), default=0)
            - rows[0]["throttled"]
        ),
        "exporter_throttled_from_competitor_start": (
            throttled_in[-1]["throttled"] - throttled_in[0]["throttled"] if throttled_in else 0
        ),
        "poll_errors": rows[-1]["poll_errors"] - rows[0]["poll_errors"],
        "lowest_rate_limit": lowest,
        "rate_alone_per_s": mean_rate(t0, c_start),
        "rate_competing_per_s": mean_rate(c_start + 5, c_stop),
        "rate_last_10s_per_s": mean_rate(rows[-1]["t"] - 10, rows[-1]["t"]),
        "recovered_to_qps_after_s": None if recovered_at is None else recovered_at - c_stop,
        "peak_rss_mb": peak_rss,
        "bins": bins,
    }
    log(
        "  exporter throttled {} times, competitor {} of {}; lowest limit {:.1f}/s;"
        " rate alone {:.1f}/s, competing {:.1f}/s, last 10s {:.1f}/s;"
        " back at {:g}/s after {}".format(
            int(result["exporter_throttled"]),
            result["competitor_throttled"],
            result["competitor_calls"],
            lowest,
            result["rate_alone_per_s"] or 0,
            result["rate_competing_per_s"] or 0,
            result["rate_last_10s_per_s"] or 0,
            qps,
            "never" if recovered_at is None else f"{result['recovered_to_qps_after_s']:.0f}s",
        )
    )
    return result


# --------------------------------------------------------------------------------------------
# Tables


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def tables(results: dict[str, Any]) -> str:
    out = []
    cycles = [
        (name, r) for name, r in results["scenarios"].items() if r["kind"] in ("cycle", "backfill")
    ]
    if cycles:
        rows = []
        for name, r in cycles:
            rows.append(
                [
                    name,
                    str(r["units"]),
                    _f(r["qps"], 0),
                    _f(r["ready_s"] if r["kind"] == "backfill" else r["cycle_s"], 2),
                    _f(r["limit_s"], 2),
                    _f(r["ratio"], 3),
                    str(r["max_calls_in_1s"]),
                    str(r["throttled"]),
                    _f(r["calls_per_unit"], 2),
                    _f(r["peak_rss_mb"], 0),
                    _f(r.get("cycle_exporter_cpu_ms_per_call"), 2),
                ]
            )
        out.append(
            "Poll cycles (latency per call {}s; cycle = 2nd cycle's cams_poll_duration_seconds;"
            " backfill = process start to /-/ready)\n".format(
                "/".join(sorted({f"{r['latency_s']:g}" for _, r in cycles}))
            )
            + _table(
                [
                    "scenario",
                    "units",
                    "qps",
                    "cycle s",
                    "limit s (units/qps)",
                    "ratio",
                    "max calls/1s",
                    "throttled",
                    "calls/unit",
                    "peak RSS MB",
                    "CPU ms/call",
                ],
                rows,
            )
        )
    scrapes = [
        (name, r, r["scrape"]) for name, r in results["scenarios"].items() if r.get("scrape")
    ]
    if scrapes:
        rows = []
        for name, r, s in scrapes:
            during = r.get("during_poll")
            for fmt in ("plain", "gzip"):
                d = during[fmt] if during else None
                rows.append(
                    [
                        name,
                        str(s["series"]),
                        fmt,
                        _f(s[f"bytes_{fmt}"] / 1e6, 2),
                        "{} / {}".format(
                            _f(s[f"exporter_{fmt}"]["median_ms"], 1),
                            _f(s[f"exporter_{fmt}"]["p99_ms"], 1),
                        ),
                        "{} / {}".format(
                            _f(s[f"static_{fmt}"]["median_ms"], 1),
                            _f(s[f"static_{fmt}"]["p99_ms"], 1),
                        ),
                        _f(s[f"x_static_{fmt}"], 2),
                        _f(s[f"render_{fmt}"]["median_ms"], 0),
                        _f(s[f"x_faster_than_render_{fmt}"], 0),
                        "-" if d is None else f"{_f(d['median_ms'], 1)} / {_f(d['p99_ms'], 1)}",
                        _f(r["peak_rss_mb"], 0),
                    ]
                )
        out.append(
            "Scrapes of /metrics ({} sequential keep-alive GETs each; ms median / p99; render ="
            " generate_latest on the same data{})\n".format(
                "/".join(sorted({str(s["gets"]) for _, _, s in scrapes})),
                ", +gzip for gzip",
            )
            + _table(
                [
                    "scenario",
                    "series",
                    "format",
                    "MB",
                    "exporter ms",
                    "static server ms",
                    "x static",
                    "render ms",
                    "x faster than render",
                    "during poll ms",
                    "peak RSS MB",
                ],
                rows,
            )
        )
    for name, r in results["scenarios"].items():
        if r["kind"] != "adaptive":
            continue
        rows = [
            [
                _f(b["t_s"], 0),
                b["phase"],
                _f(b["exporter_calls_per_s"], 1),
                _f(b["exporter_throttled_per_s"], 1),
                _f(b["exporter_rate_limit"], 1),
                _f(b["competitor_calls_per_s"], 1),
                _f(b["competitor_throttled_per_s"], 1),
                _f(b["simulator_accepted_per_s"], 1),
            ]
            for b in r["bins"]
        ]
        out.append(
            f"Adaptive rate ({name}): exporter qps {r['qps']:g}, competitor"
            f" {r['competitor_rate']:g}/s on the same key, simulator limit 50/s (5-second bins)\n"
            + _table(
                [
                    "t s",
                    "phase",
                    "exporter calls/s",
                    "exporter throttled/s",
                    "exporter limit/s",
                    "competitor calls/s",
                    "competitor throttled/s",
                    "simulator accepted/s",
                ],
                rows,
            )
            + "\nexporter throttled {} (while alone {}), competitor throttled {} of {}, poll"
            " errors {}, lowest limit {:.1f}/s, back at {:g}/s {} after the competitor"
            " stopped".format(
                int(r["exporter_throttled"]),
                int(r["exporter_throttled_while_alone"]),
                r["competitor_throttled"],
                r["competitor_calls"],
                int(r["poll_errors"]),
                r["lowest_rate_limit"],
                r["qps"],
                "never"
                if r["recovered_to_qps_after_s"] is None
                else f"{r['recovered_to_qps_after_s']:.0f}s",
            )
        )
    if results.get("targets"):
        rows = [
            [t["target"], t["measured"], "met" if t["met"] else "MISSED"]
            for t in results["targets"]
        ]
        out.append("Targets\n" + _table(["target", "measured", "result"], rows))
    return "\n\n".join(out)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(target: str, measured: str, met: bool) -> None:
        out.append({"target": target, "measured": measured, "met": bool(met)})

    for name, r in results["scenarios"].items():
        if r["kind"] == "cycle":
            allowed = TARGET_CYCLE_RATIO * (1 + r["latency_s"])
            add(
                f"{name}: cycle <= {TARGET_CYCLE_RATIO} x units x (1 + latency) / qps",
                f"{r['cycle_s']:.2f}s / {r['limit_s']:.2f}s = {r['ratio']:.3f}"
                f" (allowed {allowed:.3f})",
                r["ratio"] <= allowed,
            )
        if r["kind"] in ("cycle", "backfill"):
            add(
                f"{name}: no 1-second window over qps",
                f"max {r['max_calls_in_1s']} calls/1s at qps {r['qps']:g}",
                r["max_calls_in_1s"] <= r["qps"],
            )
        if r["kind"] == "backfill":
            evidence = r["grouping_evidence_calls_max"]
            add(
                f"{name}: <= ceil(90d / max_range) calls per unit (+ the read-grouping check)",
                f"{r['metric_calls']} calls for {r['units']} units = {r['calls_per_unit']:.3f}"
                f"/unit (target {r['target_calls_per_unit']}/unit + at most {evidence})",
                r["metric_calls"] <= r["units"] * r["target_calls_per_unit"] + evidence,
            )
        s = r.get("scrape")
        if s and s["series"] >= TARGET_SERIES:
            for fmt in ("plain", "gzip"):
                add(
                    f"{name}: scrape median <= {TARGET_SCRAPE_VS_STATIC:g} x static ({fmt})",
                    f"{s[f'exporter_{fmt}']['median_ms']:.1f} ms vs"
                    f" {s[f'static_{fmt}']['median_ms']:.1f} ms = {s[f'x_static_{fmt}']:.2f}x",
                    s[f"x_static_{fmt}"] <= TARGET_SCRAPE_VS_STATIC,
                )
                add(
                    f"{name}: scrape >= {TARGET_SCRAPE_VS_RENDER:g} x faster than rendering"
                    f" ({fmt})",
                    f"{s[f'render_{fmt}']['median_ms']:.0f} ms vs"
                    f" {s[f'exporter_{fmt}']['median_ms']:.1f} ms ="
                    f" {s[f'x_faster_than_render_{fmt}']:.0f}x",
                    s[f"x_faster_than_render_{fmt}"] >= TARGET_SCRAPE_VS_RENDER,
                )
            add(
                f"{name}: peak RSS <= {TARGET_RSS_MB:g} MB at >= 100k series",
                f"{r['peak_rss_mb']:.0f} MB at {s['series']} series",
                r["peak_rss_mb"] <= TARGET_RSS_MB,
            )
        if r["kind"] == "adaptive":
            rec = r["recovered_to_qps_after_s"]
            add(
                f"{name}: backs off under contention and recovers to qps",
                "lowest limit {:.1f}/s, back at {:g}/s {}; last 10 s {:.1f} calls/s".format(
                    r["lowest_rate_limit"],
                    r["qps"],
                    "never" if rec is None else f"after {rec:.0f}s",
                    r["rate_last_10s_per_s"] or 0,
                ),
                r["lowest_rate_limit"] < r["qps"] and rec is not None,
            )
    return out


# --------------------------------------------------------------------------------------------
# Plans


Step = tuple[str, Callable[[], dict[str, Any]]]
TWO = ("en", "es")
FOUR = ("en", "es", "pt", "id")


def plan(mode: str, log_dir: Path, log: Log) -> list[Step]:
    """(name, runner) of every scenario of a mode."""
    where: dict[str, Any] = {"log_dir": log_dir, "log": log}
    qps, latency = (20, 0.05) if mode == "smoke" else (40, 0.15)

    def paced(templates: int, languages: tuple[str, ...]) -> harness.Load:
        return harness.Load(templates, languages, qps, latency)

    def cycle(name: str, templates: int, languages: tuple[str, ...], **options: Any) -> Step:
        options = {"scrape_gets": 50, "render_runs": 3, **where, **options}
        return name, partial(scenario_cycle, name, paced(templates, languages), **options)

    if mode == "smoke":
        return [cycle("cycle-40", 20, TWO, scrape_gets=10, render_runs=2)]
    quick = mode == "quick"
    steps = [cycle("cycle-1k", 500, TWO, scrape_gets=50 if quick else 0)]
    if not quick:
        steps.append(cycle("cycle-10k", 2500, FOUR))
    backfill = "backfill-300" if quick else "backfill-1k"
    filling = paced(150 if quick else 500, TWO)
    steps.append(
        (backfill, partial(scenario_backfill, backfill, filling, max_range_days=30, **where))
    )
    phases = (8, 15, 75) if quick else (15, 30, 90)
    adaptive = partial(
        scenario_adaptive, "adaptive", paced(500, TWO), competitor_rate=25, phases=phases, **where
    )
    steps.append(("adaptive", adaptive))
    if not quick:
        # 4 accounts x 3,500 units, each at the simulator's 50/s, answered after 50 ms
        big = harness.Load(875, FOUR, qps=50.0, latency=0.05)
        runner = partial(
            scenario_scrape,
            "scrape-100k",
            big,
            accounts=4,
            gets=200,
            render_runs=5,
            during_poll_s=30,
            **where,
        )
        steps.append(("scrape-100k", runner))
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmarks of the exporter against the simulator (see the module docstring)."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1k scenarios, small scrape set")
    mode.add_argument("--smoke", action="store_true", help="CI-sized: 40 units, ~15 s")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=procs.ROOT / "bench" / "results",
        help="where the JSON (and the logs) go (default bench/results)",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated scenario names to run (default: all)"
    )
    args = parser.parse_args(argv)
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    log_dir = args.results_dir / f"{stamp}-logs"
    results: dict[str, Any] = {
        "started": stamp,
        "mode": mode_name,
        "command": "python bench/run.py"
        + {"full": "", "quick": " --quick", "smoke": " --smoke"}[mode_name],
        "machine": harness.machine_info(),
        "scenarios": {},
        "errors": {},
    }
    wanted = {s for s in args.only.split(",") if s}
    started = time.monotonic()
    for name, runner in plan(mode_name, log_dir, _log):
        if wanted and name not in wanted:
            continue
        try:
            tree = harness.git_state()  # other people commit while the bench runs: note each start
            results["scenarios"][name] = runner()
            results["scenarios"][name]["git"] = tree
        except Exception as exc:  # report the others; the failure is in the JSON and the exit code
            _log(f"{name} FAILED: {type(exc).__name__}: {exc}")
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
    results["duration_s"] = time.monotonic() - started
    results["targets"] = targets(results)
    path = args.results_dir / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    m = results["machine"]
    print(
        f"cams-exporter bench ({mode_name}), {stamp}, {results['duration_s']:.0f}s;"
        f" {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_total_gib']} GiB,"
        f" Python {m['python']}, prometheus_client {m['prometheus_client']}, commit"
        f" {m['git_commit']}"
        + (
            f" + uncommitted {', '.join(m['exporter_uncommitted'])}"
            if m["exporter_uncommitted"]
            else ""
        )
        + "\n"
    )
    print(tables(results))
    print(f"\nJSON: {path}")
    if results["errors"]:
        print("FAILED: " + ", ".join(results["errors"]))
        return 1
    return 0


if __name__ == "__main__":
    harness.run_main(main)
