"""Issue 25 item 4: which writer renders /metrics, decided by the numbers.

    python bench/exposition.py                  # both trees, 1k/10k/100k, twice: ~50 minutes
    python bench/exposition.py --sizes 100k --runs 1
    python bench/exposition.py --tree own-writer=614f6f3 --tree client_python=.  # the default
    python bench/exposition.py --smoke          # CI-sized: the working tree, ~600 series

It compares exporter trees, each a git revision (extracted with `git archive`) or a directory
(`.` is the working tree): by default `own-writer=614f6f3` (the last commit with the exporter's
byte-exact copy of client_python's writer) and `client_python=.`. Both render once per publish
and keep the bytes (plain and gzip) until the next one; they differ in the writer. For each
tree and size (4 accounts x T templates x 4 languages: 1k, 10k or 100k series), each run:

- publish CPU: `bench/exposition_publish.py` in a process on that tree: the CPU seconds of one
  account's publish (its part of the series new, the others kept: what the end of a cycle
  publishes), the median of 3 rounds of 4 accounts, plus the state file that tree's exporter
  wrote, loaded and saved again. The share is what 4 accounts at the default poll.interval
  (5m) cost: 4 x (render + state save) / 300 s, in % of one core. Target: <= 25% at 100k.
- scrape vs static: the simulator and that tree's exporter as processes on 127.0.0.1, the
  first cycle done, the exporter quiet: `--gets` keep-alive GETs of /metrics, plain and gzip,
  interleaved with the same GETs to a static server of the same bytes
  (`bench/static_server.py`, `bench.run.compare_with_static`). Target: median <= 2x static.
- during publishes: a reload to poll.interval 10s makes every account poll back to back and
  publish at the end of each cycle (qps 50 each, simulator latency 50 ms, as
  `bench/publish_scrapes.py`); back-to-back GETs of /metrics, plain and gzip in turn, for
  `--seconds`. A thread watches the state file, which a cycle's publish writes just before it
  renders: a GET that starts from 1 s before a write was seen to 3 s after it is "during a
  publish" (the render takes 0.2-1 s; the margins cover the save before it and a loaded
  machine). Reported: p99 of the whole window (`bench/publish_scrapes.py`'s figure), p99 and
  max of the GETs during publishes, and how many publishes the window held.
  Target: p99 during publishes < 250 ms at 100k series on 2 cores.

The machine may be shared: the 1-minute load average is read before and after each
configuration, and the runs go tree after tree within each size, so both see the same load.
It prints one table (and the verdicts at 100k series, each tree judged by its worst run), and
writes everything to bench/results/exposition-<UTC timestamp>.json with the children's logs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness
from bench.publish_scrapes import ACCOUNTS, LANGUAGES, simulator_flags
from bench.run import compare_with_static, wait_quiet
from exporter.cams.actions import METRIC_ACTION as METRIC
from tests.kit import procs

# templates per account: 4 accounts x T x 4 languages units, ~7.5 series a unit
SIZES = {"smoke": 5, "1k": 9, "10k": 88, "100k": 875}
DEFAULT_TREES = ("own-writer=614f6f3", "client_python=.")
POLL_INTERVAL_S = 300  # the default poll.interval: each account publishes once per interval
TARGET_VS_STATIC = 2.0
TARGET_P99_MS = 250.0
TARGET_PUBLISH_CPU_PCT = 25.0
# A GET is "during a publish" from this long before a state write was seen to this long after.
PUBLISH_BEFORE_S = 1.0
PUBLISH_AFTER_S = 3.0
_ENCODING = {"plain": "identity", "gzip": "gzip"}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load1() -> float:
    """The 1-minute load average (what `uptime` shows first)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass(frozen=True)
class Tree:
    """An exporter tree to measure: its name in the table, where it is, what it is."""

    name: str
    path: Path
    what: str  # the commit, or the directory


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=procs.ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def resolve_trees(specs: Sequence[str], scratch: Path) -> list[Tree]:
    """NAME=SPEC: `.` the working tree, a directory, or a git revision (extracted here)."""
    trees = []
    for spec in specs:
        name, sep, where = spec.partition("=")
        if not sep or not name or not where:
            raise SystemExit(f"--tree: expected NAME=REV or NAME=DIR, got {spec!r}")
        if where == ".":
            trees.append(Tree(name, procs.ROOT, "working tree " + harness.git_state()))
        elif Path(where).is_dir():
            trees.append(Tree(name, Path(where).resolve(), where))
        else:
            commit = _git("rev-parse", "--short", where)
            path = scratch / name
            path.mkdir(parents=True)
            archive = subprocess.run(
                ["git", "archive", commit], cwd=procs.ROOT, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", str(path)], input=archive.stdout, check=True)
            trees.append(Tree(name, path, "commit " + commit))
    return trees


def tree_env(tree: Tree) -> dict[str, str]:
    """The environment of a child that must import `tree`'s exporter (and nothing else's)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree.path)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def measure_publish(tree: Tree, templates: int, state: Path | None) -> dict[str, Any]:
    """bench/exposition_publish.py on `tree` (see its docstring)."""
    argv = [sys.executable, str(procs.ROOT / "bench" / "exposition_publish.py")]
    argv += ["--templates", str(templates), "--accounts", str(ACCOUNTS)]
    if state is not None and state.exists():
        argv += ["--state", str(state)]
    done = subprocess.run(
        argv, cwd=tree.path, env=tree_env(tree), capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"exposition_publish on {tree.name} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    per_publish = result["cycle_publish_cpu_median_s"] + result.get("state_save_cpu_s", 0.0)
    result["publish_cpu_pct_at_5m"] = 100 * ACCOUNTS * per_publish / POLL_INTERVAL_S
    return result


def _all_accounts_published(exporter: procs.ExporterProcess) -> str | None:
    text = exporter.metrics_text()
    done = sum(1 for _ in harness.samples(text, "cams_poll_duration_seconds"))
    return text if done >= ACCOUNTS else None


def _dist(seconds: Sequence[float]) -> dict[str, float]:
    if not seconds:
        return {"n": 0, "median_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    return {
        "n": len(seconds),
        "median_ms": harness.median(seconds) * 1000,
        "p99_ms": harness.percentile(seconds, 99) * 1000,
        "max_ms": max(seconds) * 1000,
    }


def scrape_through_publishes(port: int, state: Path, seconds: float) -> dict[str, Any]:
    """Back-to-back GETs of /metrics (plain and gzip in turn) for `seconds`, each stamped with
    its start, while a thread notes when the state file is written again (a publish)."""
    publishes: list[float] = []
    done = threading.Event()

    def watch() -> None:
        last = None
        while not done.is_set():
            with contextlib.suppress(OSError):
                seen = state.stat()
                now = (seen.st_ino, seen.st_mtime_ns)
                if last is not None and now != last:
                    publishes.append(time.monotonic())
                last = now
            done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    conn = harness.KeepAlive(port)
    gets: list[tuple[str, float, float]] = []  # (format, start, seconds)
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            fmt = "gzip" if len(gets) % 2 else "plain"
            start = time.monotonic()
            elapsed, code, _ = conn.get("/metrics", {"Accept-Encoding": _ENCODING[fmt]})
            if code != 200:
                raise RuntimeError(f"/metrics answered {code}")
            gets.append((fmt, start, elapsed))
    finally:
        conn.close()
        done.set()
        watcher.join(5)
    wall = time.monotonic() - started

    def during(start: float) -> bool:
        return any(p - PUBLISH_BEFORE_S <= start <= p + PUBLISH_AFTER_S for p in publishes)

    result: dict[str, Any] = {"window_s": wall, "publishes": len(publishes)}
    for fmt in ("plain", "gzip"):
        result[fmt] = _dist([t for f, _, t in gets if f == fmt])
        result[f"{fmt}_during"] = _dist([t for f, s, t in gets if f == fmt and during(s)])
    return result


def measure_serving(
    tree: Tree, templates: int, gets: int, seconds: float, log_dir: Path
) -> dict[str, Any]:
    """The tree's exporter as a process: scrapes against a static server when quiet, then
    scrapes while every account polls and publishes back to back."""
    children = procs.Children(log_dir)
    try:
        sim = harness.start_simulator(children, "simulator", simulator_flags(templates))
        names = [f"acct{i}" for i in range(ACCOUNTS)]
        config_path = log_dir / "config.yaml"
        state = log_dir / "state.json"
        text = harness.exporter_config(sim.url, names, qps=50, list_qps=5, interval_s=3600)
        text += f"state:\n  path: {state}\n"
        config_path.write_text(text, encoding="utf-8")
        exporter = children.add(
            procs.start_exporter(
                log_dir / "exporter.log",
                "--config.file", str(config_path), "--web.enable-lifecycle",
                new_session=True, env=tree_env(tree), cwd=tree.path,
            )
        )  # fmt: skip
        units = templates * len(LANGUAGES)
        budget = units / 100 / 5 * 1.1 + units * 1.03 / 50 * 3 + 120
        harness.wait_for("first cycle (ready)", exporter.ready, timeout=budget)
        harness.wait_for("every account on /metrics", lambda: _all_accounts_published(exporter), 60)
        wait_quiet(exporter)
        result, _, _ = compare_with_static(exporter, children, gets, _log)
        # cycles back to back from now on: a changed poll.interval restarts every account
        config_path.write_text(text.replace("interval: 3600s", "interval: 10s"), encoding="utf-8")
        before = sim.action(METRIC)["calls"]
        if harness.http_post(exporter.port, "/-/reload") != 200:
            raise RuntimeError("POST /-/reload failed")
        harness.wait_for(
            "polling again", lambda: sim.action(METRIC)["calls"] > before or None, timeout=120
        )
        cpu0 = exporter.child.cpu_s() or 0.0
        result["during"] = scrape_through_publishes(exporter.port, state, seconds)
        result["during"]["exporter_cpu_pct"] = (
            100 * ((exporter.child.cpu_s() or 0.0) - cpu0) / result["during"]["window_s"]
        )
        result["peak_rss_mb"] = exporter.child.peak_rss_mb()
        result["state"] = str(state)
        return result
    finally:
        children.stop_all()


def measure(
    tree: Tree, size: str, run: int, gets: int, seconds: float, log_dir: Path
) -> dict[str, Any]:
    """One configuration: serving, then publish CPU (with the state file it wrote)."""
    templates = SIZES[size]
    load_before = load1()
    _log(f"{tree.name} {size} run {run}: load {load_before:.2f}")
    serving = measure_serving(tree, templates, gets, seconds, log_dir)
    publish = measure_publish(tree, templates, Path(serving["state"]))
    load_after = load1()
    _log(
        f"  {serving['series']} series; x static {serving['x_static_plain']:.2f} /"
        f" {serving['x_static_gzip']:.2f}; p99 during publishes"
        f" {serving['during']['plain_during']['p99_ms']:.0f} /"
        f" {serving['during']['gzip_during']['p99_ms']:.0f}"
        f" ms; publish CPU {publish['publish_cpu_pct_at_5m']:.2f}% of a core; load"
        f" {load_after:.2f}"
    )
    return {
        "tree": tree.name,
        "size": size,
        "run": run,
        "load1_before": load_before,
        "load1_after": load_after,
        "serving": serving,
        "publish": publish,
    }


def _pair(a: float, b: float, digits: int = 1) -> str:
    return f"{a:.{digits}f} / {b:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| tree | size | run | series | load 1m before-after | render CPU ms / publish"
        " | state save CPU ms | publish CPU % core (4 accts, 5m) | exporter median ms plain / gzip"
        " | static median ms plain / gzip | x static plain / gzip | window p99 ms plain / gzip"
        " | during publishes: GETs | p99 ms plain / gzip | max ms plain / gzip | publishes"
        " | exporter peak RSS MB |"
    )
    lines = [head, "|" + "---|" * (head.count(" | ") + 1)]
    for r in rows:
        s, p, d = r["serving"], r["publish"], r["serving"]["during"]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["tree"],
                    r["size"],
                    str(r["run"]),
                    f"{s['series']:,}",
                    f"{r['load1_before']:.2f}-{r['load1_after']:.2f}",
                    f"{p['cycle_publish_cpu_median_s'] * 1000:.0f}",
                    f"{p.get('state_save_cpu_s', 0.0) * 1000:.0f}",
                    f"{p['publish_cpu_pct_at_5m']:.2f}",
                    _pair(s["exporter_plain"]["median_ms"], s["exporter_gzip"]["median_ms"]),
                    _pair(s["static_plain"]["median_ms"], s["static_gzip"]["median_ms"]),
                    _pair(s["x_static_plain"], s["x_static_gzip"], 2),
                    _pair(d["plain"]["p99_ms"], d["gzip"]["p99_ms"]),
                    str(d["plain_during"]["n"] + d["gzip_during"]["n"]),
                    _pair(d["plain_during"]["p99_ms"], d["gzip_during"]["p99_ms"]),
                    _pair(d["plain_during"]["max_ms"], d["gzip_during"]["max_ms"]),
                    str(d["publishes"]),
                    f"{s['peak_rss_mb']:.0f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def same_bytes(rows: list[dict[str, Any]]) -> list[str]:
    """Per size: whether every tree rendered the same data to the same bytes."""
    out = []
    for size in dict.fromkeys(r["size"] for r in rows):
        hashes = {
            (r["publish"]["sha256_text"], r["publish"]["sha256_openmetrics"])
            for r in rows
            if r["size"] == size
        }
        trees = sorted({r["tree"] for r in rows if r["size"] == size})
        verdict = "the same bytes" if len(hashes) == 1 else "DIFFERENT bytes"
        out.append(f"{size}: {', '.join(trees)} rendered {verdict} (text and OpenMetrics)")
    return out


def verdicts(rows: list[dict[str, Any]], size: str) -> list[str]:
    """Each tree against the targets at `size`, judged by its worst run."""
    out = []
    for tree in dict.fromkeys(r["tree"] for r in rows):
        mine = [r for r in rows if r["tree"] == tree and r["size"] == size]
        if not mine:
            continue
        static = max(
            max(r["serving"]["x_static_plain"], r["serving"]["x_static_gzip"]) for r in mine
        )
        p99 = max(
            max(d["plain_during"]["p99_ms"], d["gzip_during"]["p99_ms"])
            for d in (r["serving"]["during"] for r in mine)
        )
        cpu = max(r["publish"]["publish_cpu_pct_at_5m"] for r in mine)
        checks = [
            (f"scrape median <= {TARGET_VS_STATIC:g}x static", static, TARGET_VS_STATIC, "x"),
            (f"p99 during publishes < {TARGET_P99_MS:g} ms", p99, TARGET_P99_MS, " ms"),
            (f"publish CPU <= {TARGET_PUBLISH_CPU_PCT:g}% of a core", cpu, 25.0, "%"),
        ]
        parts = [
            f"{what}: {value:.2f}{unit} {'met' if value <= limit else 'MISSED'}"
            for what, value, limit, unit in checks
        ]
        out.append(f"{tree} at {size} (worst of {len(mine)} runs): " + "; ".join(parts))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", help="NAME=REV or NAME=DIR ('.': this tree)")
    parser.add_argument("--sizes", default="1k,10k,100k", help="of " + ", ".join(SIZES))
    parser.add_argument("--runs", type=int, default=2, help="runs of each configuration")
    parser.add_argument("--gets", type=int, default=50, help="GETs of each kind vs static")
    parser.add_argument("--seconds", type=float, default=180.0, help="window during publishes")
    parser.add_argument("--smoke", action="store_true", help="the working tree, ~600 series")
    parser.add_argument("--results-dir", type=Path, default=procs.ROOT / "bench" / "results")
    args = parser.parse_args()
    if args.smoke:
        specs, sizes, runs, gets, seconds = args.tree or ["client_python=."], ["smoke"], 1, 5, 12.0
    else:
        specs, sizes = args.tree or list(DEFAULT_TREES), args.sizes.split(",")
        runs, gets, seconds = args.runs, args.gets, args.seconds
    unknown = [size for size in sizes if size not in SIZES]
    if unknown:
        raise SystemExit(f"--sizes: unknown {', '.join(unknown)} (known: {', '.join(SIZES)})")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    log_dir = args.results_dir / f"exposition-{stamp}-logs"
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-trees-") as scratch:
        trees = resolve_trees(specs, Path(scratch))
        for run in range(1, runs + 1):
            for size in sizes:
                for tree in trees:
                    where = log_dir / f"{tree.name}-{size}-run{run}"
                    rows.append(measure(tree, size, run, gets, seconds, where))
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    machine = harness.machine_info()
    results = {
        "started": stamp,
        "command": "python " + " ".join(sys.argv),
        "duration_s": time.monotonic() - started,
        "machine": machine,
        "trees": {tree.name: tree.what for tree in trees},
        "uptime_before": uptime_before,
        "uptime_after": uptime_after,
        "rows": rows,
    }
    path = args.results_dir / f"exposition-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(
        f"bench/exposition.py, {stamp}, {results['duration_s']:.0f} s; {machine['cpus']} CPUs"
        f" ({machine['cpu_model']}), Python {machine['python']}, prometheus_client"
        f" {machine['prometheus_client']}"
    )
    for tree in trees:
        print(f"- {tree.name}: {tree.what}")
    print(f"uptime before: {uptime_before}\nuptime after:  {uptime_after}\n")
    print(table(rows))
    print()
    for line in same_bytes(rows):
        print(line)
    for line in verdicts(rows, "100k" if "100k" in sizes else sizes[-1]):
        print(line)
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    harness.run_main(main)
