"""Child processes for tests and benchmarks: on 127.0.0.1 port 0, the bound port read back.

Every child (the exporter, the simulator, Prometheus, a bench helper) is started with its
stdout and stderr in one log file, asked to listen on `127.0.0.1:0`, and its port is read from
the line it logs once bound: nobody picks a port in advance, so tests on parallel workers
cannot race for one. `Child.wait_log` waits for a line (failing at once with the log's tail if
the child exits), `Child.stop` is bounded (the signal, then SIGKILL) and touches this process
only. `Children` stops what it started, newest first.

    exporter = start_exporter(tmp / "exporter.log", "--config.file", str(config))
    exporter.url  # http://127.0.0.1:<the port it logged>
    exporter.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, TypeVar, Unpack

import requests

from tests.kit.series import Series, parse
from tests.kit.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
LOOPBACK_0 = f"{HOST}:0"
_CLK_TCK = os.sysconf("SC_CLK_TCK")

# The line each child logs once its socket is bound, with the port it got.
EXPORTER_LISTENING = re.compile(r"Listening on \S+ \(port (\d+), ")
SIMULATOR_LISTENING = re.compile(r"CAMS simulator listening on http://[^\s:]+:(\d+) ")
PROMETHEUS_LISTENING = re.compile(r'msg="Listening on" address=\S+:(\d+)')
STATIC_LISTENING = re.compile(r"static server listening on http://[^\s:]+:(\d+)")


class ChildExited(AssertionError):
    """The child a test waits on exited; the message holds its log's tail."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment with the repository first on the import path (the tree under test)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


@dataclass
class Child:
    """One child process and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def log(self) -> str:
        """Everything the child wrote so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """The log's length now: pass it as `after` to wait for what comes next."""
        return len(self.log)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def wait_log(
        self, pattern: str | re.Pattern[str], after: int = 0, timeout: float = 30.0
    ) -> re.Match[str]:
        """The first match of `pattern` (a regex; a str is taken literally) in the log after
        character `after`; fails at once if the child exits first."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))

        def found() -> re.Match[str] | None:
            match = regex.search(self.log, after)
            if match is None and not self.alive():
                raise ChildExited(
                    f"{self.name} exited ({self.process.returncode}) before logging "
                    f"{regex.pattern!r}:\n{self.log_tail()}"
                )
            return match

        return wait_until(found, timeout, f"{self.name} logging {regex.pattern!r}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig` (if still running), wait up to `timeout` s, then SIGKILL; the exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def kill(self) -> int:
        """SIGKILL now (a hard crash, as kill -9 gives it)."""
        return self.stop(signal.SIGKILL, timeout=10)

    # -- what /proc says about it (Linux) -------------------------------------------------

    def _status(self, key: str) -> int | None:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(rf"^{key}:\s+(\d+)", text, re.M)
        return int(match.group(1)) if match else None

    def peak_rss_mb(self) -> float | None:
        """VmHWM (the peak resident set) in MiB, None once the process is gone."""
        kb = self._status("VmHWM")
        return None if kb is None else kb / 1024

    def rss_mb(self) -> float | None:
        """VmRSS in MiB."""
        kb = self._status("VmRSS")
        return None if kb is None else kb / 1024

    def threads(self) -> int | None:
        return self._status("Threads")

    def open_fds(self) -> int | None:
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def cpu_s(self) -> float | None:
        """User + system CPU seconds used so far (every thread)."""
        return cpu_seconds(self.pid)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` so far, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


_LIVE: list[Child] = []


@atexit.register
def _stop_leftovers() -> None:  # a crash or Ctrl-C of a bench must not leave children behind
    for child in list(_LIVE):
        child.stop(timeout=3)


class Options(TypedDict, total=False):
    """How `spawn` starts a child: its environment (default `child_env()`), working directory
    (default the repository), a function run in the child before exec, its own session."""

    env: Mapping[str, str]
    cwd: Path
    preexec: Callable[[], None]
    new_session: bool


def spawn(name: str, argv: Sequence[str], log_path: Path, **options: Unpack[Options]) -> Child:
    """Start `argv` with stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = options.get("env")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=options.get("cwd", ROOT),
            env=dict(env) if env is not None else child_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=options.get("preexec"),
            start_new_session=options.get("new_session", False),
        )
    child = Child(name, process, log_path)
    _LIVE.append(child)
    return child


@dataclass
class Service:
    """A child that serves HTTP on 127.0.0.1 at the port it logged."""

    child: Child
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    @property
    def log(self) -> str:
        return self.child.log

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        return self.child.stop(sig, timeout)


class ExporterProcess(Service):
    """`python -m exporter` as a child: HTTP helpers, every answer checked for `secret`."""

    secret: str | None = None

    def get(self, path: str, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        response = requests.get(f"{self.url}{path}", **kwargs)  # type: ignore[arg-type]
        self._check(response.text, path)
        return response

    def post(self, path: str, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        response = requests.post(f"{self.url}{path}", **kwargs)  # type: ignore[arg-type]
        self._check(response.text, f"the answer to POST {path}")
        return response

    def _check(self, text: str, where: str) -> None:
        if self.secret is not None and self.secret in text:
            raise AssertionError(f"the secret is in {where}")  # not echoing the text

    def metrics_text(self) -> str:
        """The whole /metrics body (asked gzipped, to keep the exporter's cost of it small)."""
        response = self.get("/metrics", headers={"Accept-Encoding": "gzip"}, timeout=60)
        if response.status_code != 200:
            raise ValueError(f"/metrics answered {response.status_code}")
        return response.text

    def scrape(self) -> Series:
        """GET /metrics, parsed."""
        return parse(self.metrics_text())

    def ready(self) -> bool:
        """/-/ready answers 200 (the first poll is complete); fails at once if the child died."""
        if not self.child.alive():
            raise ChildExited(f"{self.child.name} exited: {self.child.log_tail()}")
        return self.get("/-/ready").status_code == 200


class SimulatorProcess(Service):
    """`python -m exporter simulate` as a child, with its runtime controls."""

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def stats(self) -> dict[str, Any]:
        """/_sim/stats: {"actions": {action: {calls, ok, throttled, errors, max_*_in_1s}}}."""
        response = requests.get(f"{self.url}/_sim/stats", timeout=30)
        if response.status_code != 200:
            raise ValueError(f"/_sim/stats answered {response.status_code}")
        data: dict[str, Any] = response.json()
        return data

    def action(self, name: str) -> dict[str, int]:
        """The stats of one action (zeros before its first call)."""
        zero = {"calls": 0, "ok": 0, "throttled": 0, "errors": 0}
        zero |= {"max_calls_in_1s": 0, "max_ok_in_1s": 0}
        found: dict[str, int] = self.stats()["actions"].get(name, zero)
        return found

    def control(self, path: str, body: str = "") -> None:
        """POST /_sim/PATH (faults, keys, templates/delete, stats/reset ...)."""
        response = requests.post(f"{self.url}/_sim/{path}", data=body.encode(), timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"/_sim/{path} answered {response.status_code}")

    def reset(self) -> None:
        self.control("stats/reset")


S = TypeVar("S", bound=Service)


def ahead_of_the_load() -> None:
    """In the child before exec: the lowest real-time priority (round robin) where allowed (as
    root), else a better nice value, else as it is. The simulator does little work per request,
    so it takes little from the others; what it gains is being woken at once."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except OSError:
        with contextlib.suppress(OSError):
            os.nice(-10)


def serve(
    kind: type[S],
    name: str,
    argv: Sequence[str],
    log_path: Path,
    listening: re.Pattern[str],
    *,
    timeout: float = 30.0,
    scheme: str = "http",
    **options: Unpack[Options],
) -> S:
    """`spawn` a server told to listen on port 0, and read its port from its log."""
    child = spawn(name, argv, log_path, **options)
    try:
        port = int(child.wait_log(listening, timeout=timeout).group(1))
    except BaseException:
        child.stop(timeout=5)
        raise
    return kind(child, port, scheme)


def exporter_argv(*flags: str) -> list[str]:
    """`python -m exporter FLAGS`, on 127.0.0.1:0 unless FLAGS name a listen address."""
    listen = [] if "--web.listen-address" in flags else ["--web.listen-address", LOOPBACK_0]
    return [sys.executable, "-m", "exporter", *flags, *listen]


def start_exporter(
    log_path: Path,
    *flags: str,
    timeout: float = 30.0,
    scheme: str = "http",
    secret: str | None = None,
    **options: Unpack[Options],
) -> ExporterProcess:
    """`python -m exporter FLAGS --web.listen-address 127.0.0.1:0`, once it logged its port
    (`scheme` "https" when FLAGS give a web config with TLS; answers checked for `secret`)."""
    exporter = serve(
        ExporterProcess,
        "exporter",
        exporter_argv(*flags),
        log_path,
        EXPORTER_LISTENING,
        timeout=timeout,
        scheme=scheme,
        **options,
    )
    exporter.secret = secret
    return exporter


def start_simulator(
    log_path: Path, *flags: str, timeout: float = 30.0, **options: Unpack[Options]
) -> SimulatorProcess:
    """`python -m exporter simulate --listen 127.0.0.1:0 FLAGS`, once it logged its URL."""
    argv = [sys.executable, "-m", "exporter", "simulate", "--listen", LOOPBACK_0, *flags]
    return serve(
        SimulatorProcess,
        "simulator",
        argv,
        log_path,
        SIMULATOR_LISTENING,
        timeout=timeout,
        **options,
    )


def start_prometheus(
    log_path: Path,
    config: Path,
    data: Path,
    *flags: str,
    timeout: float = 60.0,
    **options: Unpack[Options],
) -> Service:
    """Debian's `prometheus` with `config`, its TSDB in `data`, on 127.0.0.1:0 (and FLAGS)."""
    argv = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={LOOPBACK_0}",
        *flags,
    ]
    return serve(
        Service, "prometheus", argv, log_path, PROMETHEUS_LISTENING, timeout=timeout, **options
    )


C = TypeVar("C", Child, Service, ExporterProcess, SimulatorProcess)


@dataclass
class Children:
    """Every child one test or scenario started; `stop_all` stops them newest first."""

    log_dir: Path
    started: list[Child] = field(default_factory=list)

    def add(self, started: C) -> C:
        """Track a child (or a served child) to stop; returns it."""
        self.started.append(started.child if isinstance(started, Service) else started)
        return started

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        while self.started:
            child = self.started.pop()
            child.stop(sig)
            with contextlib.suppress(ValueError):
                _LIVE.remove(child)


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port on which nothing answers (connections are refused) while the block runs.

    The socket is bound (so no other test can take the port) but never listens: a race-free
    "nothing listens here", where a probed-and-released free port could be taken meanwhile."""
    with socket.socket() as held:
        held.bind((HOST, 0))
        port: int = held.getsockname()[1]
        yield port
