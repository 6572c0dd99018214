"""Test helpers: simulators on 127.0.0.1, and reading the truth with Alibaba's official SDK."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from alibabacloud_cams20200606 import models
from alibabacloud_cams20200606.client import Client as SdkClient
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig

from exporter.model import DAY_MS
from exporter.simulator import Simulator, SimulatorOptions


@contextlib.contextmanager
def running(options: SimulatorOptions) -> Iterator[Simulator]:
    """A simulator on an ephemeral loopback port for the duration of a with-block."""
    sim = Simulator(options)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def sdk_client(
    sim: Simulator, key: str = "demo", secret: str = "demo-secret", v2: bool = False
) -> Any:
    """The official CAMS SDK client pointed at the simulator over plain HTTP."""
    config = SdkConfig(
        access_key_id=key,
        access_key_secret=secret,
        endpoint=sim.endpoint,
        protocol="http",
        region_id="ap-southeast-1",
    )
    if v2:
        config.signature_algorithm = "v2"
    return SdkClient(config)


def sdk_list(client: Any, space: str = "cams-demo", size: int = 20) -> list[Any]:
    """Every template row, paging like a user of the SDK would."""
    rows: list[Any] = []
    index = 1
    while True:
        request = models.ListChatappTemplateRequest(
            cust_space_id=space,
            page=models.ListChatappTemplateRequestPage(index=index, size=size),
        )
        body = client.list_chatapp_template(request).body
        rows.extend(body.list_template or [])
        if not body.list_template or index * size >= (body.total or 0):
            return rows
        index += 1


@dataclass
class Truth:
    """Sums the SDK read for one unit."""

    sent: int = 0
    delivered: int = 0
    read: int = 0
    clicks: dict[str, int] = field(default_factory=dict)  # by button text


QUICK = {"quick_relpy_button": "quick_reply", "quick_reply_button": "quick_reply"}


def sdk_sum(
    client: Any, code: str, language: str, start_ms: int, end_ms: int, granularity: str = "DAILY"
) -> Truth:
    """Sum of every row GetChatappTemplateMetric returns for [start_ms, end_ms) (one call)."""
    request = models.GetChatappTemplateMetricRequest(
        template_code=code,
        language=language,
        cust_space_id="cams-demo",
        granularity=granularity,
        start=start_ms,
        end=end_ms,
        template_type="WHATSAPP",
    )
    truth = Truth()
    for row in client.get_chatapp_template_metric(request).body.data or []:
        truth.sent += row.sent_count or 0
        truth.delivered += row.delivered_count or 0
        truth.read += row.read_count or 0
        for click in row.cliented or []:
            truth.clicks[click.button_content] = truth.clicks.get(click.button_content, 0) + (
                click.count or 0
            )
    return truth


def day_floor(ms: int) -> int:
    """Start of the UTC day containing `ms`."""
    return ms - ms % DAY_MS


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30.0, status: int = 200, **kwargs: Any) -> None:
    """Poll `url` until it answers `status`, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=2, **kwargs)
            if response.status_code == status:
                return
            last = response.status_code
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: {last})")


@contextlib.contextmanager
def simulator_process(*flags: str) -> Iterator[str]:
    """`cams-exporter simulate` in its own process (no GIL shared with the test); yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "simulate", "--listen", f"127.0.0.1:{port}", *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_sim/stats", timeout=20)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()
