"""Reload storms. Against a real exporter process: 30 reloads in 15 s, each a changed config
(so each swaps in a new poller), never put more than the account's `qps` calls in any second
(the simulator counts them), and a whole poll cycle completes once the storm is over. Against
an `Exporter`: reloads of an unchanged config leave polling alone, and concurrent reloads are
coalesced into at most one pending."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cams_simulator import Simulator, SimulatorOptions
from exporter.app import Exporter
from exporter.config import load_config
from tests.kit.configs import Account, listed_space
from tests.kit.configs import write_config as kit_write_config
from tests.kit.oracle import sdk_client, sdk_list
from tests.kit.procs import start_exporter
from tests.kit.sim import running, simulator_process
from tests.kit.waits import wait_http, wait_until

QPS = 10
METRIC = "GetChatappTemplateMetric"


def write_config(
    path: Path, url: str, timeout: str, units: list[tuple[str, str]] | None = None
) -> Path:
    """One account at QPS; its templates listed (no discovery) when `units` (code, language)
    are given, so that every new poller starts reading at once."""
    if units is None:
        space: dict[str, object] = {"cust_space_id": "cams-demo"}
    else:
        space = listed_space(units)
    account = Account(url, qps=QPS, list_qps=2, spaces=(space,))
    poll = {"interval": "10s", "lookback": "2d", "timeout": timeout, "max_retries": 1}
    return kit_write_config(path, account, poll=poll)


def listed(sim: Simulator) -> list[tuple[str, str]]:
    return [(row.code, row.language) for row in sim.templates()]


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


FLAGS = ("--templates=20", "--static", "--qps-limit=1000", "--list-qps-limit=100")  # options()


def test_a_reload_storm_keeps_within_qps_and_cycles_complete_after(tmp_path: Path) -> None:
    # The simulator in its own process: its clock stamps arrivals without waiting for this
    # process' GIL (the test parses /metrics meanwhile), so its 1-second windows are the calls'.
    with simulator_process(*FLAGS, "--latency=0.05") as sim:
        sdk = sdk_client(sim.endpoint)
        units = [(row.template_code, row.language) for row in sdk_list(sdk)]
        config = write_config(tmp_path / "cams.yml", sim.url, "2s", units)
        exporter = start_exporter(
            tmp_path / "exporter.log", "--config.file", str(config), "--web.enable-lifecycle"
        )
        url = exporter.url
        try:
            wait_http(f"{url}/-/healthy", timeout=30)
            sim.reset()
            started = time.monotonic()
            for index in range(30):
                write_config(config, sim.url, "3s" if index % 2 == 0 else "2s", units)
                response = requests.post(f"{url}/-/reload", timeout=30)
                assert response.status_code == 200, response.text
                pause = started + 0.5 * (index + 1) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # the storm's own pace: 30 reloads in 15 s
            storm_over = time.time()
            during = sim.stats()["actions"][METRIC]
            assert during["calls"] >= 5 * QPS, "the budget was not in use during the storm"
            assert during["max_calls_in_1s"] <= QPS, during

            def complete() -> bool:
                last = sample(url, "cams_poll_last_success_timestamp_seconds")
                return last is not None and last > storm_over and sample(url, "cams_up") == 1

            wait_until(complete, 60, "a complete poll cycle after the reload storm", every=0.2)
            assert sim.stats()["actions"][METRIC]["max_calls_in_1s"] <= QPS
        finally:
            exporter.stop()
        text = exporter.log
        assert text.count("config reloaded from") == 30, text[-3000:]
        assert "Traceback" not in text


def test_reloads_of_an_unchanged_config_leave_polling_alone(tmp_path: Path) -> None:
    with running(options()) as sim:
        path = write_config(tmp_path / "cams.yml", sim.url, "2s")
        exporter = Exporter(load_config(str(path)), config_path=str(path))
        exporter.start()
        try:
            poller = exporter.scheduler
            for _ in range(30):
                assert exporter.reload() == (True, "config unchanged")
            assert exporter.scheduler is poller
            assert not poller.stop_event.is_set()
            # ... so the first cycle, discovery included, completes despite the storm.
            wait_until(lambda: exporter.snapshot.ready, 30, "the first cycle")
        finally:
            exporter.stop()


def test_concurrent_reloads_are_coalesced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with running(options()) as sim:
        path = write_config(tmp_path / "cams.yml", sim.url, "2s", listed(sim))
        exporter = Exporter(load_config(str(path)), config_path=str(path))
        exporter.start()
        try:
            write_config(path, sim.url, "3s", listed(sim))
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
            wait_until(
                lambda: all(p.status.first_cycle_complete for p in scheduler.accounts),
                30,
                "the first cycle of both accounts",
            )
            assert all(p.status.first_cycle_complete for p in scheduler.accounts)
            threads = {t.name for t in threading.enumerate()}
            assert {"account-main", "account-other"} <= threads
        finally:
            exporter.stop()
