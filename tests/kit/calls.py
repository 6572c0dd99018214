"""Many threads calling one template's metric through a client for a while: the load that the
rate-limit test (tests/e2e/test_client.py) and `bench/limiter_pace.py` count on the simulator."""

from __future__ import annotations

import threading
import time

from exporter.cams.client import CamsClient
from exporter.cams.errors import CamsError
from exporter.cams.model import DAY_MS, Template


def call_metric_for(
    client: CamsClient, template: Template, seconds: float, threads: int
) -> list[CamsError]:
    """`threads` threads read the template's last day back to back for `seconds`; each stops at
    its first error. Returns the errors (none: every call succeeded)."""
    now = int(time.time() * 1000)
    deadline = time.monotonic() + seconds
    errors: list[CamsError] = []

    def worker() -> None:
        while time.monotonic() < deadline:
            try:
                client.metric_chunk(
                    code=template.code,
                    language=template.language,
                    start_ms=now - DAY_MS,
                    end_ms=now,
                )
            except CamsError as error:
                errors.append(error)
                return

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(seconds + 30)
    return errors
