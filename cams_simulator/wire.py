"""What the simulator reads off the wire and sends back, and Alibaba's error answers.

`ApiError` is an API error answered with Alibaba's JSON error body (RequestId, HostId, Code,
Message, Recommend); `missing`, `invalid` and `throttled` build the common ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

JSON_TYPE: Final = "application/json;charset=utf-8"
HOST_ID: Final = "cams.ap-southeast-1.aliyuncs.com"


def json_bytes(value: object) -> bytes:
    """Compact UTF-8 JSON, as the API sends it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def request_id() -> str:
    """A fresh RequestId in the API's upper-case UUID form."""
    return str(uuid.uuid4()).upper()


@dataclass(frozen=True, slots=True)
class Request:
    """What the handler read off the wire."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-cased names; repeated headers joined with ','
    body: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """What to send back; `drop` is 'timeout' or 'reset' for the connection faults."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    drop: str = ""
    ok: bool = False  # a successful CAMS answer (for the stats)
    headers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    """An API error answered with Alibaba's JSON error body."""

    def __init__(
        self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def missing(name: str) -> ApiError:
    return ApiError(
        400,
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request is not '
        "supplied.",
    )


def invalid(name: str, detail: str) -> ApiError:
    return ApiError(400, "InvalidParameter", f'The parameter "{name}" is invalid: {detail}')


def throttled(http_429: bool = False) -> ApiError:
    """CAMS's documented flow-control answer, or the gateway's HTTP 429 with a retry hint."""
    if http_429:
        return ApiError(
            429,
            "Throttling.User",
            "Request was denied due to user flow control.",
            (("x-acs-retry-after", "200"),),
        )
    return ApiError(400, "System.LimitControl", "The system is under flow control.")


def error_body(host: str, error: ApiError) -> bytes:
    """Alibaba's JSON error body for `error`."""
    rid = request_id()
    return json_bytes(
        {
            "RequestId": rid,
            "HostId": host or HOST_ID,
            "Code": error.code,
            "Message": error.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={error.code}&product=cams"
            f"&requestId={rid}",
        }
    )
