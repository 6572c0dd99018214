"""The benchmark machinery (bench/run.py, bench/idle.py) at CI size, and its arithmetic on
made-up samples.

`python bench/run.py --smoke` runs the cycle scenario with 40 units at qps 20 and 50 ms latency
(simulator and exporter as separate processes), plus a small scrape comparison; about 15 s.
Only sanity is asserted here, never speed: the numbers are the bench's business.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import run as bench  # noqa: E402
from bench.harness import percentile, sample_lines, sample_sum  # noqa: E402
from tests.kit.waits import wait_until  # noqa: E402


def smoke(script: str, *args: str) -> str:
    """`python bench/SCRIPT --smoke ARGS` as a user runs it: its output, once it exited 0."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc.stdout


def test_smoke_run_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = smoke("run.py", "--results-dir", str(tmp_path))
    header = "| scenario | units | qps | cycle s | limit s (units/qps) | ratio | max calls/1s |"
    assert header in out, out
    assert "| cycle-40 " in out
    assert "Targets" in out

    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1, files
    data: dict[str, Any] = json.loads(files[0].read_text())
    assert data["mode"] == "smoke" and not data["errors"]
    assert data["machine"]["cpus"] >= 1
    r = data["scenarios"]["cycle-40"]
    assert r["units"] == 40 and r["qps"] == 20
    assert r["cycle_metric_calls"] == 40, "the second cycle is one call per unit"
    assert r["max_calls_in_1s"] <= r["qps"]
    assert r["throttled"] == 0
    assert 1.0 <= r["ratio"] < 1.5, r["ratio"]
    assert r["peak_rss_mb"] > 0
    scrape = r["scrape"]
    assert scrape["series"] > 40 * 6
    assert scrape["render_same_bytes"], "the rebuilt snapshot must render the exporter's bytes"
    for key in ("exporter_plain", "exporter_gzip", "static_plain", "static_gzip"):
        assert scrape[key]["n"] == 10 and scrape[key]["median_ms"] > 0
    # the logs of the child processes are kept beside the JSON
    assert (tmp_path / f"{data['started']}-logs" / "cycle-40" / "exporter.log").exists()


def test_exposition_bench_prints_one_table_with_the_load_and_the_verdicts(tmp_path: Path) -> None:
    """bench/exposition.py --smoke: the working tree's exporter at ~600 series, one run."""
    out = smoke("exposition.py", "--results-dir", str(tmp_path))
    assert "| tree | size | run | series | load 1m before-after |" in out, out
    assert "| client_python | smoke | 1 |" in out
    assert "uptime before:" in out and "load average" in out
    assert "smoke: client_python rendered the same bytes" in out
    assert "client_python at smoke (worst of 1 runs): scrape median <= 2x static" in out
    (path,) = tmp_path.glob("exposition-*.json")
    (row,) = json.loads(path.read_text())["rows"]
    serving, publish = row["serving"], row["publish"]
    # 4 accounts x 5 templates x 4 languages, in the exporter and in the publish child
    assert serving["series"] > 500 and publish["series"] > 500 and publish["units"] == 80
    assert serving["exporter_plain"]["n"] == 5 and serving["static_gzip"]["median_ms"] > 0
    during = serving["during"]
    assert during["publishes"] >= 1, "the window held no publish"
    assert during["plain_during"]["n"] > 0 and during["gzip_during"]["p99_ms"] > 0
    assert len(publish["cycle_publish_cpu_s"]) == 12  # 3 rounds of 4 accounts
    assert publish["state_units"] > 0 and publish["state_save_cpu_s"] > 0
    assert publish["publish_cpu_pct_at_5m"] > 0 and row["load1_before"] >= 0


# A bench in miniature: one child started through the harness, stopped in `finally`.
BENCH_LIKE = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench.harness import run_main, spawn
from tests.kit.procs import Children

def main() -> int:
    work = Path(sys.argv[2])
    children = Children(work)
    try:
        child = spawn(children, "sleeper", ["-c", "import time; time.sleep(120)"])
        (work / "pid.tmp").write_text(str(child.pid))
        (work / "pid.tmp").rename(work / "pid")
        time.sleep(120)
        return 0
    finally:
        children.stop_all()

run_main(main)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_idle_bench_smoke_prints_its_row_and_meets_its_targets() -> None:
    out = smoke("idle.py")
    header = "| units | active share | active | idle | before calls/h |"
    assert header in out, out
    (row,) = [line for line in out.splitlines() if line.startswith("| 100 |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[4] == "1,200", "before: every unit every cycle, 12 cycles an hour"
    assert cells.count("True") == 3, row


def test_a_sigterm_of_a_bench_stops_the_children_it_started(tmp_path: Path) -> None:
    script = tmp_path / "bench_like.py"
    script.write_text(BENCH_LIKE)
    proc = subprocess.Popen([sys.executable, str(script), str(ROOT), str(tmp_path)])
    child = 0
    try:
        wait_until((tmp_path / "pid").exists, 30, "the bench to start its child")
        child = int((tmp_path / "pid").read_text())
        assert _alive(child)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert not _alive(child), "the bench's child outlived a SIGTERM of the bench"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)


def test_percentile_and_exposition_readers() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    text = (
        "# HELP x_total x\n# TYPE x_total counter\n"
        'x_total{action="A",code="OK"} 3.0\nx_total{action="A",code="Throttling"} 2.0\n'
        'x_total{action="B",code="OK"} 5.0\n'
    )
    assert sample_sum(text, "x_total", action="A") == 5.0
    assert sample_sum(text, "x_total", code="OK") == 8.0
    assert sample_lines(text.encode()) == 3


def _rows(plan: list[tuple[float, float, float]]) -> list[dict[str, float]]:
    """Exporter samples once a second from (seconds, calls per second, rate limit) steps."""
    rows, t, calls = [], 1000.0, 0.0
    for seconds, per_s, limit in plan:
        for _ in range(int(seconds)):
            rows.append(
                {
                    "t": t,
                    "calls": calls,
                    "ok": calls,
                    "throttled": 0.0,
                    "rate": limit,
                    "poll_errors": 0.0,
                    "sim_calls": calls,
                    "sim_throttled": 0.0,
                }
            )
            t += 1
            calls += per_s
    return rows


def test_adaptive_bins_and_recovery() -> None:
    rows = _rows([(10, 40, 40), (20, 20, 20), (10, 30, 30), (10, 40, 40)])
    for r in rows[12:]:
        r["throttled"] = 1.0  # one throttled answer right after the competitor started
    comp = {
        "started": 1010.0,
        "stopped": 1030.0,
        "events": [[1010.0 + i / 25, "OK" if i % 10 else "Throttling"] for i in range(500)],
    }
    result = bench._adaptive_result(
        rows, comp, 1000.0, 40, 25, 1000, (10, 20, 20), 50.0, lambda _: None
    )
    assert result["exporter_throttled"] == 1
    assert result["exporter_throttled_while_alone"] == 0
    assert result["competitor_calls"] == 500 and result["competitor_throttled"] == 50
    assert result["lowest_rate_limit"] == 20
    assert result["recovered_to_qps_after_s"] == 10.0
    assert result["rate_alone_per_s"] == 40.0
    phases = [b["phase"] for b in result["bins"]]
    assert phases[:2] == ["alone", "alone"] and "competing" in phases and phases[-1] == "after"
    assert result["bins"][0]["exporter_calls_per_s"] == 40.0
    assert result["bins"][3]["competitor_calls_per_s"] == 25.0

    results = {"scenarios": {"adaptive": result}}
    (target,) = bench.targets(results)
    assert target["met"]
    assert "| exporter calls/s |" in bench.tables(results)
