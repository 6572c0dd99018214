"""Plumbing for the benchmarks on top of the test kit (tests/kit): child processes on 127.0.0.1,
HTTP timed on fresh and keep-alive connections, readers for the exporter's self-metrics, numbers.

Every child (simulator, exporter, static server, competing client) is its own Python process with
its own GIL, started by the kit (`tests.kit.procs`: on port 0, the port read back from its log,
memory and CPU from /proc) in its own session so that a Ctrl-C of the bench does not race its
cleanup, and stopped (SIGTERM, then SIGKILL) by `Children.stop_all`, which each bench calls in
`finally`. `run_main` makes a SIGTERM of the bench (a `kill`, a CI timeout) run that `finally`
too: by default the signal ends the process at once and leaves its children running.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

from tests.kit import procs
from tests.kit.configs import Account, config_text
from tests.kit.procs import HOST, ROOT, Child, Children, ExporterProcess, SimulatorProcess
from tests.kit.waits import wait_until

_T = TypeVar("_T")


def run_main(main: Callable[[], int]) -> NoReturn:
    """Run a bench's `main` and exit with its code; SIGTERM becomes SystemExit (code 143), so
    that main's `finally` stops the children it started."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    raise SystemExit(main())


def wait_for(what: str, check: Callable[[], _T | None], timeout: float, every: float = 0.25) -> _T:
    """The kit's `wait_until`, polling every quarter second (a bench measures; it does not
    spin)."""
    return wait_until(check, timeout, what, every)


def spawn(children: Children, name: str, args: Sequence[str]) -> Child:
    """`python ARGS` in its own session (a Ctrl-C of the bench does not race its cleanup),
    logging to `<log_dir>/<name>.log`, stopped by `children.stop_all()`."""
    log = children.log_dir / f"{name}.log"
    return children.add(procs.spawn(name, [sys.executable, *args], log, new_session=True))


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


def scrape_alternately(port: int, seconds: float) -> tuple[dict[str, list[float]], float]:
    """Back-to-back GETs of /metrics on one keep-alive connection for `seconds`, plain and gzip
    in turn: each format's times (send to last byte), and the wall time they took."""
    conn = KeepAlive(port)
    times: dict[str, list[float]] = {"plain": [], "gzip": []}
    started = time.monotonic()
    i = 0
    try:
        while time.monotonic() - started < seconds:
            fmt = "plain" if i % 2 == 0 else "gzip"
            encoding = {"Accept-Encoding": "gzip" if fmt == "gzip" else "identity"}
            elapsed, code, _ = conn.get("/metrics", encoding)
            if code != 200:
                raise RuntimeError(f"/metrics answered {code}")
            times[fmt].append(elapsed)
            i += 1
    finally:
        conn.close()
    return times, time.monotonic() - started


# --------------------------------------------------------------------------------------------
# The simulator and the exporter as processes (on port 0, the port read back from their logs)


@dataclass(frozen=True, slots=True)
class Load:
    """What a scenario asks of one account: `templates` x `languages` units, read at `qps`
    from a simulator answering each call after `latency` seconds."""

    templates: int
    languages: tuple[str, ...]
    qps: float
    latency: float

    @property
    def units(self) -> int:
        """Template-language units: one GetChatappTemplateMetric call each per cycle."""
        return self.templates * len(self.languages)


def behind_the_measurement() -> None:
    """In the child before exec: nice 19, so that its work waits while the measured process
    (bench/rules.py: Prometheus) wants the cores."""
    os.nice(19)


def start_simulator(
    children: Children,
    name: str,
    flags: Sequence[str],
    preexec: Callable[[], None] = procs.ahead_of_the_load,
) -> SimulatorProcess:
    """`python -m exporter simulate --listen 127.0.0.1:0 FLAGS`, once it serves."""
    log = children.log_dir / f"{name}.log"
    # By default its 1-second windows of arrivals are the measurement: stamped as requests
    # arrive, even on a loaded machine (see tests.kit.sim.simulator_process).
    started = procs.start_simulator(log, *flags, new_session=True, preexec=preexec)
    return children.add(started)


def start_exporter(
    children: Children,
    name: str,
    config_path: Path,
    *flags: str,
    preexec: Callable[[], None] | None = None,
) -> ExporterProcess:
    """`python -m exporter --config.file PATH --web.enable-lifecycle FLAGS` on 127.0.0.1:0,
    once it serves (`preexec` run in the child before exec)."""
    log = children.log_dir / f"{name}.log"
    argv = ["--config.file", str(config_path), "--web.enable-lifecycle", *flags]
    options: procs.Options = {"new_session": True}
    if preexec is not None:
        options["preexec"] = preexec
    return children.add(procs.start_exporter(log, *argv, **options))


def exporter_config(
    endpoint: str, names: Sequence[str], qps: float, list_qps: float, interval_s: int, **poll: str
) -> str:
    """A config with accounts `names` on the same simulator (key demo / demo-secret); `poll`
    sets or overrides poll keys (lookback 3d, max_range 30d, discovery_interval 1h)."""
    section = {"interval": f"{interval_s}s", "lookback": "3d", "max_range": "30d"}
    section |= {"discovery_interval": "1h", **poll}
    space = {"cust_space_id": "cams-bench", "discover": True}
    listed = [Account(endpoint, n, qps=qps, list_qps=list_qps, spaces=(space,)) for n in names]
    return config_text(*listed, poll=section)


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
