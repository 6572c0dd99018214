"""The CAMS API client: signed calls for one account, typed results.

`CamsClient` speaks the actions the exporter needs (ListChatappTemplate and
GetChatappTemplateMetric, and for sender health QueryChatappPhoneNumbers,
GetChatappPhoneNumberMetric and GetWhatsappHealthStatus), signing each request with Alibaba's
V3 signature. The parts around a call wrap it rather than live in it: every attempt first takes
a grant from the action's `RateLimiter` (so retries count against the quota too), `RetryPolicy`
retries what is worth retrying, and the grant is told when the call has ended (answered or
failed), from which moment the limiter's window counts it. Results come back as frozen
dataclasses (`exporter.cams.model`, `exporter.cams.sender_model`); failures as `CamsError`
(`exporter.cams.errors`), which never carries a secret.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Required, TypedDict, TypeVar, Unpack
from urllib.parse import urlsplit

from exporter import __version__
from exporter.cams.actions import (
    API_VERSION,
    HEALTH_ACTION,
    LIST_ACTION,
    METRIC_ACTION,
    PHONE_METRIC_ACTION,
    PHONE_NUMBERS_ACTION,
)
from exporter.cams.answers import count_value, parse_metric_answer, parse_templates
from exporter.cams.errors import (
    CONNECTION_ERROR,
    CREDENTIALS_UNAVAILABLE,
    MALFORMED,
    STOPPED,
    TIMEOUT,
    CamsError,
    is_throttle_code,
)
from exporter.cams.model import MetricRow
from exporter.cams.paging import Listing, Page, list_all
from exporter.cams.ratelimit import Grant, RateLimiter
from exporter.cams.retry import RetryPolicy
from exporter.cams.sender_answers import (
    parse_health_status,
    parse_phone_number_rows,
    parse_phone_numbers,
)
from exporter.cams.sender_model import HealthStatus, PhoneNumber, PhoneNumberRow
from exporter.cams.signing import percent_encode, sign_rpc_v3, utc_timestamp
from exporter.cams.transport import Answer, Transport, TransportError, TransportTimeout
from exporter.config import StaticCredentials

log = logging.getLogger("cams_exporter.client")


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One HTTP attempt, as reported to the observer (self-metrics)."""

    action: str
    code: str
    status: int | None
    duration_s: float
    throttled: bool
    attempt: int


Observer = Callable[[RequestEvent], None]
CredentialSource = StaticCredentials | Callable[[], StaticCredentials]


@dataclass(frozen=True, slots=True)
class ListFilters:
    """ListChatappTemplate filters (None = not sent)."""

    cust_space_id: str | None = None
    isv_code: str | None = None
    name: str | None = None
    code: str | None = None
    language: str | None = None
    audit_status: str | None = None
    template_type: str | None = None
    category: str | None = None


class SpanQuery(TypedDict, total=False):
    """What a per-span metric action is asked besides its subject and span (None: not sent;
    granularity DAILY when not given)."""

    cust_space_id: str | None
    isv_code: str | None
    granularity: str


class TemplateQuery(SpanQuery, total=False):
    """GetChatappTemplateMetric's subject: a template, in one language or (None) in all."""

    code: Required[str]
    language: Required[str | None]
    template_type: str | None


class NumberQuery(SpanQuery, total=False):
    """GetChatappPhoneNumberMetric's subject: one phone number."""

    phone_number: Required[str]


def chunk_range(start_ms: int, end_ms: int, max_range_ms: int) -> Iterator[tuple[int, int]]:
    """Split [start_ms, end_ms) into consecutive spans of at most max_range_ms."""
    if max_range_ms <= 0:
        raise ValueError("max_range_ms must be positive")
    cursor = start_ms
    while cursor < end_ms:
        upper = min(end_ms, cursor + max_range_ms)
        yield cursor, upper
        cursor = upper


R = TypeVar("R")


def in_spans(
    fetch: Callable[[int, int], Sequence[R]], start_ms: int, end_ms: int, max_range_ms: int
) -> tuple[R, ...]:
    """The rows `fetch(lower, upper)` returns for each span of `chunk_range`, in order."""
    return tuple(
        row
        for lower, upper in chunk_range(start_ms, end_ms, max_range_ms)
        for row in fetch(lower, upper)
    )


def _decode(action: str, response: Answer) -> dict[str, Any]:
    try:
        # Undecodable bytes become U+FFFD here; no label value can carry them further.
        body = json.loads(response.body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise CamsError(
            action,
            MALFORMED if response.status < 500 else f"HTTP{response.status}",
            "the answer is not a JSON object",
            status=response.status,
        )
    return body


def _check_answer(action: str, response: Answer) -> dict[str, Any]:
    """The JSON body of a successful answer; CamsError for an error answer."""
    status = response.status
    body = _decode(action, response)
    code = str(body.get("Code") or body.get("code") or ("OK" if status < 400 else ""))
    if status < 400 and code == "OK":
        return body
    retry_after = response.headers.get("x-acs-retry-after", "")
    raise CamsError(
        action,
        code or f"HTTP{status}",
        str(body.get("Message") or body.get("message") or ""),
        status=status,
        request_id=str(body.get("RequestId") or body.get("requestId") or "") or None,
        # darabonba reads x-acs-retry-after as milliseconds; so do we.
        retry_after_s=int(retry_after) / 1000.0 if retry_after.isdigit() else None,
    )


class CamsClient:
    """Signed CAMS calls for one account. Thread-safe; share it between workers."""

    def __init__(
        self,
        *,
        endpoint: str,
        credentials: CredentialSource,
        limiters: Mapping[str, RateLimiter],
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        observer: Observer | None = None,
        pool_size: int = 32,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.netloc
        self._credentials = credentials
        self._limiters = dict(limiters)
        self._timeout = timeout_s
        self._retry = retry or RetryPolicy()
        self._observer = observer
        self._stop = stop or threading.Event()
        self._clock = clock
        self._transport = Transport(pool_size=pool_size, user_agent=f"cams-exporter/{__version__}")

    def close(self) -> None:
        """Release the pooled connections."""
        self._transport.close()

    def _creds(self, action: str) -> StaticCredentials:
        source = self._credentials
        if isinstance(source, StaticCredentials):
            return source
        try:
            return source()
        except Exception as exc:  # the default chain found nothing or its source failed
            raise CamsError(action, CREDENTIALS_UNAVAILABLE, type(exc).__name__) from None

    def call(self, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        """One API call with retries; the parsed JSON body of a successful answer."""
        return self._retry.run(
            action, lambda attempt: self._attempt(action, params, attempt), self._stop
        )

    def _attempt(self, action: str, params: Mapping[str, str], attempt: int) -> dict[str, Any]:
        limiter = self._limiters.get(action)
        grant: Grant | None = None
        if limiter is not None:
            grant = limiter.grant(self._stop)
            if grant is None:
                raise CamsError(action, STOPPED, "the exporter is stopping")
        started = time.monotonic()
        status: int | None = None
        code = "OK"
        try:
            response = self._send(action, params, grant)
            status = response.status
            return _check_answer(action, response)
        except CamsError as error:
            code = error.code
            if limiter is not None and error.throttled:
                limiter.on_throttled()
            raise
        finally:
            if grant is not None:
                grant.release()  # a no-op once the call reached the transport and ended
            if code == "OK" and limiter is not None:
                limiter.on_success()
            if self._observer is not None:
                self._observer(
                    RequestEvent(
                        action=action,
                        code=code,
                        status=status,
                        duration_s=time.monotonic() - started,
                        throttled=is_throttle_code(code),
                        attempt=attempt,
                    )
                )

    def _send(self, action: str, params: Mapping[str, str], grant: Grant | None) -> Answer:
        creds = self._creds(action)
        query = {k: v for k, v in params.items() if v is not None}
        headers = sign_rpc_v3(
            host=self._host,
            action=action,
            version=API_VERSION,
            query=query,
            access_key_id=creds.access_key_id,
            secret=creds.access_key_secret,
            security_token=creds.security_token,
            date=utc_timestamp(datetime.fromtimestamp(self._clock(), UTC)),
        )
        target = "/?" + "&".join(f"{k}={percent_encode(v)}" for k, v in query.items())
        try:
            return self._transport.post(self._origin, target, headers, self._timeout)
        except TransportTimeout:
            raise CamsError(action, TIMEOUT, f"no answer within {self._timeout:g}s") from None
        except TransportError as exc:
            raise CamsError(action, CONNECTION_ERROR, exc.kind) from None
        finally:
            if grant is not None:
                grant.ended()  # it may have reached the server at any moment until now

    # -- ListChatappTemplate ----------------------------------------------------------------

    def list_templates(self, filters: ListFilters, page_size: int = 100) -> Listing:
        """Every (template, language) row that matches, across all pages (`exporter.cams.paging`).

        The largest page size is undocumented: if the API refuses the size as a parameter
        error, smaller sizes are tried before giving up.
        """
        base = {
            "CustSpaceId": filters.cust_space_id,
            "IsvCode": filters.isv_code,
            "Name": filters.name,
            "Code": filters.code,
            "Language": filters.language,
            "AuditStatus": filters.audit_status,
            "TemplateType": filters.template_type,
            "Category": filters.category,
        }
        params = {k: v for k, v in base.items() if v is not None}

        def fetch(index: int, size: int, lower_case: bool) -> Page:
            keys = ("index", "size") if lower_case else ("Index", "Size")
            page = json.dumps({keys[0]: index, keys[1]: size}, separators=(",", ":"))
            body = self.call(LIST_ACTION, {**params, "Page": page})
            rows = parse_templates(body)
            total = body.get("Total")
            return Page(rows, count_value(total, "Total") if total is not None else None)

        sizes = [s for s in (page_size, 50, 20, 10) if s <= page_size]
        for size in sizes:
            try:
                return list_all(fetch, size)
            except CamsError as error:
                if not error.code.startswith("InvalidParameter") or size == sizes[-1]:
                    raise
                log.info("ListChatappTemplate refused page size %d, trying smaller pages", size)
        raise AssertionError("unreachable")

    # -- GetChatappTemplateMetric ------------------------------------------------------------

    def template_metrics(
        self, *, start_ms: int, end_ms: int, max_range_ms: int, **query: Unpack[TemplateQuery]
    ) -> tuple[MetricRow, ...]:
        """Rows for [start_ms, end_ms), fetched in spans of at most max_range_ms."""
        return in_spans(
            lambda lower, upper: self.metric_chunk(start_ms=lower, end_ms=upper, **query),
            start_ms,
            end_ms,
            max_range_ms,
        )

    def metric_chunk(
        self, *, start_ms: int, end_ms: int, **query: Unpack[TemplateQuery]
    ) -> tuple[MetricRow, ...]:
        """One GetChatappTemplateMetric call for [start_ms, end_ms) (`language` None: every
        language of the template); AnomalousAnswer for an answer that cannot be vouched for."""
        code, language = query["code"], query["language"]
        subject = {
            "TemplateCode": code,
            "Language": language,
            "TemplateType": query.get("template_type"),
        }
        body = self._span_call(METRIC_ACTION, subject, query, start_ms, end_ms)
        return parse_metric_answer(body, code, language)

    def _span_call(
        self,
        action: str,
        subject: Mapping[str, str | None],
        query: SpanQuery,
        start_ms: int,
        end_ms: int,
    ) -> dict[str, Any]:
        """One call of a per-span metric action: its subject, the space, granularity and
        [start_ms, end_ms) (None values not sent)."""
        params = {
            **subject,
            "CustSpaceId": query.get("cust_space_id"),
            "IsvCode": query.get("isv_code"),
            "Granularity": query.get("granularity", "DAILY"),
            "Start": str(start_ms),
            "End": str(end_ms),
        }
        return self.call(action, {k: v for k, v in params.items() if v is not None})

    # -- sender health -----------------------------------------------------------------------

    def phone_numbers(
        self,
        *,
        cust_space_id: str | None = None,
        isv_code: str | None = None,
        status: str | None = None,
    ) -> tuple[PhoneNumber, ...]:
        """QueryChatappPhoneNumbers: the phone numbers of a space (optionally of one Status)."""
        params = {"CustSpaceId": cust_space_id, "IsvCode": isv_code, "Status": status}
        body = self.call(PHONE_NUMBERS_ACTION, {k: v for k, v in params.items() if v is not None})
        return parse_phone_numbers(body)

    def phone_number_metric_chunk(
        self, *, start_ms: int, end_ms: int, **query: Unpack[NumberQuery]
    ) -> tuple[PhoneNumberRow, ...]:
        """One GetChatappPhoneNumberMetric call for [start_ms, end_ms)."""
        number = query["phone_number"]
        body = self._span_call(
            PHONE_METRIC_ACTION, {"PhoneNumber": number}, query, start_ms, end_ms
        )
        return parse_phone_number_rows(body, number)

    def phone_number_metrics(
        self, *, start_ms: int, end_ms: int, max_range_ms: int, **query: Unpack[NumberQuery]
    ) -> tuple[PhoneNumberRow, ...]:
        """GetChatappPhoneNumberMetric rows for [start_ms, end_ms), in spans of max_range_ms."""
        return in_spans(
            lambda lower, upper: self.phone_number_metric_chunk(
                start_ms=lower, end_ms=upper, **query
            ),
            start_ms,
            end_ms,
            max_range_ms,
        )

    def health_status(
        self,
        *,
        node_type: str,
        cust_space_id: str | None,
        template_code: str | None = None,
        language: str | None = None,
        phone_number: str | None = None,
        waba_id: str | None = None,
    ) -> HealthStatus:
        """GetWhatsappHealthStatus for one node (`waba`, `phone` or `template`)."""
        params = {
            "NodeType": node_type,
            "CustSpaceId": cust_space_id,
            "TemplateCode": template_code,
            "Language": language,
            "PhoneNumber": phone_number,
            "WabaId": waba_id,
        }
        body = self.call(HEALTH_ACTION, {k: v for k, v in params.items() if v is not None})
        return parse_health_status(body)
