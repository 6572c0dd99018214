"""The CAMS API client: signed calls over one pooled HTTP session, retries, typed results.

`CamsClient` speaks the two actions the exporter needs, ListChatappTemplate and
GetChatappTemplateMetric, signing each request with Alibaba's V3 signature. Every attempt first
takes a slot from the account's shared `RateLimiter`, so retries count against the quota too.
Results come back as frozen dataclasses (`exporter.model`); failures as `CamsError`, which
carries the action, the code, the HTTP status and the RequestId, and never a secret.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from exporter import __version__
from exporter.config import StaticCredentials
from exporter.model import ButtonCount, MetricRow, Template
from exporter.ratelimit import RateLimiter
from exporter.signing import percent_encode, sign_rpc_v3, utc_timestamp

API_VERSION = "2020-06-06"
LIST_ACTION = "ListChatappTemplate"
METRIC_ACTION = "GetChatappTemplateMetric"

log = logging.getLogger("cams_exporter.client")

_RETRYABLE_CODES = frozenset(
    {"System.LimitControl", "ServiceUnavailable", "InternalError", "UnknownError"}
)
_THROTTLE_CODES = frozenset({"System.LimitControl", "Rejected.Throttling"})
# Transport-level outcomes, reported in place of an API code.
TIMEOUT = "Timeout"
CONNECTION_ERROR = "ConnectionError"
MALFORMED = "MalformedResponse"
# Passes over ListChatappTemplate's pages when the list keeps changing while it is paged.
_LIST_PASSES = 3


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
        self.action = action
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        self.attempts = attempts
        self.retry_after_s = retry_after_s
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

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later."""
        return is_retryable_code(self.code, self.status)

    @property
    def throttled(self) -> bool:
        """Whether the API refused the call for flow control."""
        return is_throttle_code(self.code)


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


def chunk_range(start_ms: int, end_ms: int, max_range_ms: int) -> Iterator[tuple[int, int]]:
    """Split [start_ms, end_ms) into consecutive spans of at most max_range_ms."""
    if max_range_ms <= 0:
        raise ValueError("max_range_ms must be positive")
    cursor = start_ms
    while cursor < end_ms:
        upper = min(end_ms, cursor + max_range_ms)
        yield cursor, upper
        cursor = upper


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def parse_metric_rows(body: Mapping[str, Any], code: str, language: str) -> tuple[MetricRow, ...]:
    """`Data` of a GetChatappTemplateMetric answer as MetricRow values."""
    data = body.get("Data") or []
    if not isinstance(data, list):
        raise ValueError("Data is not a list")
    rows = []
    for item in data:
        if not isinstance(item, Mapping):
            raise ValueError("Data element is not an object")
        clicks = []
        for click in item.get("Cliented") or []:
            if isinstance(click, Mapping):
                clicks.append(
                    ButtonCount(
                        button_type=str(click.get("Type") or "unknown"),
                        content=str(click.get("ButtonContent") or ""),
                        count=_int(click.get("Count")),
                    )
                )
        rows.append(
            MetricRow(
                template_code=str(item.get("TemplateCode") or code),
                language=str(item.get("Language") or language),
                sent=_int(item.get("SentCount")),
                delivered=_int(item.get("DeliveredCount")),
                read=_int(item.get("ReadCount")),
                clicks=tuple(clicks),
                start_ms=_int(item.get("Start")),
                end_ms=_int(item.get("End")),
            )
        )
    return tuple(rows)


def parse_templates(body: Mapping[str, Any]) -> tuple[Template, ...]:
    """`ListTemplate` of a ListChatappTemplate answer as Template values."""
    items = body.get("ListTemplate") or []
    if not isinstance(items, list):
        raise ValueError("ListTemplate is not a list")
    out = []
    for item in items:
        if not isinstance(item, Mapping) or not item.get("TemplateCode"):
            continue
        updated = item.get("LastUpdateTime")
        out.append(
            Template(
                code=str(item["TemplateCode"]),
                name=str(item.get("TemplateName") or ""),
                language=str(item.get("Language") or ""),
                category=str(item.get("Category") or ""),
                audit_status=str(item.get("AuditStatus") or ""),
                template_type=str(item.get("TemplateType") or "WHATSAPP"),
                last_update_ms=_int(updated) if updated is not None else None,
            )
        )
    return tuple(out)


class _SentNotifying:
    """Connection mixin: tells the thread's limiter once a request's bytes are written."""

    _cams_local: threading.local

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)  # type: ignore[misc]
        limiter = getattr(self._cams_local, "limiter", None)
        if limiter is not None:
            self._cams_local.limiter = None
            limiter.sent()


class _SentNotifyingAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections report to the rate limiter when a request is sent.

    The limiter counts a call in its 1-second window from the moment it is written, which is
    what the server sees, however long the process stalled between granting and sending.
    """

    def __init__(self, local: threading.local, **kwargs: Any) -> None:
        self._cams_local = local
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        extra = {"_cams_local": self._cams_local}
        plain = type("_Conn", (_SentNotifying, HTTPConnection), extra)
        secure = type("_SecureConn", (_SentNotifying, HTTPSConnection), extra)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("_Pool", (HTTPConnectionPool,), {"ConnectionCls": plain}),
            "https": type("_SecurePool", (HTTPSConnectionPool,), {"ConnectionCls": secure}),
        }


class CamsClient:
    """Signed CAMS calls for one account. Thread-safe; share it between workers."""

    def __init__(
        self,
        *,
        endpoint: str,
        credentials: CredentialSource,
        metric_limiter: RateLimiter,
        list_limiter: RateLimiter,
        timeout_s: float = 10.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 20.0,
        observer: Observer | None = None,
        pool_size: int = 32,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        self._base = f"{parts.scheme}://{parts.netloc}/"
        self._host = parts.netloc
        self._credentials = credentials
        self._limiters = {METRIC_ACTION: metric_limiter, LIST_ACTION: list_limiter}
        self._timeout = timeout_s
        self._max_retries = max_retries
        self._backoff_base = backoff_base_s
        self._backoff_cap = backoff_cap_s
        self._observer = observer
        self._stop = stop or threading.Event()
        self._clock = clock
        self._random = random.Random()
        self._session = requests.Session()
        self._local = threading.local()  # the limiter whose granted call this thread is sending
        adapter = _SentNotifyingAdapter(
            self._local, pool_connections=1, pool_maxsize=pool_size, max_retries=0
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {"User-Agent": f"cams-exporter/{__version__}", "Accept": "application/json"}
        )

    def close(self) -> None:
        """Release the pooled connections."""
        self._session.close()

    def _creds(self, action: str) -> StaticCredentials:
        source = self._credentials
        if isinstance(source, StaticCredentials):
            return source
        try:
            return source()
        except Exception as exc:  # the default chain found nothing or its source failed
            raise CamsError(action, "CredentialsUnavailable", type(exc).__name__) from None

    def call(self, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        """One API call with retries; the parsed JSON body of a successful answer."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(action, params, attempt)
            except CamsError as error:
                if not error.retryable or attempt > self._max_retries or self._stop.is_set():
                    raise CamsError(
                        action,
                        error.code,
                        error.message,
                        status=error.status,
                        request_id=error.request_id,
                        attempts=attempt,
                    ) from None
                delay = self._backoff(attempt, error)
                log.debug("retrying %s after %s in %.2fs", action, error.code, delay)
                if self._stop.wait(delay):
                    raise

    def _backoff(self, attempt: int, error: CamsError) -> float:
        ceiling = min(self._backoff_cap, self._backoff_base * (2 ** (attempt - 1)))
        delay = self._random.uniform(ceiling / 2, ceiling)
        if error.retry_after_s is not None:
            delay = max(delay, min(error.retry_after_s, 120.0))
        return delay

    def _attempt(self, action: str, params: Mapping[str, str], attempt: int) -> dict[str, Any]:
        limiter = self._limiters.get(action)
        if limiter is not None and not limiter.acquire(self._stop):
            raise CamsError(action, "Stopped", "the exporter is stopping")
        self._local.limiter = limiter  # the connection reports when the request is written
        try:
            return self._exchange(action, params, attempt, limiter)
        finally:
            unsent = getattr(self._local, "limiter", None)
            if unsent is not None:  # failed before its bytes were written
                self._local.limiter = None
                unsent.release()

    def _exchange(
        self, action: str, params: Mapping[str, str], attempt: int, limiter: RateLimiter | None
    ) -> dict[str, Any]:
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
        url = self._base + "?" + "&".join(f"{k}={percent_encode(v)}" for k, v in query.items())
        started = time.monotonic()
        status: int | None = None
        code = "OK"
        try:
            try:
                response = self._session.post(url, headers=headers, timeout=self._timeout)
            except requests.Timeout:
                code = TIMEOUT
                raise CamsError(action, TIMEOUT, f"no answer within {self._timeout:g}s") from None
            except requests.RequestException as exc:
                code = CONNECTION_ERROR
                raise CamsError(action, CONNECTION_ERROR, type(exc).__name__) from None
            status = response.status_code
            body = self._decode(action, response)
            code = str(body.get("Code") or body.get("code") or ("OK" if status < 400 else ""))
            if status >= 400 or code != "OK":
                code = code or f"HTTP{status}"
                retry_after = response.headers.get("x-acs-retry-after", "")
                raise CamsError(
                    action,
                    code,
                    str(body.get("Message") or body.get("message") or ""),
                    status=status,
                    request_id=str(body.get("RequestId") or body.get("requestId") or "") or None,
                    # darabonba reads x-acs-retry-after as milliseconds; so do we.
                    retry_after_s=int(retry_after) / 1000.0 if retry_after.isdigit() else None,
                )
            return body
        except CamsError as error:
            code = error.code
            if limiter is not None and error.throttled:
                limiter.on_throttled()
            raise
        finally:
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

    @staticmethod
    def _decode(action: str, response: requests.Response) -> dict[str, Any]:
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CamsError(
                action,
                MALFORMED if response.status_code < 500 else f"HTTP{response.status_code}",
                "the answer is not a JSON object",
                status=response.status_code,
            )
        return body

    def list_templates(self, filters: ListFilters, page_size: int = 100) -> tuple[Template, ...]:
        """Every (template, language) row that matches, across all pages.

        Pages are requested with `Page={"Index":n,"Size":m}` until `Total` rows were seen or a
        page comes back empty. The largest page size is undocumented: if the API refuses the
        size as a parameter error, smaller sizes are tried before giving up. Rows that appear
        twice (the list changed between pages) are kept once.
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
        sizes = [s for s in (page_size, 50, 20, 10) if s <= page_size]
        for size in sizes:
            try:
                return self._list_pages(params, size)
            except CamsError as error:
                if not error.code.startswith("InvalidParameter") or size == sizes[-1]:
                    raise
                log.info("ListChatappTemplate refused page size %d, trying smaller pages", size)
        raise AssertionError("unreachable")

    def _list_pages(self, params: Mapping[str, str], size: int) -> tuple[Template, ...]:
        """Every page once. When `Total` changes between pages the list changed under us, so
        rows shifted from one page to another (some seen twice, some never): list again from
        page 1, a few times at most, then keep the last pass (duplicates merged)."""
        for attempt in range(1, _LIST_PASSES + 1):
            rows, changed = self._list_pass(params, size)
            if changed is None:
                return rows
            log.info(
                "ListChatappTemplate: the template list changed while paging (Total %d -> %d)%s",
                changed[0],
                changed[1],
                ", listing again from page 1" if attempt < _LIST_PASSES else "",
            )
        return rows

    def _list_pass(
        self, params: Mapping[str, str], size: int
    ) -> tuple[tuple[Template, ...], tuple[int, int] | None]:
        """One pass over the pages: the rows, and (first Total, new Total) if it changed."""
        seen: dict[tuple[str, str], Template] = {}
        index = 1
        first_total: int | None = None
        total: int | None = None
        while True:
            page = json.dumps({"Index": index, "Size": size}, separators=(",", ":"))
            body = self.call(LIST_ACTION, {**params, "Page": page})
            try:
                rows = parse_templates(body)
            except ValueError as exc:
                raise CamsError(LIST_ACTION, MALFORMED, str(exc)) from None
            for row in rows:
                seen.setdefault((row.code, row.language), row)
            if body.get("Total") is not None:
                total = _int(body.get("Total"))
                if first_total is None:
                    first_total = total
                elif total != first_total:
                    return tuple(seen.values()), (first_total, total)
            if not rows or (total is not None and index * size >= total):
                break
            # Guard against a server that never stops: no more pages than Total implies.
            if total is not None and index > total // max(size, 1) + 2:
                break
            index += 1
        return tuple(seen.values()), None

    def template_metrics(
        self,
        *,
        code: str,
        language: str,
        start_ms: int,
        end_ms: int,
        max_range_ms: int,
        template_type: str | None = None,
        cust_space_id: str | None = None,
        isv_code: str | None = None,
        granularity: str = "DAILY",
    ) -> tuple[MetricRow, ...]:
        """Rows for [start_ms, end_ms), fetched in spans of at most max_range_ms."""
        rows: list[MetricRow] = []
        for lower, upper in chunk_range(start_ms, end_ms, max_range_ms):
            rows.extend(
                self.metric_chunk(
                    code=code,
                    language=language,
                    start_ms=lower,
                    end_ms=upper,
                    template_type=template_type,
                    cust_space_id=cust_space_id,
                    isv_code=isv_code,
                    granularity=granularity,
                )
            )
        return tuple(rows)

    def metric_chunk(
        self,
        *,
        code: str,
        language: str,
        start_ms: int,
        end_ms: int,
        template_type: str | None = None,
        cust_space_id: str | None = None,
        isv_code: str | None = None,
        granularity: str = "DAILY",
    ) -> tuple[MetricRow, ...]:
        """One GetChatappTemplateMetric call for [start_ms, end_ms)."""
        params = {
            "TemplateCode": code,
            "Language": language,
            "TemplateType": template_type,
            "CustSpaceId": cust_space_id,
            "IsvCode": isv_code,
            "Granularity": granularity,
            "Start": str(start_ms),
            "End": str(end_ms),
        }
        body = self.call(METRIC_ACTION, {k: v for k, v in params.items() if v is not None})
        try:
            return parse_metric_rows(body, code, language)
        except ValueError as exc:
            raise CamsError(METRIC_ACTION, MALFORMED, str(exc)) from None
