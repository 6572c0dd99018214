"""A CAMS API simulator: a real HTTP server that answers like Alibaba Cloud ChatApp Message Service.

It serves the two actions the exporter uses, `ListChatappTemplate` and `GetChatappTemplateMetric`,
as RPC-style `POST /` calls with the parameters in the query string, and it checks requests the way
the real gateway does: V3 (`ACS3-HMAC-SHA256`) and V1 (HMAC-SHA1) signatures, the 15-minute
timestamp window, nonce reuse, and a per-second flow control per access key and action. Error
answers carry Alibaba's JSON error body. Faults (throttling, 5xx, silent timeouts, resets, non-JSON
bodies, HTTP 200 errors) can be injected with seeded probabilities.

Data model (all deterministic from the seed, integer counts):
- N templates, each approved in every configured language; a template-language pair is a *unit*.
- For each unit and day `d` the final counts sent >= delivered >= read and clicks per button
  (<= read) come from a BLAKE2b hash of (seed, code, language, d); about 20% of days are silent.
  Nothing is precomputed per day, so thousands of templates cost nothing until asked for.
- Live mode: at time t a day's counts grow linearly from the day's start, sent over 1 day,
  delivered over 1.5 days, read and clicks over 3 days, so they never decrease and the ordering
  holds at every moment. `static` mode gives every day up to the anchor day its final counts
  (the anchor day counts as complete, so all 48 of its half hours are served).
- Days before `anchor - history` are silent; the anchor is the creation time plus the clock
  offset, which also shifts the 15-minute signature window.
- `HALF_HOUR` splits each day into 48 buckets that sum exactly to the day's counts; a day's units
  are laid out evenly over its buckets in order, so buckets only grow and future ones stay empty.
- Shapes play the open questions of the API: one row per UTC day (`per-bucket`), one row for the
  query (`aggregate`), days aligned to UTC+8 (`utc8`), zero rows left out (`sparse`).

Administration endpoints under `/_sim/` (stats, faults, key rotation, clock offset, template
deletion) are neither signed, throttled nor faulted. Run alone with `cams-exporter simulate`.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import json
import logging
import math
import random
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final, NoReturn, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit

from cachetools import TTLCache

from exporter import signing
from exporter.durations import format_duration, parse_duration
from exporter.model import DAY_MS, HALF_HOUR_MS, Template

API_VERSION: Final = "2020-06-06"
METRIC_ACTION: Final = "GetChatappTemplateMetric"
LIST_ACTION: Final = "ListChatappTemplate"
ACTIONS: Final = (METRIC_ACTION, LIST_ACTION)
SHAPES: Final = ("per-bucket", "aggregate", "utc8", "sparse")
GRANULARITIES: Final = ("DAILY", "HALF_HOUR")
SIGNATURE_WINDOW_S: Final = 15 * 60
MAX_PAGE_SIZE: Final = 100
DEFAULT_LISTEN: Final = "127.0.0.1:18080"

_JSON: Final = "application/json;charset=utf-8"
_HOST_ID: Final = "cams.ap-southeast-1.aliyuncs.com"
_UTC8_MS: Final = 8 * 3_600_000
_BUCKETS_PER_DAY: Final = DAY_MS // HALF_HOUR_MS
_DELIVERY_MS: Final = DAY_MS * 3 // 2
_READ_MS: Final = 3 * DAY_MS
_ZERO_DAY_SHARE: Final = 0.2
_ARRIVAL_LOG_CAP: Final = 1_000_000
_NONCE_CACHE_SIZE: Final = 200_000
_MAX_BODY: Final = 1 << 20
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
# (spec name, FaultSpec field) in the order a draw walks them.
_FAULT_NAMES: Final = (
    ("throttle", "throttle"),
    ("5xx", "server_error"),
    ("timeout", "timeout"),
    ("reset", "reset"),
    ("malformed", "malformed"),
    ("error200", "error200"),
)
_QUERY = re.compile(r"\?\S*")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*$")
_MARKETING_WORDS: Final = (
    ("promo", "offer", "flash", "vip", "loyalty", "seasonal", "weekend", "launch"),
    ("spring", "summer", "autumn", "winter", "holiday", "member", "friday", "brand"),
    ("sale", "deal", "coupon", "drop", "reward", "event", "discount", "preview"),
)
_UTILITY_WORDS: Final = (
    ("order", "shipping", "account", "payment", "booking", "delivery", "service", "invoice"),
    ("status", "confirmed", "update", "reminder", "receipt", "notice", "change", "alert"),
    ("info", "details", "summary", "check", "message", "digest", "note", "ready"),
)
_LAST_UPDATE_BASE_MS: Final = 1_704_067_200_000  # 2024-01-01T00:00:00Z

_log = logging.getLogger("exporter.simulator")
_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Per-request fault probabilities (each 0..1, together at most 1) and the draw's seed."""

    throttle: float = 0.0
    server_error: float = 0.0  # "5xx" in the spec: 503 ServiceUnavailable or 500 InternalError
    timeout: float = 0.0
    reset: float = 0.0
    malformed: float = 0.0
    error200: float = 0.0
    seed: int | None = None

    def probabilities(self) -> tuple[tuple[str, float], ...]:
        """(spec name, probability) for every fault kind, in drawing order."""
        return tuple((name, float(getattr(self, attr))) for name, attr in _FAULT_NAMES)

    @property
    def active(self) -> bool:
        """True when any fault has a positive probability."""
        return any(p > 0 for _, p in self.probabilities())


def parse_faults(spec: str) -> FaultSpec:
    """Parse `throttle=0.05,5xx=0.02,...,seed=7`; ValueError names the bad item."""
    values: dict[str, float] = {}
    seed: int | None = None
    attrs = dict(_FAULT_NAMES)
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, text = (part.strip() for part in item.partition("="))
        if not sep or not name or not text:
            raise ValueError(f"fault {item!r}: expected NAME=VALUE")
        if name == "seed":
            try:
                seed = int(text)
            except ValueError:
                raise ValueError(f"fault {item!r}: seed must be an integer") from None
            continue
        if name not in attrs:
            known = ", ".join([*attrs, "seed"])
            raise ValueError(f"fault {item!r}: unknown fault {name!r} (known: {known})")
        if attrs[name] in values:
            raise ValueError(f"fault {item!r}: {name} is given twice")
        try:
            probability = float(text)
        except ValueError:
            raise ValueError(f"fault {item!r}: probability must be a number") from None
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"fault {item!r}: probability must be between 0 and 1")
        values[attrs[name]] = probability
    total = sum(values.values())
    if total > 1.0 + 1e-9:
        raise ValueError(f"faults {spec.strip()!r}: probabilities add up to {total:g}, more than 1")
    return FaultSpec(
        throttle=values.get("throttle", 0.0),
        server_error=values.get("server_error", 0.0),
        timeout=values.get("timeout", 0.0),
        reset=values.get("reset", 0.0),
        malformed=values.get("malformed", 0.0),
        error200=values.get("error200", 0.0),
        seed=seed,
    )


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """Everything that shapes a simulator; two simulators with equal options serve equal data."""

    templates: int = 20
    languages: tuple[str, ...] = ("en", "es")
    seed: int = 1
    static: bool = False
    history_s: float = 90 * 86400
    access_key_id: str = "demo"
    access_key_secret: str = "demo-secret"
    qps_limit: float = 50
    list_qps_limit: float = 5
    latency_s: float = 0.0
    max_range_s: float = 30 * 86400
    faults: str = ""
    shape: str = "per-bucket"  # per-bucket | aggregate | utc8 | sparse
    timeout_fault_s: float = 15.0  # how long a 'timeout' fault stays silent before closing

    def __post_init__(self) -> None:
        problems = []
        if self.templates < 0:
            problems.append(f"templates must be >= 0, got {self.templates}")
        if not self.languages:
            problems.append("languages must not be empty")
        for language in self.languages:
            if not _LANGUAGE.match(language):
                problems.append(f"language {language!r} is not a language code like en or pt_BR")
        if len(set(self.languages)) != len(self.languages):
            problems.append("languages must not repeat")
        if not self.access_key_id or not self.access_key_secret:
            problems.append("access key id and secret must not be empty")
        for name in ("history_s", "max_range_s", "qps_limit", "list_qps_limit"):
            if not float(getattr(self, name)) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("latency_s", "timeout_fault_s"):
            if not float(getattr(self, name)) >= 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.shape not in SHAPES:
            problems.append(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if problems:
            raise ValueError("; ".join(problems))
        parse_faults(self.faults)


@dataclass(frozen=True, slots=True)
class Button:
    """One button of a template as `Cliented` reports it."""

    type: str  # url_button | quick_relpy_button | quick_reply_button | phone_number_button
    content: str


@dataclass(frozen=True, slots=True)
class TemplateDef:
    """One simulated template (all its languages share code, name, category and buttons)."""

    index: int
    code: str
    name: str
    category: str
    buttons: tuple[Button, ...]
    last_update_ms: int


@dataclass(frozen=True, slots=True)
class Counts:
    """Counts of one bucket (or a sum of buckets); `clicks` follows the template's buttons."""

    sent: int
    delivered: int
    read: int
    clicks: tuple[int, ...]

    def is_zero(self) -> bool:
        """True when nothing at all happened."""
        return not (self.sent or self.delivered or self.read or any(self.clicks))

    def plus(self, other: Counts) -> Counts:
        """Element-wise sum."""
        return Counts(
            self.sent + other.sent,
            self.delivered + other.delivered,
            self.read + other.read,
            tuple(a + b for a, b in zip(self.clicks, other.clicks, strict=True)),
        )


@dataclass(frozen=True, slots=True)
class _Request:
    """What the handler read off the wire."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-cased names; repeated headers joined with ','
    body: bytes


@dataclass(frozen=True, slots=True)
class _Reply:
    """What to send back; `drop` is 'timeout' or 'reset' for the connection faults."""

    status: int
    body: bytes = b""
    content_type: str = _JSON
    drop: str = ""
    ok: bool = False  # a successful CAMS answer (for the stats)


class _ApiError(Exception):
    """An API error answered with Alibaba's JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _missing(name: str) -> _ApiError:
    return _ApiError(
        400,
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request is not '
        "supplied.",
    )


def _invalid(name: str, detail: str) -> _ApiError:
    return _ApiError(400, "InvalidParameter", f'The parameter "{name}" is invalid: {detail}')


def _throttled() -> _ApiError:
    return _ApiError(400, "System.LimitControl", "The system is under flow control.")


# --------------------------------------------------------------------------------------------
# Templates and data


def _digest(*parts: object) -> bytes:
    """32 stable bytes for the given parts (never Python's randomised hash())."""
    text = "|".join(str(part) for part in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=32).digest()


def _uniforms(digest: bytes) -> tuple[float, ...]:
    """Eight floats in [0, 1) from a 32-byte digest."""
    return tuple(int.from_bytes(digest[i : i + 4], "big") / 2**32 for i in range(0, 32, 4))


def build_templates(count: int, seed: int) -> tuple[TemplateDef, ...]:
    """The simulated templates: deterministic from the seed, every 4th one UTILITY."""
    out = []
    for index in range(count):
        code = hashlib.md5(f"{seed}:{index}".encode(), usedforsecurity=False).hexdigest()
        digest = _digest("template", seed, index)
        utility = index % 4 == 3
        words = _UTILITY_WORDS if utility else _MARKETING_WORDS
        name = "_".join(group[digest[i] % len(group)] for i, group in enumerate(words))
        mask = digest[3] % 8
        buttons = []
        if mask & 1:
            buttons.append(Button("url_button", "Shop now"))
        if mask & 2:
            spelling = "quick_relpy_button" if digest[4] % 2 else "quick_reply_button"
            buttons.append(Button(spelling, "Stop promotions"))
        if mask & 4:
            buttons.append(Button("phone_number_button", "Call us"))
        out.append(
            TemplateDef(
                index=index,
                code=code,
                name=f"{name}_{index + 1:03d}",
                category="UTILITY" if utility else "MARKETING",
                buttons=tuple(buttons),
                last_update_ms=_LAST_UPDATE_BASE_MS + int.from_bytes(digest[8:12]) % (365 * DAY_MS),
            )
        )
    return tuple(out)


def _grow(final: int, age_ms: int, period_ms: int) -> int:
    """floor(final * min(1, age/period)) in exact integer arithmetic."""
    if age_ms >= period_ms:
        return final
    if age_ms <= 0:
        return 0
    return final * age_ms // period_ms


def _split(final: int, current: int, k: int) -> int:
    """Units of a day (final total, current total) that fall into its half-hour bucket k."""
    low = -(-k * final // _BUCKETS_PER_DAY)
    high = -(-(k + 1) * final // _BUCKETS_PER_DAY)
    return min(max(current, low), high) - low


class _DataModel:
    """Counts per (unit, bucket), computed on demand from hashes."""

    def __init__(self, seed: int, day_offset_ms: int) -> None:
        self._seed = seed
        self.day_offset_ms = day_offset_ms  # day d covers [d*DAY - offset, (d+1)*DAY - offset)

    def day_of(self, t_ms: int) -> int:
        return (t_ms + self.day_offset_ms) // DAY_MS

    def day_start(self, day: int) -> int:
        return day * DAY_MS - self.day_offset_ms

    def final(self, template: TemplateDef, language: str, day: int) -> Counts:
        """The day's final counts for one unit."""
        n = len(template.buttons)
        u = _uniforms(_digest(self._seed, template.code, language, day))
        if u[0] < _ZERO_DAY_SHARE:
            return Counts(0, 0, 0, (0,) * n)
        volume = _uniforms(_digest("volume", self._seed, template.code, language))[0]
        base = 20 * 150**volume  # 20 .. 3000 messages on a typical day
        sent = max(1, int(base * (0.4 + 1.2 * u[1])))
        delivered = int(sent * (0.80 + 0.19 * u[2]))
        read = int(delivered * (0.25 + 0.6 * u[3]))
        clicks = tuple(int(read * (0.02 + 0.3 * u[4 + i])) for i in range(n))
        return Counts(sent, delivered, read, clicks)

    @staticmethod
    def at_age(final: Counts, age_ms: int) -> Counts:
        """Counts of a day `age_ms` after its start (live mode)."""
        read_share = tuple(_grow(c, age_ms, _READ_MS) for c in final.clicks)
        return Counts(
            _grow(final.sent, age_ms, DAY_MS),
            _grow(final.delivered, age_ms, _DELIVERY_MS),
            _grow(final.read, age_ms, _READ_MS),
            read_share,
        )

    @staticmethod
    def half_hour(final: Counts, current: Counts, k: int) -> Counts:
        """The part of a day's current counts in its half-hour bucket k."""
        return Counts(
            _split(final.sent, current.sent, k),
            _split(final.delivered, current.delivered, k),
            _split(final.read, current.read, k),
            tuple(_split(f, c, k) for f, c in zip(final.clicks, current.clicks, strict=True)),
        )


# --------------------------------------------------------------------------------------------
# Mutable parts, each with its own lock


class _Clock:
    """Wall clock plus an adjustable offset; the anchor is the creation time plus the offset."""

    def __init__(self) -> None:
        self._created = time.time()
        self._offset = 0.0
        self._lock = threading.Lock()

    def set_offset(self, seconds: float) -> None:
        with self._lock:
            self._offset = float(seconds)

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def anchor(self) -> float:
        with self._lock:
            return self._created + self._offset


class _Throttle:
    """Sliding one-second windows of accepted requests per (access key id, action).

    A request is admitted only if no half-open 1-second window containing its arrival time would
    then hold more than the limit, so the arrival log itself never shows more than the limit in
    any window, even when threads check out of arrival order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accepted: dict[tuple[str, str], list[float]] = {}

    def admit(self, key: tuple[str, str], t: float, limit: float) -> bool:
        cap = max(1, math.floor(limit))
        with self._lock:
            times = self._accepted.setdefault(key, [])
            horizon = max(t, times[-1] if times else t) - 2.0
            del times[: bisect.bisect_left(times, horizon)]
            best = bisect.bisect_left(times, t + 1.0) - bisect.bisect_left(times, t)
            for p in times[bisect.bisect_right(times, t - 1.0) : bisect.bisect_right(times, t)]:
                best = max(best, bisect.bisect_left(times, p + 1.0) - bisect.bisect_left(times, p))
            if best + 1 > cap:
                return False
            bisect.insort(times, t)
            return True


def _max_in_window(times: Iterable[float], width: float = 1.0) -> int:
    """Largest number of times in any half-open window [t, t + width)."""
    ordered = sorted(times)
    best = 0
    left = 0
    for right, value in enumerate(ordered):
        while ordered[left] <= value - width:
            left += 1
        best = max(best, right - left + 1)
    return best


class _ActionLog:
    """Counters and bounded arrival logs of one action."""

    def __init__(self) -> None:
        self.calls = 0
        self.ok = 0
        self.throttled = 0
        self.errors = 0
        self.arrivals: deque[float] = deque(maxlen=_ARRIVAL_LOG_CAP)
        self.ok_arrivals: deque[float] = deque(maxlen=_ARRIVAL_LOG_CAP)


class _Stats:
    """Arrival times and outcomes of CAMS requests, per action."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[str, _ActionLog] = {}

    def record(self, action: str, arrival: float, outcome: str) -> None:
        with self._lock:
            log = self._actions.setdefault(action, _ActionLog())
            log.calls += 1
            log.arrivals.append(arrival)
            if outcome == "ok":
                log.ok += 1
                log.ok_arrivals.append(arrival)
            elif outcome == "throttled":
                log.throttled += 1
            else:
                log.errors += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            copies = {
                name: (
                    log.calls,
                    log.ok,
                    log.throttled,
                    log.errors,
                    list(log.arrivals),
                    list(log.ok_arrivals),
                )
                for name, log in self._actions.items()
            }
        actions = {
            name: {
                "calls": calls,
                "ok": ok,
                "throttled": throttled,
                "errors": errors,
                "max_calls_in_1s": _max_in_window(arrivals),
                "max_ok_in_1s": _max_in_window(ok_arrivals),
            }
            for name, (calls, ok, throttled, errors, arrivals, ok_arrivals) in copies.items()
        }
        return {"actions": actions}

    def reset(self) -> None:
        with self._lock:
            self._actions.clear()


# --------------------------------------------------------------------------------------------
# The simulator


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parse_time(name: str, value: str) -> float:
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise _invalid(name, "expected a UTC time like 2024-01-01T00:00:00Z") from None
    return moment.timestamp()


def _form_params(request: _Request) -> list[tuple[str, str]]:
    content_type = request.headers.get("content-type", "").lower()
    if request.body and content_type.startswith("application/x-www-form-urlencoded"):
        try:
            return parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise _invalid("body", "not UTF-8") from None
    return []


def _int_param(params: Mapping[str, str], name: str) -> int:
    value = params.get(name, "")
    if value == "":
        raise _missing(name)
    try:
        return int(value)
    except ValueError:
        raise _invalid(name, f"expected milliseconds since the epoch, got {value!r}") from None


def _page_number(page: Mapping[str, Any], key: str, default: int) -> int:
    raw = page.get(key, page.get(key.lower(), default))
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise _invalid("Page", f"{key} must be an integer")
    try:
        return int(raw)
    except ValueError:
        raise _invalid("Page", f"{key} must be an integer") from None


def _parse_page(text: str | None) -> tuple[int, int]:
    """(index, size) from the JSON `Page` parameter."""
    if not text:
        return 1, 10
    try:
        page = json.loads(text)
    except ValueError:
        raise _invalid("Page", 'expected JSON like {"Index":1,"Size":50}') from None
    if not isinstance(page, dict):
        raise _invalid("Page", 'expected JSON like {"Index":1,"Size":50}')
    index = _page_number(page, "Index", 1)
    size = _page_number(page, "Size", 10)
    if index < 1:
        raise _invalid("Page", f"Index must be >= 1, got {index}")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise _invalid("Page", f"Size must be between 1 and {MAX_PAGE_SIZE}, got {size}")
    return index, size


class Simulator:
    """The CAMS simulator on a real HTTP server (bound at construction, served after start())."""

    def __init__(self, options: SimulatorOptions, host: str = "127.0.0.1", port: int = 0) -> None:
        self._options = options
        self._clock = _Clock()
        self._defs = build_templates(options.templates, options.seed)
        self._by_code = {t.code: t for t in self._defs}
        self._rows = tuple(
            Template(
                code=t.code,
                name=t.name,
                language=language,
                category=t.category,
                audit_status="pass",
                template_type="WHATSAPP",
                last_update_ms=t.last_update_ms,
            )
            for t in self._defs
            for language in options.languages
        )
        self._model = _DataModel(options.seed, _UTC8_MS if options.shape == "utc8" else 0)
        self._state_lock = threading.Lock()
        self._keys = (options.access_key_id, options.access_key_secret)
        self._deleted: set[str] = set()
        self._nonce_lock = threading.Lock()
        self._nonces: TTLCache[str, bool] = TTLCache(
            maxsize=_NONCE_CACHE_SIZE, ttl=SIGNATURE_WINDOW_S, timer=time.monotonic
        )
        self._throttle = _Throttle()
        self._stats = _Stats()
        self._fault_lock = threading.Lock()
        self._faults = parse_faults(options.faults)
        self._fault_rng = random.Random(self._fault_seed(self._faults))
        self._stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self._server = _Server(host, port, self)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Serve in a background daemon thread."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError("simulator already started or stopped")
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"cams-simulator-{self.endpoint}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent)."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        with self._conn_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def options(self) -> SimulatorOptions:
        return self._options

    @property
    def endpoint(self) -> str:
        """`host:port` for the SDK's Config(endpoint=..., protocol="http")."""
        host, port = self._server.server_address[:2]
        text = str(host)
        if text in ("0.0.0.0", ""):
            text = "127.0.0.1"
        elif text == "::":
            text = "::1"
        if ":" in text:
            text = f"[{text}]"
        return f"{text}:{port}"

    @property
    def bound_address(self) -> str:
        """The listening socket's `host:port` as bound (may be a wildcard address)."""
        host, port = self._server.server_address[:2]
        text = str(host)
        return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"

    @property
    def url(self) -> str:
        """`http://host:port`."""
        return f"http://{self.endpoint}"

    # -- control ---------------------------------------------------------------------------

    def templates(self) -> tuple[Template, ...]:
        """The template-language rows ListChatappTemplate currently lists."""
        with self._state_lock:
            deleted = frozenset(self._deleted)
        return tuple(row for row in self._rows if row.code not in deleted)

    def stats(self) -> dict[str, Any]:
        """Calls, outcomes and the busiest 1-second windows per action (as GET /_sim/stats)."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    def set_faults(self, spec: str) -> None:
        """Replace the fault probabilities (ValueError on a bad spec); restarts the draws."""
        faults = parse_faults(spec)
        with self._fault_lock:
            self._faults = faults
            self._fault_rng = random.Random(self._fault_seed(faults))

    def set_keys(self, access_key_id: str, access_key_secret: str) -> None:
        """Rotate the only valid key pair; the old one is unknown from now on."""
        if not access_key_id or not access_key_secret:
            raise ValueError("access key id and secret must not be empty")
        with self._state_lock:
            self._keys = (access_key_id, access_key_secret)

    def delete_template(self, code: str) -> None:
        """Hide a template from listing and metrics (KeyError for an unknown code)."""
        if code not in self._by_code:
            raise KeyError(code)
        with self._state_lock:
            self._deleted.add(code)

    def restore_template(self, code: str) -> None:
        """Bring a deleted template back (KeyError for an unknown code)."""
        if code not in self._by_code:
            raise KeyError(code)
        with self._state_lock:
            self._deleted.discard(code)

    def set_clock_offset(self, seconds: float) -> None:
        """Shift the simulator's 'now': the data's anchor and the signature window alike."""
        if not math.isfinite(seconds):
            raise ValueError("clock offset must be a finite number of seconds")
        self._clock.set_offset(seconds)

    def _fault_seed(self, faults: FaultSpec) -> int:
        return self._options.seed if faults.seed is None else faults.seed

    # -- connections (used by the handler) ---------------------------------------------------

    def _track(self, connection: socket.socket, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake up when the simulator stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- admin -------------------------------------------------------------------------------

    def _handle_admin(self, method: str, path: str, body: bytes) -> _Reply:
        """The unsigned /_sim/ endpoints."""
        try:
            if path == "/_sim/stats" and method == "GET":
                return _Reply(200, _json_bytes(self.stats()))
            if method != "POST":
                return _Reply(404, _json_bytes({"error": f"no such endpoint: {method} {path}"}))
            text = body.decode("utf-8")
            if path == "/_sim/stats/reset":
                self.reset_stats()
            elif path == "/_sim/faults":
                self.set_faults(text)
            elif path == "/_sim/keys":
                doc = self._admin_json(text)
                self.set_keys(
                    str(doc.get("access_key_id", "")), str(doc.get("access_key_secret", ""))
                )
            elif path == "/_sim/clock":
                offset = self._admin_json(text).get("offset_seconds")
                if isinstance(offset, bool) or not isinstance(offset, int | float):
                    raise ValueError("offset_seconds must be a number")
                self.set_clock_offset(float(offset))
            elif path in ("/_sim/templates/delete", "/_sim/templates/restore"):
                code = str(self._admin_json(text).get("code", ""))
                if path.endswith("delete"):
                    self.delete_template(code)
                else:
                    self.restore_template(code)
            else:
                return _Reply(404, _json_bytes({"error": f"no such endpoint: {method} {path}"}))
        except KeyError as exc:
            return _Reply(404, _json_bytes({"error": f"unknown template code {exc.args[0]!r}"}))
        except (ValueError, UnicodeDecodeError) as exc:
            return _Reply(400, _json_bytes({"error": str(exc)}))
        return _Reply(200, _json_bytes({"ok": True}))

    @staticmethod
    def _admin_json(text: str) -> Mapping[str, Any]:
        try:
            doc = json.loads(text)
        except ValueError:
            raise ValueError("body must be a JSON object") from None
        if not isinstance(doc, dict):
            raise ValueError("body must be a JSON object")
        return doc

    # -- the API -----------------------------------------------------------------------------

    def _handle_api(self, request: _Request, arrival: float) -> _Reply:
        """One CAMS request: authenticate, throttle, maybe fault, answer; recorded in stats."""
        action = request.headers.get("x-acs-action", "")
        outcome = "error"
        reply: _Reply
        try:
            query = parse_qsl(request.query, keep_blank_values=True)
            params = dict(query)
            params.update(_form_params(request))
            if request.headers.get("authorization", "").startswith(signing.V3_ALGORITHM):
                key_id = self._authenticate_v3(request, dict(query))
            else:
                action = params.get("Action", "")
                key_id = self._authenticate_v1(request, params)
            if action not in ACTIONS:
                raise _ApiError(
                    404, "InvalidAction.NotFound", f"Specified api {action!r} is not found."
                )
            limit = (
                self._options.list_qps_limit if action == LIST_ACTION else self._options.qps_limit
            )
            if not self._throttle.admit((key_id, action), arrival, limit):
                raise _throttled()
            reply = self._faulted() or self._answer(action, params)
            outcome = "ok" if reply.ok else "error"
        except _ApiError as exc:
            outcome = "throttled" if exc.code == "System.LimitControl" else "error"
            reply = self._error_reply(request, exc)
        except Exception:  # a bug here must still answer like a server, not kill the thread
            _log.exception("simulator failed on %s", action or "a request")
            reply = self._error_reply(
                request, _ApiError(500, "InternalError", "The request processing has failed.")
            )
        self._stats.record(action if action in ACTIONS else "other", arrival, outcome)
        self._pause(self._options.latency_s)
        return reply

    def _error_reply(self, request: _Request, error: _ApiError) -> _Reply:
        request_id = self._request_id()
        body = {
            "RequestId": request_id,
            "HostId": request.headers.get("host", _HOST_ID),
            "Code": error.code,
            "Message": error.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={error.code}&product=cams"
            f"&requestId={request_id}",
        }
        return _Reply(error.status, _json_bytes(body))

    @staticmethod
    def _request_id() -> str:
        return str(uuid.uuid4()).upper()

    def _secret_for(self, key_id: str) -> str:
        with self._state_lock:
            known_id, secret = self._keys
        if key_id != known_id:
            raise _ApiError(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        return secret

    def _check_time(self, name: str, value: str) -> None:
        skew = abs(_parse_time(name, value) - self._clock.now())
        if skew > SIGNATURE_WINDOW_S:
            raise _ApiError(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )

    def _check_version(self, name: str, value: str) -> None:
        if value != API_VERSION:
            raise _invalid(name, f"the API version is {API_VERSION}, got {value!r}")

    def _use_nonce(self, nonce: str) -> None:
        with self._nonce_lock:
            if nonce in self._nonces:
                raise _ApiError(
                    400, "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            self._nonces[nonce] = True

    def _authenticate_v3(self, request: _Request, query: Mapping[str, str]) -> str:
        parts = signing.parse_v3_authorization(request.headers["authorization"])
        if parts is None:
            raise _ApiError(400, "IncompleteSignature", "The Authorization header is malformed.")
        signed = [
            name.strip().lower() for name in parts["SignedHeaders"].split(";") if name.strip()
        ]
        for name in _V3_REQUIRED_HEADERS:
            if name not in signed or name not in request.headers:
                raise _ApiError(
                    400, "IncompleteSignature", f"The header {name} must be sent and signed."
                )
        key_id = parts["Credential"]
        secret = self._secret_for(key_id)
        if "x-acs-security-token" in request.headers and (
            request.headers.get("x-acs-accesskey-id") != key_id
        ):
            raise _invalid("x-acs-accesskey-id", "must equal the access key id of the signature")
        self._check_version("x-acs-version", request.headers["x-acs-version"])
        self._check_time("x-acs-date", request.headers["x-acs-date"])
        payload_hash = request.headers["x-acs-content-sha256"]
        if payload_hash != hashlib.sha256(request.body).hexdigest():
            raise _ApiError(
                400, "SignatureDoesNotMatch", "x-acs-content-sha256 does not match the body."
            )
        expected, _ = signing.v3_signature(
            method=request.method,
            pathname=request.path,
            query=query,
            headers={name: request.headers.get(name, "") for name in signed},
            payload_hash=payload_hash,
            secret=secret,
        )
        if not signing.constant_time_equal(expected, parts["Signature"]):
            raise _ApiError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
            )
        self._use_nonce(request.headers["x-acs-signature-nonce"])
        return key_id

    def _authenticate_v1(self, request: _Request, params: Mapping[str, str]) -> str:
        for name in _V1_REQUIRED_PARAMS:
            if not params.get(name):
                raise _missing(name)
        key_id = params["AccessKeyId"]
        secret = self._secret_for(key_id)
        if params["SignatureMethod"] != "HMAC-SHA1":
            raise _invalid("SignatureMethod", "only HMAC-SHA1 is supported")
        if params["SignatureVersion"] != "1.0":
            raise _invalid("SignatureVersion", "only 1.0 is supported")
        self._check_version("Version", params["Version"])
        self._check_time("Timestamp", params["Timestamp"])
        unsigned = {key: value for key, value in params.items() if key != "Signature"}
        expected = signing.v1_signature(unsigned, request.method, secret)
        if not signing.constant_time_equal(expected, params["Signature"]):
            raise _ApiError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
            )
        self._use_nonce(params["SignatureNonce"])
        return key_id

    def _draw_fault(self) -> str:
        with self._fault_lock:
            if not self._faults.active:
                return ""
            draw = self._fault_rng.random()
            cumulative = 0.0
            for name, probability in self._faults.probabilities():
                cumulative += probability
                if draw < cumulative:
                    if name == "5xx":
                        return "503" if self._fault_rng.random() < 0.5 else "500"
                    return name
        return ""

    def _faulted(self) -> _Reply | None:
        fault = self._draw_fault()
        if not fault:
            return None
        if fault == "throttle":
            raise _throttled()
        if fault == "503":
            raise _ApiError(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            )
        if fault == "500":
            raise _ApiError(
                500, "InternalError", "The request processing has failed due to some unknown error."
            )
        if fault in ("timeout", "reset"):
            return _Reply(0, drop=fault)
        if fault == "malformed":
            return _Reply(200, b"<html>upstream error</html>", "text/html;charset=utf-8")
        body = {
            "Code": "InternalError",
            "Message": "The request processing has failed due to some unknown error.",
            "RequestId": self._request_id(),
        }
        return _Reply(200, _json_bytes(body))

    def _answer(self, action: str, params: Mapping[str, str]) -> _Reply:
        if action == LIST_ACTION:
            return _Reply(200, _json_bytes(self._list_templates(params)), ok=True)
        return _Reply(200, _json_bytes(self._template_metric(params)), ok=True)

    def _list_templates(self, params: Mapping[str, str]) -> dict[str, Any]:
        index, size = _parse_page(params.get("Page"))
        name = params.get("Name", "").lower()
        exact = {
            "code": params.get("Code", ""),
            "language": params.get("Language", ""),
            "audit_status": params.get("AuditStatus", "").lower(),
            "template_type": params.get("TemplateType", "").upper(),
            "category": params.get("Category", "").upper(),
        }
        wanted = {key: value for key, value in exact.items() if value}
        rows = [
            row
            for row in self.templates()
            if name in row.name.lower()
            and all(getattr(row, key) == value for key, value in wanted.items())
        ]
        page = rows[(index - 1) * size : index * size]
        return {
            "RequestId": self._request_id(),
            "Code": "OK",
            "Message": "success",
            "Success": True,
            "Total": len(rows),
            "ListTemplate": [
                {
                    "TemplateCode": row.code,
                    "TemplateName": row.name,
                    "Language": row.language,
                    "Category": row.category,
                    "AuditStatus": row.audit_status,
                    "TemplateType": row.template_type,
                    "Reason": "",
                    "LastUpdateTime": row.last_update_ms,
                }
                for row in page
            ],
        }

    def _template_metric(self, params: Mapping[str, str]) -> dict[str, Any]:
        code = params.get("TemplateCode", "")
        if not code:
            raise _missing("TemplateCode")
        granularity = params.get("Granularity") or "DAILY"
        if granularity not in GRANULARITIES:
            raise _invalid("Granularity", f"expected DAILY or HALF_HOUR, got {granularity!r}")
        start = _int_param(params, "Start")
        end = _int_param(params, "End")
        if end <= start:
            raise _invalid("End", "End must be greater than Start")
        max_range_ms = int(self._options.max_range_s * 1000)
        if end - start > max_range_ms:
            raise _invalid(
                "End",
                f"the time range End - Start must not exceed "
                f"{format_duration(self._options.max_range_s)} ({max_range_ms} ms)",
            )
        template = self._by_code.get(code)
        with self._state_lock:
            if code in self._deleted:
                template = None
        template_type = params.get("TemplateType", "")
        language = params.get("Language", "")
        languages = [lang for lang in self._options.languages if not language or lang == language]
        data: list[dict[str, Any]] = []
        if template is not None and template_type.upper() in ("", "WHATSAPP"):
            for lang in languages:
                data.extend(self._metric_rows(template, lang, granularity, start, end))
        return {"RequestId": self._request_id(), "Code": "OK", "Message": "success", "Data": data}

    def _metric_rows(
        self, template: TemplateDef, language: str, granularity: str, start: int, end: int
    ) -> list[dict[str, Any]]:
        model = self._model
        size = DAY_MS if granularity == "DAILY" else HALF_HOUR_MS
        offset = model.day_offset_ms
        anchor_ms = int(self._clock.anchor() * 1000)
        first_day = model.day_of(anchor_ms - int(self._options.history_s * 1000))
        static = self._options.static
        # static: the anchor day is complete; live: buckets up to the simulator's now
        now_ms = (
            model.day_start(model.day_of(anchor_ms) + 1) - 1
            if static
            else int(self._clock.now() * 1000)
        )
        first_bucket = (start + offset) // size
        end_bucket = min(-(-(end + offset) // size), (now_ms + offset) // size + 1)
        zero = Counts(0, 0, 0, (0,) * len(template.buttons))
        days: dict[int, tuple[Counts, Counts]] = {}

        def day_counts(day: int) -> tuple[Counts, Counts]:
            if day not in days:
                if day < first_day:
                    days[day] = (zero, zero)
                else:
                    final = model.final(template, language, day)
                    current = (
                        final if static else model.at_age(final, now_ms - model.day_start(day))
                    )
                    days[day] = (final, current)
            return days[day]

        buckets: list[tuple[int, Counts]] = []
        for bucket in range(first_bucket, end_bucket):
            if size == DAY_MS:
                counts = day_counts(bucket)[1]
            else:
                day, k = divmod(bucket, _BUCKETS_PER_DAY)
                final, current = day_counts(day)
                counts = model.half_hour(final, current, k)
            buckets.append((bucket * size - offset, counts))

        shape = self._options.shape
        if shape == "aggregate":
            if not buckets:
                return []
            total = zero
            for _, counts in buckets:
                total = total.plus(counts)
            return [self._metric_row(template, language, total, start, end, sparse=False)]
        sparse = shape == "sparse"
        return [
            self._metric_row(template, language, counts, bucket_start, bucket_start + size, sparse)
            for bucket_start, counts in buckets
            if not (sparse and counts.is_zero())
        ]

    @staticmethod
    def _metric_row(
        template: TemplateDef, language: str, counts: Counts, start: int, end: int, sparse: bool
    ) -> dict[str, Any]:
        return {
            "TemplateCode": template.code,
            "Language": language,
            "SentCount": counts.sent,
            "DeliveredCount": counts.delivered,
            "ReadCount": counts.read,
            "Cliented": [
                {"Type": button.type, "ButtonContent": button.content, "Count": count}
                for button, count in zip(template.buttons, counts.clicks, strict=True)
                if count or not sparse
            ],
            "Start": start,
            "End": end,
        }


# --------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with daemon threads, a deep backlog and no reverse DNS at bind."""

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, host: str, port: int, simulator: Simulator) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.simulator = simulator
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time off a keep-alive connection and hands it to the simulator."""

    protocol_version = "HTTP/1.1"
    server_version = "cams-simulator"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this

    @property
    def simulator(self) -> Simulator:
        return cast(_Server, self.server).simulator

    def setup(self) -> None:
        super().setup()
        # small answers on keep-alive connections must not wait for delayed ACKs (Nagle)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.simulator._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.simulator._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        # query strings can carry a V1 SecurityToken: never log them
        _log.debug("%s %s", self.address_string(), _QUERY.sub("?...", format % args))

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send(_Reply(411, _json_bytes({"error": "send a Content-Length"})))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._send(_Reply(400, _json_bytes({"error": "bad or too large Content-Length"})))
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        arrival = time.monotonic()
        parts = urlsplit(self.path)
        body = self._read_body()
        if body is None:
            return
        simulator = self.simulator
        if parts.path.startswith("/_sim/"):
            reply = simulator._handle_admin(self.command, parts.path, body)
        elif parts.path == "/":
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            request = _Request(self.command, parts.path, parts.query, headers, body)
            reply = simulator._handle_api(request, arrival)
        else:
            reply = _Reply(404, _json_bytes({"error": f"no such path: {parts.path}"}))
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        if reply.drop == "timeout":
            self.simulator._pause(self.simulator.options.timeout_fault_s)
            self.close_connection = True
            return
        if reply.drop == "reset":
            self.close_connection = True
            try:
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.rfile.close()
                self.connection.close()  # with linger 0: RST, no bytes
            except OSError:
                pass
            return
        self.log_request(reply.status)
        lines = [
            f"{self.protocol_version} {reply.status} {HTTPStatus(reply.status).phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
        ]
        if self.close_connection:
            lines.append("Connection: close")
        head = "\r\n".join([*lines, "", ""]).encode("latin-1")
        self.wfile.write(head + reply.body)  # one write: headers and body in one segment


# --------------------------------------------------------------------------------------------
# Command line


class _UsageError(Exception):
    """A bad command line: one line to stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _arg_type(
    convert: Callable[[str], _T], check: Callable[[_T], bool], expected: str
) -> Callable[[str], _T]:
    """An argparse `type=` that turns ValueError and failed checks into one-line messages."""

    def parse(text: str) -> _T:
        try:
            value = convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc) if str(exc) else expected) from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
        return value

    return parse


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


def _languages(text: str) -> tuple[str, ...]:
    languages = tuple(part.strip() for part in text.split(","))
    for language in languages:
        if not _LANGUAGE.match(language):
            raise ValueError(f"{language!r} is not a language code like en or pt_BR")
    if len(set(languages)) != len(languages):
        raise ValueError(f"languages repeat in {text!r}")
    return languages


def _listen(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    return host, int(port_text)


def _faults_arg(text: str) -> str:
    parse_faults(text)
    return text


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="cams-exporter simulate",
        description="Run the CAMS API simulator (ListChatappTemplate, GetChatappTemplateMetric).",
    )
    add = parser.add_argument
    add(
        "--listen",
        type=_arg_type(_listen, bool, "expected HOST:PORT"),
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN})",
    )
    add(
        "--templates",
        type=_arg_type(_int, lambda v: v >= 0, "must be >= 0"),
        default=20,
        metavar="N",
        help="number of templates (default 20)",
    )
    add(
        "--languages",
        type=_arg_type(_languages, bool, "expected en,es,..."),
        default=("en", "es"),
        metavar="LANGS",
        help="comma-separated languages, every template in each (default en,es)",
    )
    add(
        "--seed",
        type=_arg_type(_int, lambda v: True, "expected an integer"),
        default=1,
        help="seed of the data (default 1)",
    )
    add("--static", action="store_true", help="freeze the data: same query, same answer")
    add(
        "--history",
        type=_arg_type(parse_duration, lambda v: v > 0, "must be > 0"),
        default=90 * 86400.0,
        metavar="DURATION",
        help="days with data before now (default 90d)",
    )
    add("--access-key-id", default="demo", metavar="ID", help="accepted key id (default demo)")
    add(
        "--access-key-secret",
        default="demo-secret",
        metavar="SECRET",
        help="its secret (default demo-secret)",
    )
    add(
        "--qps-limit",
        type=_arg_type(_float, lambda v: v > 0, "must be > 0"),
        default=50.0,
        metavar="QPS",
        help="GetChatappTemplateMetric requests per second (default 50)",
    )
    add(
        "--list-qps-limit",
        type=_arg_type(_float, lambda v: v > 0, "must be > 0"),
        default=5.0,
        metavar="QPS",
        help="ListChatappTemplate requests per second (default 5)",
    )
    add(
        "--latency",
        type=_arg_type(_float, lambda v: v >= 0, "must be >= 0"),
        default=0.0,
        metavar="SECONDS",
        help="delay before each answer (default 0)",
    )
    add(
        "--max-range",
        type=_arg_type(parse_duration, lambda v: v > 0, "must be > 0"),
        default=30 * 86400.0,
        metavar="DURATION",
        help="longest End - Start (default 30d)",
    )
    add(
        "--faults",
        type=_arg_type(_faults_arg, lambda v: True, "bad fault spec"),
        default="",
        metavar="SPEC",
        help="e.g. throttle=0.05,5xx=0.02,timeout=0.01,reset=0.01,seed=7",
    )
    add("--shape", choices=SHAPES, default="per-bucket", help="answer shape (default per-bucket)")
    add(
        "--timeout-fault",
        type=_arg_type(_float, lambda v: v >= 0, "must be >= 0"),
        default=15.0,
        metavar="SECONDS",
        help="how long a timeout fault stays silent (default 15)",
    )
    return parser


def _parse_args(argv: Sequence[str]) -> tuple[SimulatorOptions, str, int]:
    args = _build_parser().parse_args(list(argv))
    host, port = args.listen
    try:
        options = SimulatorOptions(
            templates=args.templates,
            languages=args.languages,
            seed=args.seed,
            static=args.static,
            history_s=args.history,
            access_key_id=args.access_key_id,
            access_key_secret=args.access_key_secret,
            qps_limit=args.qps_limit,
            list_qps_limit=args.list_qps_limit,
            latency_s=args.latency,
            max_range_s=args.max_range,
            faults=args.faults,
            shape=args.shape,
            timeout_fault_s=args.timeout_fault,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    return options, host, port


def main(argv: list[str] | None = None) -> int:
    """`cams-exporter simulate ...`: serve until SIGINT or SIGTERM."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["simulate"]:
        args = args[1:]
    try:
        options, host, port = _parse_args(args)
    except _UsageError as exc:
        print(f"cams-exporter simulate: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        simulator = Simulator(options, host, port)
    except OSError as exc:
        print(
            f"cams-exporter simulate: error: cannot listen on {host}:{port}: {exc}", file=sys.stderr
        )
        return 1
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        if in_main
        else {}
    )
    simulator.start()
    _log.info(
        "CAMS simulator listening on %s (bound to %s; %d templates x %d languages, shape %s, %s,"
        " key id %s)",
        simulator.url,
        simulator.bound_address,
        options.templates,
        len(options.languages),
        options.shape,
        "static" if options.static else "live",
        options.access_key_id,
    )
    try:
        while not done.wait(0.5):
            pass
    finally:
        simulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _log.info("CAMS simulator stopped")
    return 0
