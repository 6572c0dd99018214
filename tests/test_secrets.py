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
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from alibabacloud_cams20200606 import models

from exporter.simulator import Simulator
from tests.kit.sim import free_port, running, sdk_client, wait_http
from tests.test_faults import SECRET, assert_no_secret, origin, sim_options

ENV = "CAMS_SECRETS_TEST_SECRET"


@pytest.fixture(autouse=True)
def no_secret_in_test_output(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    yield
    out, err = capfd.readouterr()
    assert_no_secret(out + err, "the test's output")
    sys.stdout.write(out)
    sys.stderr.write(err)


def write_config(path: Path, sim: Simulator, state: Path, *, broken: bool = False) -> Path:
    since, _ = origin()
    env_account = (
        "  - name: fromenv\n"
        f"    endpoint: {sim.url}\n"
        "    credentials:\n"
        "      access_key_id: demo\n"
        f"      access_key_secret: ${{{ENV}}}\n"
        "    spaces: [{cust_space_id: cams-demo}]\n"
    )
    if broken:  # the secret where a list is not allowed, and as an unknown key's name
        file_credentials = (
            f"      access_key_secret: [{SECRET}]\n      {SECRET}: {SECRET}\n"
            "      access_key_id: demo\n"
        )
    else:
        file_credentials = f"      access_key_id: demo\n      access_key_secret: {SECRET}\n"
    path.write_text(
        "poll:\n  interval: 10s\n  lookback: 2d\n"
        f"  counters_since: {since.isoformat()}\n  timeout: 1s\n  max_retries: 1\n"
        f"state:\n  path: {state}\n"
        "accounts:\n" + env_account + "  - name: infile\n"
        f"    endpoint: {sim.url}\n"
        "    credentials:\n" + file_credentials + "    spaces: [{cust_space_id: cams-demo}]\n"
    )
    return path


class Run:
    """The exporter as a user runs it, every line it writes kept."""

    def __init__(self, tmp: Path, config: Path, log_format: str) -> None:
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"exporter-{log_format}.log"
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
                "--log.level",
                "debug",
                "--log.format",
                log_format,
                "--web.enable-lifecycle",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, ENV: SECRET},
        )
        self.bodies: list[str] = []

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def fetch(self, path: str, method: str = "GET", **kwargs: object) -> requests.Response:
        response = requests.request(method, f"{self.url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]
        self.bodies.append(f"{method} {path} {response.status_code}\n{response.text}")
        self.bodies.append(json.dumps(dict(response.headers)))
        return response

    def cycle(self, after: int = 0) -> str:
        """Start a poll cycle now and wait for its summary line: a reload starts one when the
        config changed, so the poll timeout alternates between 1s and 1001ms."""
        mark = len(self.log)
        text = self.config.read_text()
        if "timeout: 1s\n" in text:
            self.config.write_text(text.replace("timeout: 1s\n", "timeout: 1001ms\n"))
        else:
            self.config.write_text(text.replace("timeout: 1001ms\n", "timeout: 1s\n"))
        assert self.fetch("/-/reload", "POST").status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = [line for line in self.log[mark:].splitlines() if "poll cycle" in line]
            if len(lines) >= 2:  # both accounts
                return "\n".join(lines)
            time.sleep(0.05)
        raise AssertionError("no poll cycle after the reload")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self._log.close()
        return code


def test_the_secret_appears_nowhere(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with running(sim_options(templates=3)) as sim:
        config = write_config(tmp_path / "cams.yml", sim, state)
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
            write_config(config, sim, state, broken=True)
            refused = run.fetch("/-/reload", "POST")
            assert refused.status_code == 400
            assert "accounts[1].credentials" in refused.text
            mark = len(run.log)
            run.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while "reload refused" not in run.log[mark:] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "reload refused" in run.log[mark:]
            checked = subprocess.run(
                [sys.executable, "-m", "exporter", "check-config", str(config)],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, ENV: SECRET},
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
        config = write_config(tmp_path / "cams.yml", sim, tmp_path / "state.json")
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
