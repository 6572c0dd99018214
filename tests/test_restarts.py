"""Hard restarts and reloads of a real exporter process.

- kill -9 in the middle of a poll and in the middle of a state write, then a restart: every
  counter /metrics served before the kill is back at once (never lower: Prometheus would take
  it for a reset and count the difference twice), the state file is whole, and after the first
  poll every counter equals the official SDK's sum.
- SIGHUP and POST /-/reload swap in a new config without losing the counters of unchanged
  templates, without flapping /-/ready or cams_up; an invalid config is refused with one log
  line (and a 400 naming the key) and the running config goes on.
The simulator knows only a recognisable secret, which must show up nowhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from exporter.simulator import Simulator
from exporter.state import CounterStore
from tests.kit.sim import free_port, running, wait_http
from tests.test_faults import (
    SECRET,
    Series,
    assert_no_secret,
    exact_problems,
    origin,
    parse,
    sim_options,
    template_counters,
    value,
)


class Exporter:
    """`python -m exporter --config.file ...` on a free loopback port, logs in a file."""

    def __init__(self, tmp: Path, config: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"exporter-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--config.file",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
                "--log.format",
                "logfmt",
                "--web.enable-lifecycle",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CAMS_TEST_SECRET": SECRET},
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path: str) -> requests.Response:
        response = requests.get(f"{self.url}{path}", timeout=10)
        assert_no_secret(response.text, path)
        return response

    def scrape(self) -> Series:
        response = self.get("/metrics")
        assert response.status_code == 200
        return parse(response.text)

    def wait_log(self, needle: str, after: int = 0, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log[after:]:
                return
            assert self.process.poll() is None, f"the exporter exited: {self.log[-2000:]}"
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not logged within {timeout}s")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(5)
        self._log.close()
        assert_no_secret(self.log, "the exporter log")
        assert "Traceback" not in self.log
        return code


@pytest.fixture(autouse=True)
def no_secret_in_test_output(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    yield
    out, err = capfd.readouterr()
    assert_no_secret(out + err, "the test's output")
    sys.stdout.write(out)
    sys.stderr.write(err)


@pytest.fixture
def exporters() -> Iterator[list[Exporter]]:
    started: list[Exporter] = []
    yield started
    for exporter in started:
        exporter.stop(signal.SIGKILL)


def write_config(
    path: Path,
    sim: Simulator,
    *,
    state: Path | None = None,
    qps: int = 50,
    category: str | None = None,
    extra: str = "",
) -> Path:
    since, _ = origin()
    text = (
        "poll:\n  interval: 10s\n  lookback: 2d\n  max_range: 5d\n"
        f"  counters_since: {since.isoformat()}\n  timeout: 2s\n  max_retries: 1\n"
        + (f"state:\n  path: {state}\n" if state else "")
        + "accounts:\n"
        "  - name: main\n"
        f"    endpoint: {sim.url}\n"
        "    credentials:\n"
        "      access_key_id: demo\n"
        "      access_key_secret: ${CAMS_TEST_SECRET}\n"
        f"    qps: {qps}\n"
        "    list_qps: 5\n"
        "    spaces:\n"
        "      - cust_space_id: cams-demo\n"
        + (f"        filters: {{category: {category}}}\n" if category else "")
        + extra
    )
    path.write_text(text)
    return path


def nonzero(series: Series) -> Series:
    return {k: v for k, v in template_counters(series).items() if v > 0}


def assert_resumed(before: Series, after: Series) -> None:
    """Every counter that was above zero before is back, at least as high."""
    lost = {k: v for k, v in nonzero(before).items() if after.get(k, -1) < v}
    assert not lost, f"{len(lost)} counters came back lower than they were served"


def assert_exact(sim: Simulator, series: Series) -> None:
    problems = exact_problems(sim, series, origin()[1])
    assert not problems, problems[:3]


def wait_up(exporter: Exporter, timeout: float = 60.0) -> Series:
    """The first scrape after a poll cycle that read every template (cams_up 1)."""
    wait_http(f"{exporter.url}/-/healthy", timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        series = exporter.scrape()
        if value(series, "cams_up", account="main") == 1:
            return series
        time.sleep(0.1)
    raise AssertionError(f"cams_up did not become 1 within {timeout}s")


def wait_success_after(exporter: Exporter, moment: float, timeout: float = 30.0) -> Series:
    """The first scrape whose snapshot holds a fully successful cycle that ended after
    `moment` (a cycle is logged before its snapshot is published)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        series = exporter.scrape()
        last = value(series, "cams_poll_last_success_timestamp_seconds", account="main")
        if last > moment and value(series, "cams_up", account="main") == 1:
            return series
        time.sleep(0.05)
    raise AssertionError(f"no successful poll cycle after the reload within {timeout}s")


def test_kill_9_in_the_middle_of_a_poll_loses_nothing(
    tmp_path: Path, exporters: list[Exporter]
) -> None:
    state = tmp_path / "state.json"
    # 12 units read at 2 calls per second, 0.2 s each: a first cycle of about 6 seconds.
    with running(sim_options(templates=6, latency_s=0.2)) as sim:
        config = write_config(tmp_path / "cams.yml", sim, state=state, qps=2)
        first = Exporter(tmp_path, config)
        exporters.append(first)
        served = wait_up(first)  # the first cycle, published (counters publish per cycle)
        assert nonzero(served), "no counter was published by the first cycle"
        sim.reset_stats()
        # Kill while the second cycle is part-way: some of its 12 reads answered, not all.
        answered = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = sim.stats()["actions"].get("GetChatappTemplateMetric", {})
            answered = stats.get("ok", 0)
            if 2 <= answered <= 5:
                break
            time.sleep(0.02)
        first.process.kill()
        first.process.wait(10)
        assert 2 <= answered <= 5, f"the kill did not come mid-cycle ({answered} reads done)"
        assert first.log.count("poll cycle done") == 1, "the kill came after the second cycle"

        second = Exporter(tmp_path, config, port=first.port)
        exporters.append(second)
        wait_http(f"{second.url}/-/healthy", timeout=30)
        assert_resumed(served, second.scrape())
        after = wait_up(second)
        assert_resumed(served, after)
        assert_exact(sim, after)
        assert "corrupt" not in second.log


def test_kill_9_in_the_middle_of_a_state_write_keeps_a_whole_state_file(
    tmp_path: Path, exporters: list[Exporter]
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state = state_dir / "state.json"
    # 160 units: a state file of tens of kB, written at the end of every poll cycle.
    with running(sim_options(templates=80)) as sim:
        config = write_config(tmp_path / "cams.yml", sim, state=state)
        first = Exporter(tmp_path, config)
        exporters.append(first)
        wait_http(f"{first.url}/-/healthy", timeout=30)
        served = first.scrape()
        deadline = time.monotonic() + 30
        while not (state.exists() and nonzero(served)) and time.monotonic() < deadline:
            time.sleep(0.02)  # the first writes happen while the first poll progresses
            served = first.scrape()
        assert state.exists()
        pid = first.process.pid
        caught = False
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not caught:
            if not any(p.endswith(".tmp") for p in os.listdir(state_dir)):
                continue
            os.kill(pid, signal.SIGSTOP)
            _, status = os.waitpid(pid, os.WUNTRACED)  # returns once it is really stopped
            assert os.WIFSTOPPED(status)
            if any(p.endswith(".tmp") for p in os.listdir(state_dir)):
                os.kill(pid, signal.SIGKILL)  # frozen between the temp file and the rename
                caught = True
            else:
                os.kill(pid, signal.SIGCONT)
                served = first.scrape()
        first.process.wait(10)
        assert caught, "never caught the exporter writing its state"
        assert [p for p in os.listdir(state_dir) if p.endswith(".tmp")], "not mid-write"
        stored = CounterStore.from_json(json.loads(state.read_text()))  # whole, parseable
        assert stored.units, "the state file lost its units"

        second = Exporter(tmp_path, config, port=first.port)
        exporters.append(second)
        wait_http(f"{second.url}/-/healthy", timeout=30)
        resumed = second.scrape()
        assert_resumed(served, resumed)
        for key, unit in stored.units.items():
            labels = (
                ("account", key.account),
                ("language", key.language),
                ("space", key.space),
                ("template_code", key.template_code),
                ("template_type", key.template_type),
            )
            assert resumed[("cams_template_messages_sent_total", labels)] == unit.total().sent
        leftovers = [p for p in os.listdir(state_dir) if p.endswith(".tmp")]
        assert not leftovers, f"temporary state files left behind: {leftovers}"
        assert "removed 1 temporary state file" in second.log
        assert_exact(sim, wait_up(second))
        assert "corrupt" not in second.log


def test_kill_9_then_restart_resumes_every_counter_exactly(
    tmp_path: Path, exporters: list[Exporter]
) -> None:
    """A kill -9 between polls: the restart serves exactly the counters served before."""
    state = tmp_path / "state.json"
    with running(sim_options(templates=3)) as sim:
        config = write_config(tmp_path / "cams.yml", sim, state=state)
        first = Exporter(tmp_path, config)
        exporters.append(first)
        before = wait_up(first)
        first.process.kill()
        first.process.wait(10)
        second = Exporter(tmp_path, config, port=first.port)
        exporters.append(second)
        wait_http(f"{second.url}/-/healthy", timeout=30)
        assert template_counters(second.scrape()) == template_counters(before)
        assert template_counters(wait_up(second)) == template_counters(before)
        assert_exact(sim, before)


def test_sighup_and_post_reload_keep_counters_and_refuse_a_bad_config(
    tmp_path: Path, exporters: list[Exporter]
) -> None:
    state = tmp_path / "state.json"
    with running(sim_options(templates=4)) as sim:
        path = tmp_path / "cams.yml"
        config = write_config(path, sim, state=state, category="MARKETING")
        exporter = Exporter(tmp_path, config)
        exporters.append(exporter)
        marketing = template_counters(wait_up(exporter))
        assert nonzero(marketing)
        codes = {dict(k[1])["template_code"] for k in marketing}
        assert 0 < len(codes) < 4

        # SIGHUP: every category now, another qps. The marketing templates keep their counters.
        mark = len(exporter.log)
        write_config(path, sim, state=state, qps=40)
        hup_at = time.time()
        exporter.process.send_signal(signal.SIGHUP)
        exporter.wait_log("config reloaded", mark)
        reloaded = exporter.scrape()
        assert {k: v for k, v in template_counters(reloaded).items() if k in marketing} == (
            marketing
        )
        assert exporter.get("/-/ready").status_code == 200, "reload made the exporter unready"
        assert value(reloaded, "cams_up", account="main") == 1, "reload reset cams_up"
        exporter.wait_log("poll cycle done", mark)
        everything = wait_success_after(exporter, hup_at)
        assert {dict(k[1])["template_code"] for k in template_counters(everything)} > codes
        assert_exact(sim, everything)

        # An invalid config, by POST /-/reload: refused, with the key named and no secret.
        mark = len(exporter.log)
        path.write_text(
            path.read_text().replace("qps: 40", "qps: 80") + f"    bogus_secret_key: {SECRET}\n"
        )
        response = requests.post(f"{exporter.url}/-/reload", timeout=30)
        assert response.status_code == 400
        assert "accounts[0].qps" in response.text
        assert_no_secret(response.text, "the reload answer")
        exporter.wait_log("reload refused", mark)
        refused = [line for line in exporter.log[mark:].splitlines() if "reload refused" in line]
        assert len(refused) == 1 and "accounts[0].qps" in refused[0]
        # ... and by SIGHUP: the same, one line, the process goes on.
        mark = len(exporter.log)
        exporter.process.send_signal(signal.SIGHUP)
        exporter.wait_log("reload refused", mark)
        exporter.wait_log("poll cycle done", mark)  # the running config still polls
        assert exporter.process.poll() is None
        still = exporter.scrape()
        assert template_counters(still) == template_counters(everything)
        assert exporter.get("/-/ready").status_code == 200

        # A good config again by POST: the unchanged templates keep their counters.
        mark = len(exporter.log)
        write_config(path, sim, state=state, qps=30)
        response = requests.post(f"{exporter.url}/-/reload", timeout=30)
        assert response.status_code == 200
        after = exporter.scrape()
        assert template_counters(after) == template_counters(everything)
        assert exporter.stop() == 0
        stored, warning = CounterStore.load(str(state))
        assert warning is None
        sent = [k for k in everything if k[0] == "cams_template_messages_sent_total"]
        assert len(stored.units) == len(sent) == 8


def test_restart_without_state_but_with_an_origin_is_exact(
    tmp_path: Path, exporters: list[Exporter]
) -> None:
    """No state file, counters_since set: a cold start backfills to the same exact counters."""
    with running(sim_options(templates=2)) as sim:
        config = write_config(tmp_path / "cams.yml", sim)
        first = Exporter(tmp_path, config)
        exporters.append(first)
        before = wait_up(first)
        first.process.kill()
        first.process.wait(10)
        second = Exporter(tmp_path, config, port=first.port)
        exporters.append(second)
        assert template_counters(wait_up(second)) == template_counters(before)
        assert_exact(sim, before)
