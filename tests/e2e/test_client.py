"""Our CAMS client over real HTTP against the simulator: every shape, paging, rate, faults."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import requests

from cams_simulator import Simulator, SimulatorOptions
from exporter.cams.client import LIST_ACTION as LIST
from exporter.cams.client import METRIC_ACTION as METRIC
from exporter.cams.client import CamsClient, ListFilters, RequestEvent
from exporter.cams.errors import CamsError
from exporter.cams.model import DAY_MS, button_type_label
from exporter.cams.ratelimit import RateLimiter
from exporter.cams.retry import RetryPolicy
from exporter.config import StaticCredentials
from tests.kit.calls import call_metric_for
from tests.kit.oracle import sdk_client, sdk_list, sdk_sum
from tests.kit.sim import day_floor, running, simulator_process

CREDS = StaticCredentials("demo", "demo-secret")


def make_client(
    sim_url: str,
    *,
    creds: StaticCredentials = CREDS,
    qps: float = 50,
    list_qps: float = 5,
    timeout: float = 5.0,
    retries: int = 4,
    events: list[RequestEvent] | None = None,
) -> CamsClient:
    return CamsClient(
        endpoint=sim_url,
        credentials=creds,
        limiters={METRIC: RateLimiter(qps), LIST: RateLimiter(list_qps)},
        timeout_s=timeout,
        retry=RetryPolicy(max_retries=retries, base_s=0.05, cap_s=0.5),
        observer=events.append if events is not None else None,
    )


@pytest.fixture(params=["per-bucket", "aggregate", "utc8", "sparse"])
def shaped(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    with running(
        SimulatorOptions(templates=9, static=True, shape=request.param, list_qps_limit=100)
    ) as sim:
        yield sim


def test_lists_every_template_across_pages_like_the_sdk(shaped: Simulator) -> None:
    client = make_client(shaped.url, list_qps=50)
    ours = client.list_templates(ListFilters(cust_space_id="cams-demo"), page_size=4).rows
    theirs = sdk_list(sdk_client(shaped), size=5)
    assert len(ours) == 18 == len(theirs)
    assert {(t.code, t.language) for t in ours} == {(r.template_code, r.language) for r in theirs}
    assert all(t.name and t.category and t.audit_status == "pass" for t in ours)
    marketing = client.list_templates(
        ListFilters(cust_space_id="cams-demo", category="MARKETING")
    ).rows
    assert 0 < len(marketing) < len(ours)
    assert {t.category for t in marketing} == {"MARKETING"}


def test_metrics_equal_what_the_sdk_reads(shaped: Simulator) -> None:
    """Chunked reads (max_range 4 days over 10 days) sum to the SDK's one-call sum."""
    client = make_client(shaped.url)
    sdk = sdk_client(shaped)
    now = int(time.time() * 1000)
    start = day_floor(now) - 9 * DAY_MS
    for template in shaped.templates()[:6]:
        rows = client.template_metrics(
            code=template.code,
            language=template.language,
            start_ms=start,
            end_ms=now,
            max_range_ms=4 * DAY_MS,
            cust_space_id="cams-demo",
        )
        # Day-aligned chunks never split a UTC bucket; a UTC+8 bucket straddling a chunk
        # boundary comes back in both chunks, and counts once per bucket start.
        by_bucket = {
            (r.start_ms if shaped.options.shape != "aggregate" else i): r
            for i, r in enumerate(rows)
        }
        truth = sdk_sum(sdk, template.code, template.language, start, now)
        assert sum(r.sent for r in by_bucket.values()) == truth.sent
        assert sum(r.delivered for r in by_bucket.values()) == truth.delivered
        assert sum(r.read for r in by_bucket.values()) == truth.read
        clicks: dict[str, int] = {}
        for r in by_bucket.values():
            for c in r.clicks:
                assert button_type_label(c.button_type) in {"url", "quick_reply", "phone_number"}
                clicks[c.content] = clicks.get(c.content, 0) + c.count
        assert {k: v for k, v in clicks.items() if v} == {
            k: v for k, v in truth.clicks.items() if v
        }
        if shaped.options.shape == "aggregate":
            assert len(rows) == 3  # one row per chunk
        if shaped.options.shape == "sparse":
            assert all(r.sent or r.delivered or r.read for r in rows)
        if shaped.options.shape == "utc8":
            assert all(r.start_ms % DAY_MS == 16 * 3_600_000 for r in rows)


def test_no_one_second_window_exceeds_the_rate() -> None:
    """16 threads, qps 40, for about 4 seconds, counted on the simulator's side."""
    with simulator_process("--templates", "4", "--static") as sim:
        url = sim.url
        client = make_client(url, qps=40)
        template = client.list_templates(ListFilters(cust_space_id="cams-demo")).rows[0]
        requests.post(f"{url}/_sim/stats/reset", timeout=5)
        errors = call_metric_for(client, template, 4.0, threads=16)
        stats = requests.get(f"{url}/_sim/stats", timeout=5).json()["actions"][
            "GetChatappTemplateMetric"
        ]
        print(
            f"\nrate test: {stats['calls']} calls, most in any 1-second window: "
            f"{stats['max_calls_in_1s']} (limit 40), throttled {stats['throttled']}"
        )
        assert errors == []
        assert stats["calls"] >= 120
        assert stats["max_calls_in_1s"] <= 40
        assert stats["throttled"] == 0


@pytest.mark.parametrize("fault", ["throttle", "5xx", "timeout", "reset", "malformed", "error200"])
def test_retries_recover_from_each_retryable_fault(fault: str) -> None:
    options = SimulatorOptions(
        templates=2, static=True, faults=f"{fault}=0.4,seed=3", timeout_fault_s=1.0
    )
    with running(options) as sim:
        events: list[RequestEvent] = []
        # Short enough to meet the 1 s timeout fault; for the other faults a loaded machine's
        # slow honest answer must not count as a timeout.
        timeout = 0.3 if fault == "timeout" else 5.0
        client = make_client(sim.url, timeout=timeout, retries=12, events=events)
        template = sim.templates()[0]
        now = int(time.time() * 1000)
        for _ in range(8):
            rows = client.metric_chunk(
                code=template.code, language=template.language, start_ms=now - DAY_MS, end_ms=now
            )
            assert rows
        failed = [e for e in events if e.code != "OK"]
        assert failed, "the fault never fired"
        assert len([e for e in events if e.code == "OK"]) == 8
        expected = {
            "throttle": {"System.LimitControl"},
            "5xx": {"ServiceUnavailable", "InternalError"},
            "timeout": {"Timeout"},
            "reset": {"ConnectionError"},
            "malformed": {"MalformedResponse"},
            "error200": {"InternalError"},
        }[fault]
        assert {e.code for e in failed} <= expected
        if fault == "throttle":
            assert all(e.throttled for e in failed)


@pytest.mark.parametrize(
    ("creds", "code"),
    [
        (StaticCredentials("demo", "wrong-secret"), "SignatureDoesNotMatch"),
        (StaticCredentials("nobody", "demo-secret"), "InvalidAccessKeyId.NotFound"),
    ],
)
def test_auth_errors_fail_fast_without_retrying(creds: StaticCredentials, code: str) -> None:
    with running(SimulatorOptions(templates=1, static=True)) as sim:
        events: list[RequestEvent] = []
        client = make_client(sim.url, creds=creds, events=events)
        with pytest.raises(CamsError) as caught:
            client.list_templates(ListFilters(cust_space_id="cams-demo"))
        assert caught.value.code == code
        assert caught.value.attempts == 1
        assert len(events) == 1
        assert sim.stats()["actions"]["ListChatappTemplate"]["calls"] == 1
        assert "wrong-secret" not in str(caught.value)
        assert caught.value.request_id


def test_parameter_errors_are_not_retried() -> None:
    with running(SimulatorOptions(templates=1, static=True, max_range_s=2 * 86400)) as sim:
        events: list[RequestEvent] = []
        client = make_client(sim.url, events=events)
        template = sim.templates()[0]
        with pytest.raises(CamsError) as caught:
            client.metric_chunk(
                code=template.code, language=template.language, start_ms=0, end_ms=5 * DAY_MS
            )
        assert caught.value.code.startswith("InvalidParameter")
        assert len(events) == 1


class _RetryAfterHandler(BaseHTTPRequestHandler):
    """A stand-in gateway: throttles the first call with x-acs-retry-after, then answers OK."""

    protocol_version = "HTTP/1.1"
    calls: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        self.calls.append(time.monotonic())
        if len(self.calls) == 1:
            body = json.dumps({"Code": "Throttling.User", "Message": "slow down"}).encode()
            self.send_response(400)
            self.send_header("x-acs-retry-after", "600")
        else:
            body = json.dumps({"Code": "OK", "Data": []}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_retry_after_header_is_honoured() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RetryAfterHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = make_client(f"http://127.0.0.1:{server.server_address[1]}")
        assert client.metric_chunk(code="t", language="en", start_ms=0, end_ms=DAY_MS) == ()
        calls = _RetryAfterHandler.calls
        assert len(calls) == 2
        assert calls[1] - calls[0] >= 0.6  # 600 ms, not the 50 ms base backoff
    finally:
        server.shutdown()
        server.server_close()
