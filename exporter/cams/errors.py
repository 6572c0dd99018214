"""Failed CAMS calls: the error type, the transport-level codes, and which codes to retry.

A `CamsError` names the action, the API's error `Code` (or one of the transport outcomes below),
the HTTP status and the RequestId; it never carries a secret. Which codes are worth retrying
follows Alibaba's own tooling (`../shared/notes/cams-api.md` section 6).
"""

from __future__ import annotations

from typing import Final

# Transport-level outcomes, reported in place of an API code.
TIMEOUT: Final = "Timeout"
CONNECTION_ERROR: Final = "ConnectionError"
MALFORMED: Final = "MalformedResponse"
STOPPED: Final = "Stopped"
CREDENTIALS_UNAVAILABLE: Final = "CredentialsUnavailable"

_RETRYABLE_CODES: Final = frozenset(
    {"System.LimitControl", "ServiceUnavailable", "InternalError", "UnknownError"}
)
_THROTTLE_CODES: Final = frozenset({"System.LimitControl", "Rejected.Throttling"})


def is_throttle_code(code: str) -> bool:
    """True for the codes with which Alibaba's gateways and CAMS signal flow control."""
    return code in _THROTTLE_CODES or code.startswith("Throttling")


def is_retryable_code(code: str, status: int | None) -> bool:
    """True when trying again later can succeed: throttling, server trouble, transport errors."""
    if is_throttle_code(code) or code in _RETRYABLE_CODES:
        return True
    if code in (TIMEOUT, CONNECTION_ERROR, MALFORMED):
        return True
    return status is not None and status >= 500


class CamsError(Exception):
    """A failed CAMS call. The message names action, code, status and RequestId; no secrets."""

    def __init__(
        self,
        action: str,
        code: str,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        attempts: int = 1,
        retry_after_s: float | None = None,
    ) -> None:
        self.action, self.code, self.message, self.status = action, code, message, status
        self.request_id, self.attempts, self.retry_after_s = request_id, attempts, retry_after_s
        detail = f"{action} failed: {code}"
        if status is not None:
            detail += f" (HTTP {status})"
        if message:
            detail += f": {message}"
        if request_id:
            detail += f" [RequestId {request_id}]"
        if attempts > 1:
            detail += f" after {attempts} attempts"
        super().__init__(detail)

    def after(self, attempts: int) -> CamsError:
        """The same error, saying how many attempts were made."""
        return CamsError(
            self.action,
            self.code,
            self.message,
            status=self.status,
            request_id=self.request_id,
            attempts=attempts,
        )

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later."""
        return is_retryable_code(self.code, self.status)

    @property
    def throttled(self) -> bool:
        """Whether the API refused the call for flow control."""
        return is_throttle_code(self.code)


ANOMALOUS: Final = "AnomalousAnswer"


class AnomalousAnswer(CamsError):
    """An answer the exporter cannot vouch for: never applied, counted by `kind`.

    `detail` says what was expected and what came. Not retried: the next cycle reads again.
    """

    def __init__(self, kind: str, detail: str, *, action: str = "GetChatappTemplateMetric") -> None:
        super().__init__(action, f"{ANOMALOUS}.{kind}", detail)
        self.kind = kind
        self.detail = detail

    def after(self, attempts: int) -> CamsError:
        return self
