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

import ctypes
import json
import os
import select
import signal
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cams_simulator import Simulator
from exporter.counting.store import CounterStore
from tests.kit.configs import Account, days_back, write_config
from tests.kit.exact import exact_problems
from tests.kit.procs import ExporterProcess, child_env, start_exporter
from tests.kit.series import Series, nonzero, template_counters, value
from tests.kit.sim import SECRET, assert_no_secret, no_secret_in_test_output, running
from tests.kit.sim import secret_options as sim_options
from tests.kit.waits import wait_http, wait_until

SINCE, ORIGIN_MS = days_back(4)

pytestmark = pytest.mark.usefixtures(no_secret_in_test_output.__name__)


def stop(exporter: ExporterProcess, sig: int = signal.SIGTERM) -> int:
    """Stop it; its log holds neither the secret nor a traceback."""
    code = exporter.stop(sig)
    assert_no_secret(exporter.log, "the exporter log")
    assert "Traceback" not in exporter.log
    return code


Start = Callable[[Path], ExporterProcess]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """`python -m exporter --config.file CONFIG` on port 0, logs in a file, the secret from the
    environment; every one started is killed (and its log checked) after the test."""
    started: list[ExporterProcess] = []

    def launch(config: Path) -> ExporterProcess:
        exporter = start_exporter(
            tmp_path / f"exporter-{time.monotonic_ns()}.log",
            *("--config.file", str(config), "--log.format", "logfmt", "--web.enable-lifecycle"),
            env=child_env({"CAMS_TEST_SECRET": SECRET}),
            secret=SECRET,
        )
        started.append(exporter)
        return exporter

    yield launch
    for exporter in started:
        stop(exporter, signal.SIGKILL)


def restart_config(
    path: Path,
    sim: Simulator,
    *,
    state: Path | None = None,
    qps: int = 50,
    category: str | None = None,
    extra: dict[str, object] | None = None,
) -> Path:
    poll: dict[str, object] = {"interval": "10s", "lookback": "2d", "max_range": "5d"}
    poll["counters_since"] = SINCE
    space: dict[str, object] = {"cust_space_id": "cams-demo"}
    if category:
        space["filters"] = {"category": category}
    account = Account(
        sim.url, secret="${CAMS_TEST_SECRET}", qps=qps, spaces=(space,), extra=extra or {}
    )
    poll |= {"timeout": "2s", "max_retries": 1}
    return write_config(path, account, poll=poll, state=state)


def assert_resumed(before: Series, after: Series) -> None:
    """Every counter that was above zero before is back, at least as high."""
    lost = {k: v for k, v in nonzero(before).items() if after.get(k, -1) < v}
    assert not lost, f"{len(lost)} counters came back lower than they were served"


def assert_exact(sim: Simulator, series: Series) -> None:
    """Exact against the SDK, one read per unit over origin..now (these simulators take any
    range; 0.2 s of latency a call makes fewer calls worth it)."""
    problems = exact_problems(sim, series, ORIGIN_MS, secret=SECRET)
    assert not problems, problems[:3]


def up(series: Series) -> bool:
    return value(series, "cams_up", account="main") == 1


def wait_up(exporter: ExporterProcess, timeout: float = 60.0) -> Series:
    """The first scrape after a poll cycle that read every template (cams_up 1)."""
    wait_http(f"{exporter.url}/-/healthy", timeout=30)

    def scraped() -> Series | None:
        series = exporter.scrape()
        return series if up(series) else None

    return wait_until(scraped, timeout, "cams_up 1")


def wait_success_after(exporter: ExporterProcess, moment: float, timeout: float = 30.0) -> Series:
    """The first scrape whose snapshot holds a fully successful cycle that ended after
    `moment` (a cycle is logged before its snapshot is published)."""

    def scraped() -> Series | None:
        series = exporter.scrape()
        last = value(series, "cams_poll_last_success_timestamp_seconds", account="main")
        return series if last > moment and up(series) else None

    return wait_until(scraped, timeout, "a successful poll cycle after the reload")


def test_kill_9_in_the_middle_of_a_poll_loses_nothing(tmp_path: Path, start: Start) -> None:
    state = tmp_path / "state.json"
    # 12 units read at 2 calls per second, 0.2 s each: a second cycle of a few seconds.
    with running(sim_options(templates=6, latency_s=0.2)) as sim:
        config = restart_config(tmp_path / "cams.yml", sim, state=state, qps=2)
        first = start(config)
        served = wait_up(first)  # the first cycle, published (counters publish per cycle)
        assert nonzero(served), "no counter was published by the first cycle"
        sim.reset_stats()

        # Kill while the second cycle is part-way: some of its 12 reads answered, not all.
        def answered() -> int:
            return int(sim.stats()["actions"].get("GetChatappTemplateMetric", {}).get("ok", 0))

        wait_until(lambda: answered() >= 2, 30, "two reads of the second cycle", every=0.02)
        first.child.kill()
        done = answered()
        assert 2 <= done <= 5, f"the kill did not come mid-cycle ({done} reads done)"
        assert first.log.count("poll cycle done") == 1, "the kill came after the second cycle"

        # The restart on the same state file, at the default qps: only the killed cycle had
        # to be slow.
        second = start(restart_config(tmp_path / "fast.yml", sim, state=state))
        wait_http(f"{second.url}/-/healthy", timeout=30)
        assert_resumed(served, second.scrape())
        after = wait_up(second)
        assert_resumed(served, after)
        assert_exact(sim, after)
        assert "corrupt" not in second.log


class CreatedFiles:
    """Linux inotify on one directory: `wait` blocks until files are created in it (the
    moment the exporter opens its temporary state file), without polling the directory."""

    IN_CREATE = 0x100

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, bytes(directory), self.IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {directory}")

    def wait(self, timeout: float) -> list[str]:
        """The names created next (none when `timeout` s pass first)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        data = os.read(self.fd, 65536)
        names, offset = [], 0
        while offset < len(data):  # struct inotify_event: wd, mask, cookie, len, name[len]
            length = struct.unpack_from("iIII", data, offset)[3]
            names.append(data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode())
            offset += 16 + length
        return names

    def __enter__(self) -> CreatedFiles:
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)


def test_kill_9_in_the_middle_of_a_state_write_keeps_a_whole_state_file(
    tmp_path: Path, start: Start
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state = state_dir / "state.json"
    # 160 units: a state file of tens of kB, written at the end of every poll cycle.
    with running(sim_options(templates=80)) as sim:
        config = restart_config(tmp_path / "cams.yml", sim, state=state)
        first = start(config)
        wait_http(f"{first.url}/-/healthy", timeout=30)

        # The first writes happen while the first poll progresses.
        def written() -> Series | None:
            series = first.scrape()
            return series if state.exists() and nonzero(series) else None

        served = wait_until(written, 30, "a state file and a counter served", every=0.02)
        assert state.exists()
        pid = first.child.pid
        caught = False
        deadline = time.monotonic() + 40
        with CreatedFiles(state_dir) as created:
            while time.monotonic() < deadline and not caught:
                names = created.wait(deadline - time.monotonic())  # the next write's temp file
                if not any(name.endswith(".tmp") for name in names):
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
        assert caught, "never caught the exporter writing its state"
        first.child.process.wait(10)
        assert [p for p in os.listdir(state_dir) if p.endswith(".tmp")], "not mid-write"
        stored = CounterStore.from_json(json.loads(state.read_text()))  # whole, parseable
        assert stored.units, "the state file lost its units"

        second = start(config)
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


def test_kill_9_then_restart_resumes_every_counter_exactly(tmp_path: Path, start: Start) -> None:
    """A kill -9 between polls: the restart serves exactly the counters served before."""
    state = tmp_path / "state.json"
    with running(sim_options(templates=3)) as sim:
        config = restart_config(tmp_path / "cams.yml", sim, state=state)
        first = start(config)
        before = wait_up(first)
        first.child.kill()
        second = start(config)
        wait_http(f"{second.url}/-/healthy", timeout=30)
        assert template_counters(second.scrape()) == template_counters(before)
        assert template_counters(wait_up(second)) == template_counters(before)
        assert_exact(sim, before)


def test_sighup_and_post_reload_keep_counters_and_refuse_a_bad_config(
    tmp_path: Path, start: Start
) -> None:
    state = tmp_path / "state.json"
    with running(sim_options(templates=4)) as sim:
        path = tmp_path / "cams.yml"
        config = restart_config(path, sim, state=state, category="MARKETING")
        exporter = start(config)
        marketing = template_counters(wait_up(exporter))
        assert nonzero(marketing)
        codes = {dict(k[1])["template_code"] for k in marketing}
        assert 0 < len(codes) < 4

        # SIGHUP: every category now, another qps. The marketing templates keep their counters.
        mark = len(exporter.log)
        restart_config(path, sim, state=state, qps=40)
        hup_at = time.time()
        exporter.child.process.send_signal(signal.SIGHUP)
        exporter.child.wait_log("config reloaded", mark)
        reloaded = exporter.scrape()
        assert {k: v for k, v in template_counters(reloaded).items() if k in marketing} == (
            marketing
        )
        assert exporter.get("/-/ready").status_code == 200, "reload made the exporter unready"
        assert value(reloaded, "cams_up", account="main") == 1, "reload reset cams_up"
        exporter.child.wait_log("poll cycle done", mark)
        everything = wait_success_after(exporter, hup_at)
        assert {dict(k[1])["template_code"] for k in template_counters(everything)} > codes
        assert_exact(sim, everything)

        # An invalid config, by POST /-/reload: refused, with the key named and no secret.
        mark = len(exporter.log)
        restart_config(path, sim, state=state, qps=80, extra={"bogus_secret_key": SECRET})
        response = exporter.post("/-/reload")  # the answer checked for the secret
        assert response.status_code == 400
        assert "accounts[0].qps" in response.text
        exporter.child.wait_log("reload refused", mark)
        refused = [line for line in exporter.log[mark:].splitlines() if "reload refused" in line]
        assert len(refused) == 1 and "accounts[0].qps" in refused[0]
        # ... and by SIGHUP: the same, one line, the process goes on.
        mark = len(exporter.log)
        exporter.child.process.send_signal(signal.SIGHUP)
        exporter.child.wait_log("reload refused", mark)
        exporter.child.wait_log("poll cycle done", mark)  # the running config still polls
        assert exporter.child.alive()
        still = exporter.scrape()
        assert template_counters(still) == template_counters(everything)
        assert exporter.get("/-/ready").status_code == 200

        # A good config again by POST: the unchanged templates keep their counters.
        mark = len(exporter.log)
        restart_config(path, sim, state=state, qps=30)
        response = exporter.post("/-/reload")
        assert response.status_code == 200
        after = exporter.scrape()
        assert template_counters(after) == template_counters(everything)
        assert stop(exporter) == 0
        stored, warning = CounterStore.load(str(state))
        assert warning is None
        sent = [k for k in everything if k[0] == "cams_template_messages_sent_total"]
        assert len(stored.units) == len(sent) == 8


def test_restart_without_state_but_with_an_origin_is_exact(tmp_path: Path, start: Start) -> None:
    """No state file, counters_since set: a cold start backfills to the same exact counters."""
    with running(sim_options(templates=2)) as sim:
        config = restart_config(tmp_path / "cams.yml", sim)
        first = start(config)
        before = wait_up(first)
        first.child.kill()
        second = start(config)
        assert template_counters(wait_up(second)) == template_counters(before)
        assert_exact(sim, before)
