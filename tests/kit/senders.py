"""Sender-health helpers: the official SDK reading the three sender actions, and the simulator's
override endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from alibabacloud_cams20200606 import models
from alibabacloud_tea_openapi import utils_models
from darabonba.runtime import RuntimeOptions

from cams_simulator import Simulator
from exporter.cams import signing

SPACE = "cams-demo"


def sdk_numbers(client: Any, space: str = SPACE, status: str | None = None) -> list[Any]:
    """QueryChatappPhoneNumbers through the SDK: its PhoneNumbers models."""
    request = models.QueryChatappPhoneNumbersRequest(cust_space_id=space, status=status)
    return list(client.query_chatapp_phone_numbers(request).body.phone_numbers or [])


def sdk_number_rows(
    client: Any, number: str, start_ms: int, end_ms: int, granularity: str = "DAILY"
) -> list[Any]:
    """GetChatappPhoneNumberMetric through the SDK: its Data models."""
    request = models.GetChatappPhoneNumberMetricRequest(
        phone_number=number,
        start=start_ms,
        end=end_ms,
        granularity=granularity,
        cust_space_id=SPACE,
    )
    return list(client.get_chatapp_phone_number_metric(request).body.data or [])


def sdk_health(client: Any, node_type: str, **ids: str) -> Any:
    """GetWhatsappHealthStatus through the SDK: its Data model."""
    request = models.GetWhatsappHealthStatusRequest(node_type=node_type, cust_space_id=SPACE, **ids)
    return client.get_whatsapp_health_status(request).body.data


def sdk_raw(client: Any, action: str, query: dict[str, str]) -> dict[str, Any]:
    """Any action through the SDK's own call path, the JSON body as sent (fields the SDK's
    models do not know, such as ReadCount of GetChatappPhoneNumberMetric, included)."""
    params = utils_models.Params(
        action=action,
        version="2020-06-06",
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = utils_models.OpenApiRequest(query=query)
    body: dict[str, Any] = client.call_api(params, request, RuntimeOptions())["body"]
    return body


def override_number(sim: Simulator | str, **fields: Any) -> None:
    """POST /_sim/phone_numbers (fields of one number, `listed`, `reset`)."""
    url = sim if isinstance(sim, str) else sim.url
    response = requests.post(f"{url}/_sim/phone_numbers", json=fields, timeout=5)
    assert response.status_code == 200, response.text


def override_can_send(sim: Simulator | str, **fields: Any) -> None:
    """POST /_sim/health (one entity's CanSendMessage)."""
    url = sim if isinstance(sim, str) else sim.url
    response = requests.post(f"{url}/_sim/health", json=fields, timeout=5)
    assert response.status_code == 200, response.text


def signed_call(sim: Simulator, action: str, query: dict[str, str], offset_s: float = 0) -> Any:
    """A V3-signed call dated `offset_s` from now (to follow a simulator whose clock was moved
    further than the SDK's 15-minute signature window allows); the JSON body."""
    headers = signing.sign_rpc_v3(
        host=sim.endpoint,
        action=action,
        version="2020-06-06",
        query=query,
        access_key_id="demo",
        secret="demo-secret",
        date=signing.utc_timestamp(datetime.now(UTC) + timedelta(seconds=offset_s)),
    )
    url = f"{sim.url}/?" + "&".join(f"{k}={signing.percent_encode(v)}" for k, v in query.items())
    response = requests.post(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()
