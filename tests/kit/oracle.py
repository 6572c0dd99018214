"""The truth, as Alibaba's official CAMS SDK reads it from a simulator.

Tests and benchmarks never compare the exporter with our own client: the oracle is
`alibabacloud_cams20200606` (what a user of the API would run), signing V3 by default or V1
(`v2=True`, the SDK's name for it), paging like its documentation says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from unittest import mock

from alibabacloud_cams20200606 import models
from alibabacloud_cams20200606.client import Client as SdkClient
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig

SPACE = "cams-demo"


class Endpoint(Protocol):
    """Anything with the simulator's `host:port` endpoint (an in-process simulator or a child)."""

    @property
    def endpoint(self) -> str: ...


def sdk_client(
    sim: Endpoint | str,
    key: str = "demo",
    secret: str = "demo-secret",
    v2: bool = False,
    token: str | None = None,
) -> Any:
    """The official CAMS SDK client pointed at the simulator (`host:port`) over plain HTTP
    (with an STS `token` when given)."""
    config = SdkConfig(
        access_key_id=key,
        access_key_secret=secret,
        endpoint=sim if isinstance(sim, str) else sim.endpoint,
        protocol="http",
        region_id="ap-southeast-1",
    )
    if token is not None:
        config.security_token = token
    if v2:
        config.signature_algorithm = "v2"
    return SdkClient(config)


@contextlib.contextmanager
def sdk_clock(offset_s: float) -> Iterator[None]:
    """The official SDK signs as if its clock were `offset_s` ahead, for a simulator whose clock
    was moved (it refuses a signature more than 15 minutes off its own time)."""

    def shifted() -> str:
        return (datetime.now(UTC) + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")

    with mock.patch.object(Utils, "get_timestamp", shifted):
        yield


def sdk_list(client: Any, space: str = SPACE, size: int = 20) -> list[Any]:
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

    def add(self, other: Truth) -> None:
        """Add `other`'s counts and clicks to these."""
        self.sent, self.delivered, self.read = (
            mine + theirs for mine, theirs in zip(self.counts(), other.counts(), strict=True)
        )
        for button, count in other.clicks.items():
            self.clicks[button] = self.clicks.get(button, 0) + count

    def counts(self) -> tuple[int, int, int]:
        return self.sent, self.delivered, self.read

    def nonzero_clicks(self) -> dict[str, int]:
        return {button: count for button, count in self.clicks.items() if count}


QUICK = {"quick_relpy_button": "quick_reply", "quick_reply_button": "quick_reply"}


def sdk_sum(
    client: Any,
    code: str,
    language: str,
    start_ms: int,
    end_ms: int,
    granularity: str = "DAILY",
    *,
    space: str = SPACE,
    chunk_ms: int | None = None,
) -> Truth:
    """Sum of every row GetChatappTemplateMetric returns for [start_ms, end_ms): in one call, or
    in calls of `chunk_ms` each (whole UTC days, for a simulator that refuses longer ranges)."""
    request = models.GetChatappTemplateMetricRequest(
        template_code=code, language=language, cust_space_id=space, template_type="WHATSAPP"
    )
    request.granularity = granularity
    if chunk_ms is None:
        bounds = [(start_ms, end_ms)]
    else:
        bounds = [(lo, min(end_ms, lo + chunk_ms)) for lo in range(start_ms, end_ms, chunk_ms)]
    truth = Truth()
    for lower, upper in bounds:
        request.start, request.end = lower, upper
        for row in client.get_chatapp_template_metric(request).body.data or []:
            truth.sent += row.sent_count or 0
            truth.delivered += row.delivered_count or 0
            truth.read += row.read_count or 0
            for click in row.cliented or []:
                truth.clicks[click.button_content] = truth.clicks.get(click.button_content, 0) + (
                    click.count or 0
                )
    return truth
