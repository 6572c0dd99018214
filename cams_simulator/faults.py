"""Injected faults: a seeded draw per request, and what each fault looks like on the wire.

throttle: `System.LimitControl` (HTTP 400); 5xx: 503 `ServiceUnavailable` or 500
`InternalError`; timeout: no answer until the client gives up; reset: the connection closed
with an RST; malformed: a body that is not JSON; error200: HTTP 200 with a `Code` other than OK.
"""

from __future__ import annotations

import random
import threading

from cams_simulator.options import FaultSpec, parse_faults
from cams_simulator.wire import ApiError, Reply, json_bytes, request_id, throttled


class Faults:
    """The fault probabilities in force and their seeded random draw; thread-safe."""

    def __init__(self, spec: str, default_seed: int) -> None:
        self._lock = threading.Lock()
        self._default_seed = default_seed
        self._spec = parse_faults(spec)
        self._rng = random.Random(self._seed(self._spec))

    def _seed(self, spec: FaultSpec) -> int:
        return self._default_seed if spec.seed is None else spec.seed

    def set(self, spec: str) -> None:
        """Replace the probabilities (ValueError on a bad spec); restarts the draws."""
        parsed = parse_faults(spec)
        with self._lock:
            self._spec = parsed
            self._rng = random.Random(self._seed(parsed))

    def _draw(self) -> str:
        with self._lock:
            if not self._spec.active:
                return ""
            draw = self._rng.random()
            cumulative = 0.0
            for name, probability in self._spec.probabilities():
                cumulative += probability
                if draw < cumulative:
                    if name == "5xx":
                        return "503" if self._rng.random() < 0.5 else "500"
                    return name
        return ""

    def reply(self) -> Reply | None:
        """None (answer normally), a Reply to send instead, or ApiError to answer with."""
        fault = self._draw()
        if not fault:
            return None
        if fault == "throttle":
            raise throttled()
        if fault == "503":
            raise ApiError(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            )
        if fault == "500":
            raise ApiError(
                500, "InternalError", "The request processing has failed due to some unknown error."
            )
        if fault in ("timeout", "reset"):
            return Reply(0, drop=fault)
        if fault == "malformed":
            return Reply(200, b"<html>upstream error</html>", "text/html;charset=utf-8")
        body = {
            "Code": "InternalError",
            "Message": "The request processing has failed due to some unknown error.",
            "RequestId": request_id(),
        }
        return Reply(200, json_bytes(body))
