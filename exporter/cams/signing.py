"""Alibaba Cloud OpenAPI request signing: V3 (ACS3-HMAC-SHA256) and RPC V1 (HMAC-SHA1).

Pure functions, used by the client to sign and by the simulator to verify. The canonical forms
follow Alibaba's "Request syntax and signature method V3" and the RPC signature method, and are
checked in the tests against the helpers of Alibaba's own SDK.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypedDict, Unpack
from urllib.parse import quote

V3_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Alibaba uses it: only unreserved characters and '~' stay as is."""
    return quote(value, safe="~", encoding="utf-8")


def utc_timestamp(now: datetime | None = None) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ`, the format of `x-acs-date` and the V1 `Timestamp`."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_nonce() -> str:
    """A fresh signature nonce (32 hex characters)."""
    return secrets.token_hex(16)


def canonical_query_v3(query: Mapping[str, str]) -> str:
    """V3 canonical query string: keys sorted, values percent-encoded, joined with '&'."""
    return "&".join(f"{key}={percent_encode(query[key])}" for key in sorted(query))


def canonical_headers_v3(headers: Mapping[str, str]) -> tuple[str, str]:
    """(canonical header block, signed header list) over every header given."""
    merged: dict[str, list[str]] = {}
    for key, value in headers.items():
        merged.setdefault(key.lower(), []).append(str(value).strip())
    names = sorted(merged)
    block = "".join(f"{name}:{','.join(sorted(merged[name]))}\n" for name in names)
    return block, ";".join(names)


class V3Request(TypedDict):
    """What a V3 signature covers (`headers`: the signed ones), and the secret that signs it."""

    method: str
    pathname: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    payload_hash: str
    secret: str


def v3_signature(**request: Unpack[V3Request]) -> tuple[str, str]:
    """(signature hex, signed header list) for a request whose signed headers are `headers`."""
    block, signed = canonical_headers_v3(request["headers"])
    canonical_request = "\n".join(
        [
            request["method"],
            request["pathname"] or "/",
            canonical_query_v3(request["query"]),
            block,
            signed,
            request["payload_hash"],
        ]
    )
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{V3_ALGORITHM}\n{digest}"
    mac = hmac.new(
        request["secret"].encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    )
    return mac.hexdigest(), signed


def v3_authorization(*, access_key_id: str, **request: Unpack[V3Request]) -> str:
    """The full `Authorization` header value for a V3-signed request."""
    signature, signed = v3_signature(**request)
    return f"{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={signature}"


def sign_rpc_v3(
    *,
    host: str,
    action: str,
    version: str,
    query: Mapping[str, str],
    access_key_id: str,
    secret: str,
    security_token: str | None = None,
    body: bytes = b"",
    date: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers (Authorization included) for an RPC-style `POST /` call signed with V3."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": date or utc_timestamp(),
        "x-acs-signature-nonce": nonce or new_nonce(),
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    if security_token:
        headers["x-acs-accesskey-id"] = access_key_id
        headers["x-acs-security-token"] = security_token
    headers["Authorization"] = v3_authorization(
        method="POST",
        pathname="/",
        query=query,
        headers=headers,
        payload_hash=headers["x-acs-content-sha256"],
        access_key_id=access_key_id,
        secret=secret,
    )
    return headers


def parse_v3_authorization(value: str) -> dict[str, str] | None:
    """{'Credential', 'SignedHeaders', 'Signature'} from an `Authorization` header, or None."""
    prefix = V3_ALGORITHM + " "
    if not value.startswith(prefix):
        return None
    parts: dict[str, str] = {}
    for item in value[len(prefix) :].split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return None
        parts[key] = val
    if {"Credential", "SignedHeaders", "Signature"} - parts.keys():
        return None
    return parts


def v1_signature(params: Mapping[str, str], method: str, secret: str) -> str:
    """Base64 HMAC-SHA1 signature of RPC V1 parameters (without `Signature` itself)."""
    canonical = "&".join(
        f"{percent_encode(key)}={percent_encode(params[key])}" for key in sorted(params)
    )
    string_to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    mac = hmac.new(f"{secret}&".encode(), string_to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def constant_time_equal(left: str, right: str) -> bool:
    """Compare two signatures without leaking where they differ."""
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))
