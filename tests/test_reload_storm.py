"""Reload storms. Against a real exporter process: 30 reloads in 15 s, each a changed config
(so each swaps in a new poller), never put more than the account's `qps` calls in any second
(the simulator counts them), and a whole poll cycle completes once the storm is over. Against
an `Exporter`: reloads of an unchanged config leave polling alone, and concurrent reloads are
coalesced into at most one pending."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.config import load_config
from exporter.simulator import Simulator, SimulatorOptions
from tests.kit.sim import free_port, running, wait_http

QPS = 10
METRIC = "GetChatappTemplateMetric"


def write_config(path: Path, sim: Simulator, timeout: str, discover: bool = False) -> Path:
    """One account at QPS; its templates listed (no discovery) so that every new poller starts
    reading at once."""
    if discover:
        space = "      - cust_space_id: cams-demo\n"
    else:
        units = "".join(
            f"          - {{code: {row.code}, language: {row.language}, type: WHATSAPP}}\n"
            for row in sim.templates()
        )
        space = "      - cust_space_id: cams-demo\n        discover: false\n        templates:\n"
        space += units
    path.write_text(
        "poll:\n  interval: 10s\n  lookback: 2d\n"
        f"  timeout: {timeout}\n  max_retries: 1\n"
        "accounts:\n"
        "  - name: main\n"
        f"    endpoint: {sim.url}\n"
        "    credentials: {access_key_id: demo, access_key_secret: demo-secret}\n"
        f"    qps: {QPS}\n"
        "    list_qps: 2\n"
        "    spaces:\n" + space
    )
    return path


def sample(url: str, name: str) -> float | None:
    text = requests.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels.get("account") == "main":
                return float(s.value)
    return None


def options() -> SimulatorOptions:
    # The simulator never throttles here: what is measured is the exporter's own pace.
    return SimulatorOptions(
        templates=20, static=True, qps_limit=1000, list_qps_limit=100, latency_s=0.05
    )


def test_a_reload_storm_keeps_within_qps_and_cycles_complete_after(tmp_path: Path) -> None:
    with running(options()) as sim:
        config = write_config(tmp_path / "cams.yml", sim, "2s")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp_path / "exporter.log"
        with open(log, "wb") as out:
            exporter = subprocess.Popen(
                [sys.executable, "-m", "exporter", "--config.file", str(config),
                 "--web.listen-address", f"127.0.0.1:{port}", "--web.enable-lifecycle"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
            )  # fmt: skip
        try:
            wait_http(f"{url}/-/healthy", timeout=30)
            sim.reset_stats()
            started = time.monotonic()
            for index in range(30):
                write_config(config, sim, "3s" if index % 2 == 0 else "2s")
                response = requests.post(f"{url}/-/reload", timeout=30)
                assert response.status_code == 200, response.text
                pause = started + 0.5 * (index + 1) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # the storm's own pace: 30 reloads in 15 s
            storm_over = time.time()
            during = sim.stats()["actions"][METRIC]
            assert during["calls"] >= 5 * QPS, "the budget was not in use during the storm"
            assert during["max_calls_in_1s"] <= QPS, during

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                last = sample(url, "cams_poll_last_success_timestamp_seconds")
                if last is not None and last > storm_over and sample(url, "cams_up") == 1:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("no complete poll cycle after the reload storm")
            assert sim.stats()["actions"][METRIC]["max_calls_in_1s"] <= QPS
        finally:
            exporter.send_signal(signal.SIGTERM)
            try:
                exporter.wait(20)
            except subprocess.TimeoutExpired:
                exporter.kill()
                exporter.wait(5)
        text = log.read_text()
        assert text.count("config reloaded from") == 30, text[-3000:]
        assert "Traceback" not in text


def test_reloads_of_an_unchanged_config_leave_polling_alone(tmp_path: Path) -> None:
    with running(options()) as sim:
        path = write_config(tmp_path / "cams.yml", sim, "2s", discover=True)
        exporter = Exporter(load_config(str(path)), config_path=str(path))
        exporter.start()
        try:
            poller = exporter.scheduler
            for _ in range(30):
                assert exporter.reload() == (True, "config unchanged")
            assert exporter.scheduler is poller
            assert not poller.stop_event.is_set()
            # ... so the first cycle, discovery included, completes despite the storm.
            deadline = time.monotonic() + 30
            while not exporter.snapshot.ready and time.monotonic() < deadline:
                time.sleep(0.05)
            assert exporter.snapshot.ready
        finally:
            exporter.stop()


def test_concurrent_reloads_are_coalesced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with running(options()) as sim:
        path = write_config(tmp_path / "cams.yml", sim, "2s")
        exporter = Exporter(load_config(str(path)), config_path=str(path))
        exporter.start()
        try:
            write_config(path, sim, "3s")
            start = threading.Barrier(12)
            answers: list[tuple[bool, str]] = []

            def reload() -> None:
                start.wait(10)
                answers.append(exporter.reload())

            threads = [threading.Thread(target=reload) for _ in range(12)]
            with caplog.at_level(logging.INFO, logger="cams_exporter"):
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
            assert len(answers) == 12 and all(ok for ok, _ in answers)
            runs = [r for r in caplog.records if "config reloaded from" in r.getMessage()]
            assert 1 <= len(runs) <= 2  # the one running, and at most one pending after it
            assert exporter.config.poll.timeout_s == 3.0
        finally:
            exporter.stop()


def two_accounts(path: Path, sim: Simulator, other_qps: int) -> Path:
    """Two accounts on the same simulator (one discovers, one lists), `other` at `other_qps`."""
    account = (
        "  - name: {name}\n"
        f"    endpoint: {sim.url}\n"
        "    credentials: {{access_key_id: demo, access_key_secret: demo-secret}}\n"
        "    qps: {qps}\n"
        "    list_qps: 2\n"
        "    spaces:\n"
        "      - cust_space_id: cams-demo\n"
    )
    path.write_text(
        "poll:\n  interval: 10s\n  lookback: 2d\n  timeout: 2s\n  max_retries: 1\n"
        "accounts:\n"
        + account.format(name="main", qps=QPS)
        + account.format(name="other", qps=other_qps)
    )
    return path


def test_a_reload_restarts_only_the_accounts_it_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running(options()) as sim:
        path = two_accounts(tmp_path / "cams.yml", sim, other_qps=5)
        exporter = Exporter(load_config(str(path)), config_path=str(path))
        exporter.start()
        try:
            scheduler = exporter.scheduler
            main, other = scheduler.accounts
            two_accounts(path, sim, other_qps=7)
            with caplog.at_level(logging.INFO, logger="cams_exporter"):
                assert exporter.reload() == (True, "config reloaded")
            assert exporter.scheduler is scheduler
            kept, restarted = scheduler.accounts
            assert kept is main, "the unchanged account's poller was replaced"
            assert restarted is not other and restarted.account.qps == 7
            assert not scheduler._stops["main"].is_set(), "the unchanged account was stopped"
            messages = [r.getMessage() for r in caplog.records]
            assert any("1 accounts restarted, 1 polling on" in m for m in messages), messages
            # Both go on: the kept one's cycle was never interrupted, the other starts afresh.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = {p.account.name: p.status for p in scheduler.accounts}
                if all(s.first_cycle_complete for s in status.values()):
                    break
                time.sleep(0.05)
            assert all(p.status.first_cycle_complete for p in scheduler.accounts)
            threads = {t.name for t in threading.enumerate()}
            assert {"account-main", "account-other"} <= threads
        finally:
            exporter.stop()
