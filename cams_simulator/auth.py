"""Request authentication as Alibaba's gateway does it: V3 and V1 signatures, time and nonces.

`Authenticator` holds the one valid key pair (rotatable), checks the signature of a request
(V3 `ACS3-HMAC-SHA256` in the Authorization header, or V1 HMAC-SHA1 in the parameters), the
15-minute timestamp window against the simulator's clock, the API version, and refuses a nonce
seen in the last 15 minutes. Each check fails with the error code the real gateway answers.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from cachetools import TTLCache

from cams_simulator.options import SIGNATURE_WINDOW_S
from cams_simulator.traffic import Clock
from cams_simulator.wire import ApiError, Request, invalid, missing
from exporter.cams import signing
from exporter.cams.actions import API_VERSION

_NONCE_CACHE_SIZE: Final = 200_000
_V3_REQUIRED_HEADERS: Final = (
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
)
_V1_REQUIRED_PARAMS: Final = (
    "Action",
    "Version",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Signature",
)


def _parse_time(name: str, value: str) -> float:
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise invalid(name, "expected a UTC time like 2024-01-01T00:00:00Z") from None
    return moment.timestamp()


def _mismatch(detail: str = "Specified signature is not matched with our calculation.") -> ApiError:
    return ApiError(400, "SignatureDoesNotMatch", detail)


class Authenticator:
    """Checks signed requests against one key pair; thread-safe."""

    def __init__(self, access_key_id: str, access_key_secret: str, clock: Clock) -> None:
        self._lock = threading.Lock()
        self._keys = (access_key_id, access_key_secret)
        self._clock = clock
        self._nonces: TTLCache[str, bool] = TTLCache(
            maxsize=_NONCE_CACHE_SIZE, ttl=SIGNATURE_WINDOW_S, timer=time.monotonic
        )

    def set_keys(self, access_key_id: str, access_key_secret: str) -> None:
        """Rotate the only valid key pair; the old one is unknown from now on."""
        if not access_key_id or not access_key_secret:
            raise ValueError("access key id and secret must not be empty")
        with self._lock:
            self._keys = (access_key_id, access_key_secret)

    def authenticate(
        self, request: Request, query: Mapping[str, str], params: Mapping[str, str]
    ) -> str:
        """The access key id of a correctly signed request; ApiError otherwise."""
        if request.headers.get("authorization", "").startswith(signing.V3_ALGORITHM):
            return self._v3(request, query)
        return self._v1(request, params)

    def _secret_for(self, key_id: str) -> str:
        with self._lock:
            known_id, secret = self._keys
        if key_id != known_id:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        return secret

    def _check_time(self, name: str, value: str) -> None:
        if abs(_parse_time(name, value) - self._clock.now()) > SIGNATURE_WINDOW_S:
            raise ApiError(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )

    @staticmethod
    def _check_version(name: str, value: str) -> None:
        if value != API_VERSION:
            raise invalid(name, f"the API version is {API_VERSION}, got {value!r}")

    def _use_nonce(self, nonce: str) -> None:
        with self._lock:
            if nonce in self._nonces:
                raise ApiError(
                    400, "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            self._nonces[nonce] = True

    def _v3(self, request: Request, query: Mapping[str, str]) -> str:
        parts = signing.parse_v3_authorization(request.headers["authorization"])
        if parts is None:
            raise ApiError(400, "IncompleteSignature", "The Authorization header is malformed.")
        signed = [
            name.strip().lower() for name in parts["SignedHeaders"].split(";") if name.strip()
        ]
        for name in _V3_REQUIRED_HEADERS:
            if name not in signed or name not in request.headers:
                raise ApiError(
                    400, "IncompleteSignature", f"The header {name} must be sent and signed."
                )
        key_id = parts["Credential"]
        secret = self._secret_for(key_id)
        if "x-acs-security-token" in request.headers and (
            request.headers.get("x-acs-accesskey-id") != key_id
        ):
            raise invalid("x-acs-accesskey-id", "must equal the access key id of the signature")
        self._check_version("x-acs-version", request.headers["x-acs-version"])
        self._check_time("x-acs-date", request.headers["x-acs-date"])
        payload_hash = request.headers["x-acs-content-sha256"]
        if payload_hash != hashlib.sha256(request.body).hexdigest():
            raise _mismatch("x-acs-content-sha256 does not match the body.")
        expected, _ = signing.v3_signature(
            method=request.method,
            pathname=request.path,
            query=query,
            headers={name: request.headers.get(name, "") for name in signed},
            payload_hash=payload_hash,
            secret=secret,
        )
        if not signing.constant_time_equal(expected, parts["Signature"]):
            raise _mismatch()
        self._use_nonce(request.headers["x-acs-signature-nonce"])
        return key_id

    def _v1(self, request: Request, params: Mapping[str, str]) -> str:
        for name in _V1_REQUIRED_PARAMS:
            if not params.get(name):
                raise missing(name)
        key_id = params["AccessKeyId"]
        secret = self._secret_for(key_id)
        if params["SignatureMethod"] != "HMAC-SHA1":
            raise invalid("SignatureMethod", "only HMAC-SHA1 is supported")
        if params["SignatureVersion"] != "1.0":
            raise invalid("SignatureVersion", "only 1.0 is supported")
        self._check_version("Version", params["Version"])
        self._check_time("Timestamp", params["Timestamp"])
        unsigned = {key: value for key, value in params.items() if key != "Signature"}
        expected = signing.v1_signature(unsigned, request.method, secret)
        if not signing.constant_time_equal(expected, params["Signature"]):
            raise _mismatch()
        self._use_nonce(params["SignatureNonce"])
        return key_id
