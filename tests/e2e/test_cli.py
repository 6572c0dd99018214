"""The command line as a user runs it: subprocesses, real ports, signals, TLS and basic auth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Unpack

import bcrypt
import pytest
import requests

from exporter import __version__
from tests.kit.configs import Account
from tests.kit.configs import write_config as kit_write_config
from tests.kit.procs import ExporterProcess, Options, child_env, start_exporter
from tests.kit.sim import simulator_process
from tests.kit.waits import wait_http

SECRET = "s3cr3t-RECOGNISABLE-9f1c"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


Procs = list[ExporterProcess]


@pytest.fixture
def processes() -> Iterator[Procs]:
    started: list[ExporterProcess] = []
    yield started
    for process in started:
        process.stop(signal.SIGKILL)


def start(tmp: Path, *flags: str, **options: Unpack[Options]) -> ExporterProcess:
    """`python -m exporter FLAGS` on 127.0.0.1:0, its output in a file of `tmp`."""
    return start_exporter(tmp / f"exporter-{time.monotonic_ns()}.log", *flags, **options)


def message_lines(exporter: ExporterProcess) -> list[str]:
    """The `cams_template_messages_*` lines of /metrics, sorted."""
    lines = exporter.get("/metrics").text.splitlines()
    return sorted(line for line in lines if line.startswith("cams_template_messages_"))


def write_config(path: Path, sim_url: str, state: Path | None = None) -> Path:
    account = Account(
        sim_url,
        key_id="${CAMS_TEST_KEY}",
        secret="${CAMS_TEST_SECRET}",
        qps=None,
        list_qps=None,
    )
    return kit_write_config(path, account, poll={"interval": "10s", "lookback": "3d"}, state=state)


def test_version_and_help() -> None:
    result = run("--version")
    assert result.returncode == 0 and __version__ in result.stdout
    help_text = run("--help").stdout
    for flag in (
        "--config.file",
        "--web.listen-address",
        "--web.config.file",
        "--web.enable-lifecycle",
        "--web.max-connections",
        "--shard",
        "--demo",
    ):
        assert flag in help_text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--log.level", "loud", "--demo"], "--log.level"),
        (["--shard", "3/2", "--demo"], "--shard"),
        ([], "--config.file is required"),
        (["--config.file", "/nonexistent/cams.yml"], "/nonexistent/cams.yml: file not found"),
        (["--demo", "--web.config.file", "/nonexistent/web.yml"], "/nonexistent/web.yml"),
        (["--demo", "--web.max-connections", "0"], "--web.max-connections: must be at least 1"),
        (["--demo", "--web.max-connections", "many"], "--web.max-connections: not a whole"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], expected: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_config_names_every_bad_key_and_hides_secrets(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "poll:\n  intervall: 5m\n  lookback: forever\n"
        "accounts:\n"
        "  - name: main\n"
        "    qps: 80\n"
        f"    credentials: {{access_key_id: id, access_key_secret: [{SECRET}]}}\n"
        "    spaces: [{cust_space_id: cams-1, filters: {name_regex: '(['}}]\n"
    )
    result = run("check-config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    for key in (
        "poll.intervall",
        "poll.lookback",
        "accounts[0].qps",
        "accounts[0].credentials.access_key_secret",
        "accounts[0].spaces[0].filters.name_regex",
    ):
        assert any(line.startswith(key + ":") for line in lines), key
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr

    good = write_config(tmp_path / "good.yml", "http://127.0.0.1:1")
    env = {"CAMS_TEST_KEY": "demo", "CAMS_TEST_SECRET": SECRET}
    result = run("check-config", str(good), env=env)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    result = run(
        "check-config", str(good), env={"CAMS_TEST_KEY": "demo"} | {"CAMS_TEST_SECRET": ""}
    )
    assert result.returncode == 2
    assert "accounts[0].credentials.access_key_secret" in result.stderr


@pytest.mark.parametrize(
    ("poll", "warned"),
    [
        ({"lookback": "3d"}, True),
        ({"lookback": "7d", "granularity": "DAILY"}, True),
        ({"lookback": "8d"}, False),
        ({}, False),  # the default covers the read window
        ({"lookback": "3d", "granularity": "HALF_HOUR"}, False),
    ],
)
def test_check_config_warns_once_when_the_lookback_misses_the_read_window(
    tmp_path: Path, poll: dict[str, str], warned: bool
) -> None:
    account = Account("http://127.0.0.1:1", key_id="demo", secret="demo-secret")
    config = kit_write_config(tmp_path / "cams.yml", account, poll=poll or None)
    result = run("check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK")
    lines = result.stderr.strip().splitlines()
    if warned:
        assert len(lines) == 1, lines
        assert lines[0].startswith("warning: poll.lookback: ")
        assert "8d" in lines[0] and "read" in lines[0]
    else:
        assert lines == []


def test_check_config_and_a_bad_config_import_neither_the_server_nor_the_pollers(
    tmp_path: Path,
) -> None:
    """A config check needs the config alone: the HTTP stack and the pollers load only to serve."""
    good = write_config(tmp_path / "good.yml", "http://127.0.0.1:1")
    bad = tmp_path / "bad.yml"
    bad.write_text("poll:\n  interval: 5m5m\n")
    probe = (
        "import sys\n"
        "from exporter.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "heavy = [m for m in ('exporter.web.server', 'exporter.web.live', 'exporter.app',"
        " 'exporter.templates.poller', 'prometheus_client') if m in sys.modules]\n"
        "print(code, heavy)\n"
    )
    env = child_env({"CAMS_TEST_KEY": "demo", "CAMS_TEST_SECRET": SECRET})
    for argv, code in (
        (["check-config", str(good)], 0),
        (["check-config", str(bad)], 2),
        (["--config.file", str(bad)], 2),
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert done.stdout.splitlines()[-1] == f"{code} []", (argv, done.stdout, done.stderr)


def test_demo_becomes_ready_and_serves_metrics(tmp_path: Path, processes: Procs) -> None:
    started = time.monotonic()
    demo = start(tmp_path, "--demo")
    processes.append(demo)
    wait_http(f"{demo.url}/-/ready", timeout=30)
    print(f"\ndemo ready after {time.monotonic() - started:.2f}s (process start to /-/ready 200)")
    body = requests.get(f"{demo.url}/metrics", timeout=5).text
    assert "cams_template_messages_sent_total{" in body
    page = requests.get(f"{demo.url}/", timeout=5).text
    assert "cams-demo" in page and "demo-secret" not in page
    assert demo.stop() == 0
    assert "demo-secret" not in demo.log


def test_sigterm_writes_state_and_a_restart_resumes_the_counters(
    tmp_path: Path, processes: Procs
) -> None:
    state = tmp_path / "state.json"
    env = {"CAMS_TEST_KEY": "demo", "CAMS_TEST_SECRET": "demo-secret"}
    with simulator_process("--templates", "3", "--static", "--qps-limit", "1000") as sim:
        config = write_config(tmp_path / "cams.yml", sim.url, state)
        first = start(tmp_path, "--config.file", str(config), env=child_env(env))
        processes.append(first)
        wait_http(f"{first.url}/-/ready", timeout=30)
        before = message_lines(first)
        assert first.stop(signal.SIGTERM) == 0
        assert state.exists()
        assert "stopped" in first.log

        second = start(tmp_path, "--config.file", str(config), env=child_env(env))
        processes.append(second)
        wait_http(f"{second.url}/-/healthy", timeout=30)
        after = message_lines(second)
        assert after == before and len(before) == 18
        assert second.stop(signal.SIGINT) == 0


def test_tls_and_basic_auth_through_the_web_config_file(tmp_path: Path, processes: Procs) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    hashed = bcrypt.hashpw(b"right-password", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    demo = start(tmp_path, "--demo", "--web.config.file", str(web))
    processes.append(demo)
    url = f"https://127.0.0.1:{demo.port}"
    wait_http(
        f"{url}/-/healthy", timeout=30, verify=str(cert), auth=("prometheus", "right-password")
    )
    ok = requests.get(
        f"{url}/metrics", verify=str(cert), auth=("prometheus", "right-password"), timeout=5
    )
    assert ok.status_code == 200 and "cams_" in ok.text
    wrong = requests.get(f"{url}/metrics", verify=str(cert), auth=("prometheus", "nope"), timeout=5)
    assert wrong.status_code == 401
    assert requests.get(f"{url}/metrics", verify=str(cert), timeout=5).status_code == 401
    plain = requests.get(f"http://127.0.0.1:{demo.port}/metrics", timeout=5)  # HTTP on the TLS port
    assert plain.status_code == 400 and "HTTPS server" in plain.text


def test_the_open_files_limit_is_raised_to_the_hard_limit_at_start(
    tmp_path: Path, processes: Procs
) -> None:
    import resource

    demo = start(
        tmp_path,
        "--demo",
        preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096)),
    )
    processes.append(demo)
    wait_http(f"{demo.url}/-/healthy", timeout=30)
    text = requests.get(f"{demo.url}/metrics", timeout=5).text
    assert "\nprocess_max_fds 4096.0\n" in text
    assert "\nprocess_open_fds " in text
