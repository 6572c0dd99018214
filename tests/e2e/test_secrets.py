"""The account's secret shows up nowhere: logs (debug, logfmt and json), /metrics in every
format, the landing page, readiness, reload answers, error messages, check-config, the state
file, nor this test run's own output.

A real exporter process, with one account whose secret comes from the environment and one
whose secret is written in the config file, runs at --log.level debug through the faults of
the matrix (every transport and API fault, a key rotated away, clock skew), a refused reload
with the secret misplaced in the new config, and a clean shutdown. Every fault is seen in the
logs (so the check is not vacuous) and the recognisable secret is in none of it.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from alibabacloud_cams20200606 import models

from cams_simulator import Simulator
from tests.kit.configs import Account, days_back, write_config
from tests.kit.oracle import sdk_client
from tests.kit.procs import child_env, start_exporter
from tests.kit.sim import SECRET, assert_no_secret, no_secret_in_test_output, running
from tests.kit.sim import secret_options as sim_options
from tests.kit.waits import wait_http, wait_until

ENV = "CAMS_SECRETS_TEST_SECRET"

pytestmark = pytest.mark.usefixtures(no_secret_in_test_output.__name__)


def secrets_config(path: Path, sim: Simulator, state: Path, *, broken: bool = False) -> Path:
    """Two accounts: `fromenv` with its secret from the environment, `infile` with it written
    in the file (with `broken`, where a list is not allowed, and as an unknown key's name)."""
    from_env = Account(sim.url, name="fromenv", secret=f"${{{ENV}}}", qps=None, list_qps=None)
    if broken:
        credentials = {"access_key_secret": [SECRET], SECRET: SECRET, "access_key_id": "demo"}
    else:
        credentials = {"access_key_id": "demo", "access_key_secret": SECRET}
    in_file = Account(sim.url, name="infile", credentials=credentials, qps=None, list_qps=None)
    poll = {"interval": "10s", "lookback": "2d", "counters_since": days_back(4)[0]}
    poll |= {"timeout": "1s", "max_retries": 1}
    accounts = (from_env, in_file)
    return write_config(path, *accounts, poll=poll, state=state)


class Run:
    """The exporter as a user runs it (on port 0), every line it writes and every answer kept."""

    def __init__(self, tmp: Path, config: Path, log_format: str) -> None:
        self.config = config
        self.exporter = start_exporter(
            tmp / f"exporter-{log_format}.log",
            "--config.file",
            str(config),
            "--log.level",
            "debug",
            "--log.format",
            log_format,
            "--web.enable-lifecycle",
            env=child_env({ENV: SECRET}),
        )
        self.url = self.exporter.url
        self.bodies: list[str] = []

    @property
    def log(self) -> str:
        return self.exporter.log

    def fetch(self, path: str, method: str = "GET", **kwargs: object) -> requests.Response:
        response = requests.request(method, f"{self.url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]
        self.bodies.append(f"{method} {path} {response.status_code}\n{response.text}")
        self.bodies.append(json.dumps(dict(response.headers)))
        return response

    def cycle(self) -> str:
        """Start a poll cycle now and wait for its summary line: a reload starts one when the
        config changed, so the poll timeout alternates between 1s and 1001ms."""
        mark = len(self.log)
        text = self.config.read_text()
        if "timeout: 1s\n" in text:
            self.config.write_text(text.replace("timeout: 1s\n", "timeout: 1001ms\n"))
        else:
            self.config.write_text(text.replace("timeout: 1001ms\n", "timeout: 1s\n"))
        assert self.fetch("/-/reload", "POST").status_code == 200

        def summaries() -> str | None:
            lines = [line for line in self.log[mark:].splitlines() if "poll cycle" in line]
            return "\n".join(lines) if len(lines) >= 2 else None  # both accounts

        return wait_until(summaries, 30, "a poll cycle of both accounts after the reload")

    def stop(self) -> int:
        return self.exporter.stop(signal.SIGTERM, timeout=30)


def test_the_secret_appears_nowhere(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with running(sim_options(templates=3)) as sim:
        config = secrets_config(tmp_path / "cams.yml", sim, state)
        run = Run(tmp_path, config, "logfmt")
        try:
            wait_http(f"{run.url}/-/ready", timeout=30)
            seen = [run.cycle()]
            for fault in (
                "throttle=0.3,5xx=0.2,timeout=0.1,reset=0.1,malformed=0.1,error200=0.1,seed=5",
                "error200=1.0",
            ):
                sim.set_faults(fault)
                seen.append(run.cycle())
            sim.set_faults("")
            sim.set_keys("demo", "rotated-somewhere-else")
            seen.append(run.cycle())
            sim.set_keys("demo", SECRET)
            sim.set_clock_offset(30 * 60)
            seen.append(run.cycle())
            sim.set_clock_offset(0)
            seen.append(run.cycle())
            assert "poll cycle done" in seen[-1]

            # Every page and format.
            for path, headers in (
                ("/metrics", {}),
                ("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}),
                ("/", {}),
                ("/-/ready", {}),
                ("/-/healthy", {}),
            ):
                run.fetch(path, headers=headers)
            zipped = requests.get(
                f"{run.url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=30, stream=True
            )
            run.bodies.append(gzip.decompress(zipped.raw.read()).decode())
            run.fetch("/-/reload", "GET")

            # A new config with the secret misplaced: refused, the secret not echoed.
            secrets_config(config, sim, state, broken=True)
            refused = run.fetch("/-/reload", "POST")
            assert refused.status_code == 400
            assert "accounts[1].credentials" in refused.text
            mark = len(run.log)
            run.exporter.child.process.send_signal(signal.SIGHUP)
            run.exporter.child.wait_log("reload refused", mark, timeout=20)
            checked = subprocess.run(
                [sys.executable, "-m", "exporter", "check-config", str(config)],
                capture_output=True,
                text=True,
                timeout=60,
                env=child_env({ENV: SECRET}),
            )
            assert checked.returncode == 2
            run.bodies.append(checked.stdout + checked.stderr)
        finally:
            assert run.stop() == 0
        log = run.log
        # Not vacuous: the faults, the rotated key, the skew and the refusal were all logged.
        for expected in (
            "SignatureDoesNotMatch",
            "InvalidTimeStamp.Expired",
            "InternalError",
            "reload refused",
            "config reloaded",
            "level=debug",
            "stopped",
        ):
            assert expected in log, expected
        assert_no_secret(log, "a log line")
        assert "Traceback" not in log
        for body in run.bodies:
            assert_no_secret(body, body.splitlines()[0])
        assert any("cams_template_messages_sent_total{" in body for body in run.bodies)
        assert_no_secret(state.read_text(), "the state file")


def test_json_logs_and_sdk_errors_carry_no_secret(tmp_path: Path) -> None:
    """The json log format at debug through an auth failure; and what the SDK (our test
    oracle) raises on a refused signature does not carry it either."""
    with running(sim_options(templates=2)) as sim:
        config = secrets_config(tmp_path / "cams.yml", sim, tmp_path / "state.json")
        run = Run(tmp_path, config, "json")
        try:
            wait_http(f"{run.url}/-/ready", timeout=30)
            sim.set_keys("demo", "rotated-somewhere-else")
            summary = run.cycle()
            assert "SignatureDoesNotMatch" in summary
            sim.set_keys("demo", SECRET)
            assert "poll cycle done" in run.cycle()
        finally:
            assert run.stop() == 0
        lines = run.log.splitlines()
        assert lines and all(json.loads(line)["msg"] for line in lines)
        assert_no_secret(run.log, "a json log line")

        sim.set_keys("demo", "rotated-somewhere-else")
        sdk = sdk_client(sim, secret=SECRET)
        with pytest.raises(Exception) as caught:
            sdk.list_chatapp_template(
                models.ListChatappTemplateRequest(
                    cust_space_id="cams-demo",
                    page=models.ListChatappTemplateRequestPage(index=1, size=5),
                )
            )
        assert "SignatureDoesNotMatch" in str(caught.value)
        assert_no_secret(str(caught.value) + repr(caught.value), "the SDK's error")
