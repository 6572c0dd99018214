"""Process plumbing for the benchmarks: child processes on 127.0.0.1, their memory and CPU, and
small readers for the simulator's stats and the exporter's self-metrics.

Every child (simulator, exporter, static server, competing client) is its own Python process with
its own GIL, started in its own session so that a Ctrl-C of the bench does not race its cleanup,
and stopped (SIGTERM, then SIGKILL) by `Children.stop_all`, which run.py calls in `finally`.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
_T = TypeVar("_T")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    """The environment of a child: this one, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class Child:
    """One child process, its log file and what /proc says about it."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def status_kb(self, field_name: str) -> int | None:
        """A `kB` field of /proc/<pid>/status (VmHWM, VmRSS), None once the process is gone."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
        return int(match.group(1)) if match else None

    def peak_rss_mb(self) -> float | None:
        """VmHWM (the peak resident set) in MiB."""
        kb = self.status_kb("VmHWM")
        return None if kb is None else kb / 1024

    def rss_mb(self) -> float | None:
        """VmRSS in MiB."""
        kb = self.status_kb("VmRSS")
        return None if kb is None else kb / 1024

    def threads(self) -> int | None:
        """Threads of the process now."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"^Threads:\s+(\d+)", text, re.M)
        return int(match.group(1)) if match else None

    def cpu_s(self) -> float | None:
        """User + system CPU seconds used so far (every thread)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL: this process only (never a group or a name)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(5)
        return self.process.returncode


@dataclass
class Children:
    """Every child one scenario started; `stop_all` in reverse start order."""

    log_dir: Path
    started: list[Child] = field(default_factory=list)

    def spawn(self, name: str, args: Sequence[str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        try:
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        child = Child(name, process, log_path)
        self.started.append(child)
        _LIVE.append(child)
        return child

    def stop_all(self) -> None:
        while self.started:
            child = self.started.pop()
            child.stop()
            with contextlib.suppress(ValueError):
                _LIVE.remove(child)


_LIVE: list[Child] = []


@atexit.register
def _stop_leftovers() -> None:  # a crash or Ctrl-C of the bench must not leave children behind
    for child in list(_LIVE):
        child.stop(timeout=3)


def wait_for(what: str, check: Callable[[], _T | None], timeout: float, every: float = 0.25) -> _T:
    """Call `check` until it returns something other than None/False, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value is not None and value is not False:
                return value
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"{what}: not within {timeout:.0f}s{detail}")
        time.sleep(every)


# --------------------------------------------------------------------------------------------
# HTTP (loopback only)


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    """One GET on a fresh connection: (status, headers lower-cased, body as sent)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def http_post(port: int, path: str, body: bytes = b"", timeout: float = 30.0) -> int:
    """One POST on a fresh connection; the status."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class KeepAlive:
    """Sequential GETs on one keep-alive connection, timed from send to last byte."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.port = port
        self.timeout = timeout
        self._conn = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def get(self, path: str, headers: dict[str, str]) -> tuple[float, int, bytes]:
        """(seconds, status, body) of one GET."""
        started = time.perf_counter()
        try:
            self._conn.request("GET", path, headers=headers)
            response = self._conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self._conn.close()
            self._conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            raise
        return time.perf_counter() - started, response.status, body

    def close(self) -> None:
        self._conn.close()


# --------------------------------------------------------------------------------------------
# The simulator and the exporter as processes


@dataclass
class SimulatorProcess:
    child: Child
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stats(self) -> dict[str, Any]:
        """/_sim/stats: {"actions": {action: {calls, ok, throttled, errors, max_*_in_1s}}}."""
        status, _, body = http_get(self.port, "/_sim/stats")
        if status != 200:
            raise ValueError(f"/_sim/stats answered {status}")
        data: dict[str, Any] = json.loads(body)
        return data

    def action(self, name: str) -> dict[str, int]:
        """The stats of one action (zeros before its first call)."""
        zero = {"calls": 0, "ok": 0, "throttled": 0, "errors": 0}
        zero |= {"max_calls_in_1s": 0, "max_ok_in_1s": 0}
        found: dict[str, int] = self.stats()["actions"].get(name, zero)
        return found

    def reset(self) -> None:
        if http_post(self.port, "/_sim/stats/reset") != 200:
            raise RuntimeError("/_sim/stats/reset failed")


def start_simulator(children: Children, name: str, flags: Sequence[str]) -> SimulatorProcess:
    """`python -m exporter simulate --listen 127.0.0.1:PORT FLAGS`, once /_sim/stats answers."""
    port = free_port()
    child = children.spawn(
        name, ["-m", "exporter", "simulate", "--listen", f"{HOST}:{port}", *flags]
    )
    sim = SimulatorProcess(child, port)

    def up() -> bool:
        if not child.alive():
            raise RuntimeError(f"simulator exited: {child.log_tail()}")
        return http_get(port, "/_sim/stats", timeout=2)[0] == 200

    wait_for("simulator up", up, timeout=30)
    return sim


@dataclass
class ExporterProcess:
    child: Child
    port: int

    def ready(self) -> bool:
        if not self.child.alive():
            raise RuntimeError(f"exporter exited: {self.child.log_tail()}")
        return http_get(self.port, "/-/ready", timeout=5)[0] == 200

    def metrics_text(self) -> str:
        """The whole /metrics body (asked gzipped, to keep the exporter's cost of it small)."""
        import gzip

        status, headers, body = http_get(
            self.port, "/metrics", {"Accept-Encoding": "gzip"}, timeout=60
        )
        if status != 200:
            raise ValueError(f"/metrics answered {status}")
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        return body.decode("utf-8")


def start_exporter(children: Children, name: str, config_path: Path) -> ExporterProcess:
    """`python -m exporter --config.file PATH --web.listen-address 127.0.0.1:PORT`."""
    port = free_port()
    child = children.spawn(
        name,
        [
            "-m",
            "exporter",
            "--config.file",
            str(config_path),
            "--web.listen-address",
            f"{HOST}:{port}",
            "--web.enable-lifecycle",
        ],
    )
    exporter = ExporterProcess(child, port)

    def up() -> bool:
        if not child.alive():
            raise RuntimeError(f"exporter exited: {child.log_tail()}")
        return http_get(port, "/-/healthy", timeout=2)[0] == 200

    wait_for("exporter up", up, timeout=30)
    return exporter


def exporter_config(
    *,
    endpoint: str,
    accounts: Sequence[str],
    qps: float,
    list_qps: float,
    interval_s: int,
    lookback: str = "3d",
    max_range: str = "30d",
    counters_since: str | None = None,
    discovery_interval: str = "1h",
) -> str:
    """A config with one or more accounts on the same simulator (key demo / demo-secret)."""
    lines = [
        "poll:",
        f"  interval: {interval_s}s",
        f"  lookback: {lookback}",
        f"  max_range: {max_range}",
        f"  discovery_interval: {discovery_interval}",
    ]
    if counters_since:
        lines.append(f"  counters_since: {counters_since}")
    lines.append("accounts:")
    for name in accounts:
        lines += [
            f"  - name: {name}",
            f"    endpoint: {endpoint}",
            "    credentials:",
            "      access_key_id: demo",
            "      access_key_secret: demo-secret",
            f"    qps: {qps:g}",
            f"    list_qps: {list_qps:g}",
            "    spaces:",
            "      - cust_space_id: cams-bench",
            "        discover: true",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Reading the exposition


def samples(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """(labels, value) of every sample named `name` (simple label values only: self-metrics)."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{([^}}\n]*)\}})? (\S+)$", re.M)
    for match in pattern.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        yield labels, float(match.group(2))


def sample_sum(text: str, name: str, **match: str) -> float:
    """Sum of the samples of `name` whose labels include `match`."""
    return sum(
        value
        for labels, value in samples(text, name)
        if all(labels.get(k) == v for k, v in match.items())
    )


def sample_lines(body: bytes) -> int:
    """Sample lines of an exposition (every line that is not a comment or empty)."""
    return sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))


# --------------------------------------------------------------------------------------------
# Numbers


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, StopIteration, ValueError):
        line = next(
            x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")
        )
        mem_kb = int(line.split()[1])
    commit = _git("rev-parse", "--short", "HEAD")
    # The exporter under test is the working tree: name what differs from the commit.
    dirty = _git("status", "--porcelain", "--", "exporter").splitlines()
    try:
        import prometheus_client

        client_version = getattr(prometheus_client, "__version__", "")
        if not client_version:
            from importlib.metadata import version

            client_version = version("prometheus_client")
    except Exception:
        client_version = "unknown"
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "mem_total_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "prometheus_client": client_version,
        "git_commit": commit,
        "exporter_uncommitted": [line.strip() for line in dirty],
    }


def git_state() -> str:
    """The commit, plus the exporter files that differ from it (what a child process imports)."""
    dirty = _git("status", "--porcelain", "--", "exporter").splitlines()
    commit = _git("rev-parse", "--short", "HEAD")
    return commit + (" + uncommitted " + ", ".join(x.strip() for x in dirty) if dirty else "")


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
