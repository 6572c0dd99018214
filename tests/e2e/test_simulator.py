"""The CAMS simulator over real HTTP on 127.0.0.1: the official SDK, raw signed calls, the CLI.

Its options and flags, refused before anything listens, are in tests/unit/simulator/."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
from alibabacloud_cams20200606 import models

from cams_simulator import Simulator
from exporter.cams import signing
from exporter.cams.model import DAY_MS, HALF_HOUR_MS
from tests.kit.oracle import sdk_client
from tests.kit.sim import SimFactory, simulators

ROOT = Path(__file__).resolve().parents[2]
VERSION = "2020-06-06"
METRIC = "GetChatappTemplateMetric"
LIST = "ListChatappTemplate"


# ---------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
def make_sim() -> Iterator[SimFactory]:
    """Start simulators on free ports; every one is stopped after the test."""
    with simulators() as make:
        yield make


@pytest.fixture
def sim(make_sim: SimFactory) -> Simulator:
    """A static simulator without rate limits in the way."""
    return make_sim(static=True, qps_limit=1000, list_qps_limit=1000)


def now_ms() -> int:
    return int(time.time() * 1000)


def day_floor(t_ms: int) -> int:
    return t_ms - t_ms % DAY_MS


def signed(
    sim: Simulator,
    query: dict[str, str] | None = None,
    action: str = LIST,
    key: str = "demo",
    secret: str = "demo-secret",
    **options: Any,
) -> dict[str, str]:
    """V3 signature headers for a request to `sim` (`options`: version, date, nonce, token)."""
    options.setdefault("version", VERSION)
    host = sim.endpoint
    return signing.sign_rpc_v3(
        host=host, action=action, query=query or {}, access_key_id=key, secret=secret, **options
    )


def call(
    sim: Simulator,
    action: str,
    params: dict[str, Any],
    *,
    key: str = "demo",
    secret: str = "demo-secret",
    date: str | None = None,
    nonce: str | None = None,
    offset_s: float = 0.0,
    extra: dict[str, str] | None = None,
    session: requests.Session | None = None,
    timeout: float = 10,
) -> requests.Response:
    """A V3-signed CAMS request made with `requests` and our own signing."""
    query = {name: str(value) for name, value in params.items()}
    stamp = date or signing.utc_timestamp(datetime.now(UTC) + timedelta(seconds=offset_s))
    headers = signed(
        sim, query=query, action=action, key=key, secret=secret, date=stamp, nonce=nonce
    )
    headers.update(extra or {})
    url = f"{sim.url}/?" + "&".join(f"{k}={signing.percent_encode(v)}" for k, v in query.items())
    return (session or requests).post(url, headers=headers, timeout=timeout)


def v1_params(
    action: str, params: dict[str, Any], *, secret: str = "demo-secret", **over: str
) -> dict[str, str]:
    signed = {
        "Action": action,
        "Version": VERSION,
        "Format": "JSON",
        "AccessKeyId": "demo",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": signing.new_nonce(),
        "Timestamp": signing.utc_timestamp(),
        **{name: str(value) for name, value in params.items()},
        **over,
    }
    signed["Signature"] = signing.v1_signature(signed, "POST", secret)
    return signed


def code_of(response: requests.Response) -> str:
    return str(response.json()["Code"])


def metrics(sim: Simulator, code: str, start: int, end: int, **extra: Any) -> list[dict[str, Any]]:
    response = call(sim, METRIC, {"TemplateCode": code, "Start": start, "End": end, **extra})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["Code"] == "OK"
    return list(body["Data"])


# ---------------------------------------------------------------------------------------------
# the official SDK, V3 (default) and V1 (signature_algorithm="v2")


@pytest.mark.parametrize("v1", [False, True], ids=["v3", "v1"])
def test_sdk_lists_every_template_by_paging_and_reads_metrics(sim: Simulator, v1: bool) -> None:
    client = sdk_client(sim, v2=v1)
    seen: list[tuple[str, str, str]] = []
    index, total = 1, None
    while total is None or (index - 1) * 7 < total:
        page = models.ListChatappTemplateRequestPage(index=index, size=7)
        request = models.ListChatappTemplateRequest(cust_space_id="cams-test", page=page)
        body = client.list_chatapp_template(request).body
        assert body.code == "OK" and body.success is True
        total = body.total
        seen += [(t.template_code, t.language, t.template_name) for t in body.list_template]
        index += 1
    expected = [(t.code, t.language, t.name) for t in sim.templates()]
    assert total == 40 and seen == expected

    code = expected[0][0]
    end = now_ms()
    start = end - 5 * DAY_MS
    request = models.GetChatappTemplateMetricRequest(
        template_code=code, language="en", granularity="DAILY", start=start, end=end
    )
    body = client.get_chatapp_template_metric(request).body
    assert body.code == "OK"
    raw = metrics(sim, code, start, end, Language="en", Granularity="DAILY")
    got = [
        {
            "TemplateCode": d.template_code,
            "Language": d.language,
            "SentCount": d.sent_count,
            "DeliveredCount": d.delivered_count,
            "ReadCount": d.read_count,
            "Cliented": [
                {"Type": c.type, "ButtonContent": c.button_content, "Count": c.count}
                for c in d.cliented
            ],
            "Start": d.start,
            "End": d.end,
        }
        for d in body.data
    ]
    assert got == raw and len(got) == 6


@pytest.mark.parametrize("v1", [False, True], ids=["v3", "v1"])
def test_sdk_errors_carry_the_api_code(sim: Simulator, v1: bool) -> None:
    request = models.ListChatappTemplateRequest(cust_space_id="cams-test")
    with pytest.raises(Exception) as wrong_secret:
        sdk_client(sim, secret="not-the-secret", v2=v1).list_chatapp_template(request)
    assert wrong_secret.value.code == "SignatureDoesNotMatch"  # type: ignore[attr-defined]
    with pytest.raises(Exception) as unknown_key:
        sdk_client(sim, key="nobody", v2=v1).list_chatapp_template(request)
    assert unknown_key.value.code == "InvalidAccessKeyId.NotFound"  # type: ignore[attr-defined]
    assert unknown_key.value.status_code == 404  # type: ignore[attr-defined]


@pytest.mark.parametrize("v1", [False, True], ids=["v3", "v1"])
def test_sdk_with_sts_token(sim: Simulator, v1: bool) -> None:
    sdk = sdk_client(sim, token="any-token", v2=v1)
    body = sdk.list_chatapp_template(models.ListChatappTemplateRequest()).body
    assert body.code == "OK" and body.total == 40


# ---------------------------------------------------------------------------------------------
# signature checks with raw requests


def test_timestamp_window_is_15_minutes(sim: Simulator) -> None:
    code = sim.templates()[0].code
    params = {"TemplateCode": code, "Start": now_ms() - DAY_MS, "End": now_ms()}
    for minutes in (16, -16):
        response = call(sim, METRIC, params, offset_s=minutes * 60)
        assert response.status_code == 400
        assert code_of(response) == "InvalidTimeStamp.Expired"
    assert call(sim, METRIC, params, offset_s=14 * 60).status_code == 200
    bad = call(sim, METRIC, params, date="yesterday")
    assert bad.status_code == 400 and code_of(bad) == "InvalidParameter"
    assert "x-acs-date" in bad.json()["Message"]


def test_clock_offset_moves_the_signature_window(sim: Simulator) -> None:
    sim.set_clock_offset(86400)
    assert code_of(call(sim, LIST, {})) == "InvalidTimeStamp.Expired"
    assert call(sim, LIST, {}, offset_s=86400).status_code == 200


def test_reused_nonce_is_refused(sim: Simulator) -> None:
    nonce = signing.new_nonce()
    assert call(sim, LIST, {}, nonce=nonce).status_code == 200
    again = call(sim, LIST, {}, nonce=nonce)
    assert again.status_code == 400 and code_of(again) == "SignatureNonceUsed"


def test_v3_refusals(sim: Simulator) -> None:
    assert code_of(call(sim, LIST, {}, secret="wrong")) == "SignatureDoesNotMatch"
    unknown = call(sim, LIST, {}, key="nobody")
    assert unknown.status_code == 404 and code_of(unknown) == "InvalidAccessKeyId.NotFound"
    assert "demo-secret" not in unknown.text

    # a signed header list without x-acs-signature-nonce
    query = {"Page": '{"Index":1,"Size":5}'}
    headers = signed(sim, query=query)
    nonce = headers.pop("x-acs-signature-nonce")
    headers["Authorization"] = signing.v3_authorization(
        method="POST",
        pathname="/",
        query=query,
        headers={k: v for k, v in headers.items() if k != "Authorization"},
        payload_hash=headers["x-acs-content-sha256"],
        access_key_id="demo",
        secret="demo-secret",
    )
    headers["x-acs-signature-nonce"] = nonce
    url = f"{sim.url}/?Page={quote(query['Page'], safe='')}"
    incomplete = requests.post(url, headers=headers, timeout=10)
    assert incomplete.status_code == 400 and code_of(incomplete) == "IncompleteSignature"

    # the query changed after signing
    headers = signed(sim, query=query)
    tampered = requests.post(f"{sim.url}/?Name=x", headers=headers, timeout=10)
    assert code_of(tampered) == "SignatureDoesNotMatch"

    # a body that does not match x-acs-content-sha256
    headers = signed(sim)
    wrong_body = requests.post(f"{sim.url}/", headers=headers, data=b"x", timeout=10)
    assert code_of(wrong_body) == "SignatureDoesNotMatch"

    # STS: x-acs-accesskey-id must be the credential's key id
    headers = signed(sim, security_token="token")
    assert requests.post(f"{sim.url}/", headers=headers, timeout=10).status_code == 200
    headers = signed(sim, security_token="token")
    headers["x-acs-accesskey-id"] = "someone-else"
    mismatch = requests.post(f"{sim.url}/", headers=headers, timeout=10)
    assert mismatch.status_code == 400 and code_of(mismatch) == "InvalidParameter"


def test_unknown_action_and_version(sim: Simulator) -> None:
    unknown = call(sim, "DeleteEverything", {})
    assert unknown.status_code == 404 and code_of(unknown) == "InvalidAction.NotFound"
    headers = signed(sim, version="2019-01-01")
    old = requests.post(f"{sim.url}/", headers=headers, timeout=10)
    assert old.status_code == 400 and code_of(old) == "InvalidParameter"


def test_v1_in_query_and_form_body(sim: Simulator) -> None:
    params = v1_params(LIST, {"Page": '{"Index":2,"Size":5}'})
    in_query = requests.post(f"{sim.url}/?{urlencode(params, quote_via=quote)}", timeout=10)
    assert in_query.status_code == 200 and in_query.json()["Total"] == 40
    assert len(in_query.json()["ListTemplate"]) == 5
    in_form = requests.post(f"{sim.url}/", data=v1_params(LIST, {}), timeout=10)
    assert in_form.status_code == 200 and code_of(in_form) == "OK"

    wrong = requests.post(f"{sim.url}/", data=v1_params(LIST, {}, secret="nope"), timeout=10)
    assert wrong.status_code == 400 and code_of(wrong) == "SignatureDoesNotMatch"
    late = datetime.now(UTC) - timedelta(minutes=16)
    expired = v1_params(LIST, {}, Timestamp=signing.utc_timestamp(late))
    assert code_of(requests.post(f"{sim.url}/", data=expired, timeout=10)) == (
        "InvalidTimeStamp.Expired"
    )
    replay = v1_params(LIST, {})
    assert requests.post(f"{sim.url}/", data=replay, timeout=10).status_code == 200
    again = requests.post(f"{sim.url}/", data=replay, timeout=10)
    assert code_of(again) == "SignatureNonceUsed"
    missing = v1_params(LIST, {})
    del missing["Timestamp"]
    response = requests.post(f"{sim.url}/", data=missing, timeout=10)
    assert code_of(response) == "MissingParameter" and "Timestamp" in response.json()["Message"]
    sha256 = v1_params(LIST, {}, SignatureMethod="HMAC-SHA256")
    assert code_of(requests.post(f"{sim.url}/", data=sha256, timeout=10)) == "InvalidParameter"


def test_error_body_is_alibabas(sim: Simulator) -> None:
    response = call(sim, LIST, {}, secret="wrong")
    assert response.headers["Content-Type"] == "application/json;charset=utf-8"
    body = response.json()
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert body["RequestId"] and "wrong" not in response.text and "demo-secret" not in response.text


# ---------------------------------------------------------------------------------------------
# GetChatappTemplateMetric parameters


def test_metric_parameter_checks(make_sim: SimFactory) -> None:
    sim = make_sim(static=True, max_range_s=7 * 86400)
    code = sim.templates()[0].code
    end = now_ms()

    def error(params: dict[str, Any]) -> tuple[int, str, str]:
        response = call(sim, METRIC, params)
        body = response.json()
        return response.status_code, body["Code"], body["Message"]

    status, code_, message = error(
        {"TemplateCode": code, "Start": end - 7 * DAY_MS - 1, "End": end}
    )
    assert (status, code_) == (400, "InvalidParameter") and "7d" in message
    assert call(sim, METRIC, {"TemplateCode": code, "Start": end - 7 * DAY_MS, "End": end}).ok
    assert error({"TemplateCode": code, "Start": end, "End": end})[1] == "InvalidParameter"
    assert error({"Start": end - 1, "End": end})[:2] == (400, "MissingParameter")
    assert "Start" in error({"TemplateCode": code, "End": end})[2]
    assert "Start" in error({"TemplateCode": code, "Start": "soon", "End": end})[2]
    weekly = {"TemplateCode": code, "Start": end - DAY_MS, "End": end, "Granularity": "WEEKLY"}
    assert error(weekly)[1:] == (
        "InvalidParameter",
        "The parameter \"Granularity\" is invalid: expected DAILY or HALF_HOUR, got 'WEEKLY'",
    )
    assert metrics(sim, "0" * 32, end - DAY_MS, end) == []
    assert metrics(sim, code, end - DAY_MS, end, Language="fr") == []
    assert {row["Language"] for row in metrics(sim, code, end - DAY_MS, end)} == {"en", "es"}
    assert {row["Language"] for row in metrics(sim, code, end - DAY_MS, end, Language="es")} == {
        "es"
    }


# ---------------------------------------------------------------------------------------------
# throttling


def test_throttling_above_the_limit(make_sim: SimFactory) -> None:
    sim = make_sim(static=True, qps_limit=20)
    code = sim.templates()[0].code
    params = {"TemplateCode": code, "Start": now_ms() - DAY_MS, "End": now_ms()}
    codes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        with requests.Session() as session:
            for _ in range(10):
                result = code_of(call(sim, METRIC, params, session=session))
                with lock:
                    codes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(codes) == 60
    assert set(codes) == {"OK", "System.LimitControl"}
    stats = sim.stats()["actions"][METRIC]
    assert stats["calls"] == 60 and stats["ok"] + stats["throttled"] == 60
    assert stats["throttled"] == codes.count("System.LimitControl") > 0
    assert 1 <= stats["max_ok_in_1s"] <= 20
    assert stats["max_calls_in_1s"] >= stats["max_ok_in_1s"]


def test_list_throttle_is_separate_and_per_action(make_sim: SimFactory) -> None:
    sim = make_sim(static=True)  # list_qps_limit 5
    with requests.Session() as session:
        results = [code_of(call(sim, LIST, {}, session=session)) for _ in range(8)]
        assert results[:5] == ["OK"] * 5 and "System.LimitControl" in results[5:]
        code = sim.templates()[0].code
        params = {"TemplateCode": code, "Start": now_ms() - DAY_MS, "End": now_ms()}
        assert code_of(call(sim, METRIC, params, session=session)) == "OK"
    stats = sim.stats()["actions"]
    assert stats[LIST]["max_ok_in_1s"] == 5
    assert stats[LIST]["throttled"] == results.count("System.LimitControl")
    assert stats[METRIC]["ok"] == 1


def test_stats_count_unauthenticated_calls_and_reset(sim: Simulator) -> None:
    for _ in range(3):
        call(sim, LIST, {}, secret="wrong")
    call(sim, LIST, {})
    stats = sim.stats()["actions"][LIST]
    assert (stats["calls"], stats["ok"], stats["errors"]) == (4, 1, 3)
    assert stats["max_calls_in_1s"] == 4
    over_http = requests.get(f"{sim.url}/_sim/stats", timeout=10).json()
    assert over_http["actions"][LIST]["calls"] == 4
    assert requests.post(f"{sim.url}/_sim/stats/reset", timeout=10).status_code == 200
    assert sim.stats() == {"actions": {}}


# ---------------------------------------------------------------------------------------------
# faults


@pytest.fixture
def faulty(make_sim: SimFactory) -> Simulator:
    return make_sim(static=True, qps_limit=1000, list_qps_limit=1000, timeout_fault_s=0.5)


def test_fault_throttle_and_5xx(faulty: Simulator) -> None:
    faulty.set_faults("throttle=1")
    response = call(faulty, LIST, {})
    assert response.status_code == 400 and code_of(response) == "System.LimitControl"
    assert faulty.stats()["actions"][LIST]["throttled"] == 1
    faulty.set_faults("5xx=1")
    seen = set()
    for _ in range(12):
        response = call(faulty, LIST, {})
        seen.add((response.status_code, code_of(response)))
    assert seen == {(503, "ServiceUnavailable"), (500, "InternalError")}


def test_fault_timeout_stays_silent_then_closes(faulty: Simulator) -> None:
    faulty.set_faults("timeout=1")
    with pytest.raises(requests.exceptions.ReadTimeout):
        call(faulty, LIST, {}, timeout=0.2)
    began = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        call(faulty, LIST, {}, timeout=5)
    assert 0.4 <= time.monotonic() - began < 4


def test_fault_reset_closes_without_bytes(faulty: Simulator) -> None:
    faulty.set_faults("reset=1")
    began = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        call(faulty, LIST, {})
    assert time.monotonic() - began < 2
    host, port = faulty.endpoint.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = signed(faulty)
    connection.request("POST", "/", headers=headers)
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        connection.getresponse()
    connection.close()


def test_fault_malformed_and_error200(faulty: Simulator) -> None:
    requests.post(f"{faulty.url}/_sim/faults", data="malformed=1", timeout=10).raise_for_status()
    response = call(faulty, LIST, {})
    assert response.status_code == 200 and response.text == "<html>upstream error</html>"
    with pytest.raises(ValueError):
        response.json()
    faulty.set_faults("error200=1")
    response = call(faulty, LIST, {})
    assert response.status_code == 200
    body = response.json()
    assert body["Code"] == "InternalError" and body["Message"] and body["RequestId"]
    # admin endpoints are neither faulted nor throttled
    assert requests.get(f"{faulty.url}/_sim/stats", timeout=10).status_code == 200
    bad = requests.post(f"{faulty.url}/_sim/faults", data="oops=1", timeout=10)
    assert bad.status_code == 400 and "oops" in bad.json()["error"]
    faulty.set_faults("")
    assert code_of(call(faulty, LIST, {})) == "OK"


def test_fault_draws_follow_the_seed(make_sim: SimFactory) -> None:
    def pattern(sim: Simulator) -> list[int]:
        with requests.Session() as session:
            return [call(sim, LIST, {}, session=session).status_code for _ in range(20)]

    options = {"static": True, "list_qps_limit": 1000, "faults": "5xx=0.4,seed=3"}
    first = pattern(make_sim(**options))
    assert first == pattern(make_sim(**options))
    assert {200} < set(first)


# ---------------------------------------------------------------------------------------------
# data model


def test_templates_catalog(sim: Simulator) -> None:
    rows = sim.templates()
    assert len(rows) == 40
    codes = [row.code for row in rows[::2]]
    assert len(set(codes)) == 20 and all(re.fullmatch(r"[0-9a-f]{32}", c) for c in codes)
    assert {row.audit_status for row in rows} == {"pass"}
    assert {row.template_type for row in rows} == {"WHATSAPP"}
    categories = [row.category for row in rows[::2]]
    assert [i for i, c in enumerate(categories) if c == "UTILITY"] == [3, 7, 11, 15, 19]
    assert all(re.fullmatch(r"[a-z]+_[a-z]+_[a-z]+_\d{3}", row.name) for row in rows)
    end = now_ms()
    types: set[str] = set()
    sizes: set[int] = set()
    for code in codes:
        rows_ = metrics(sim, code, end - DAY_MS, end, Language="en")
        sizes.add(len(rows_[0]["Cliented"]))
        types |= {c["Type"] for c in rows_[0]["Cliented"]}
    assert types == {
        "url_button",
        "quick_relpy_button",
        "quick_reply_button",
        "phone_number_button",
    }
    assert sizes <= {0, 1, 2, 3} and len(sizes) > 1


def test_static_answers_repeat_across_calls_and_simulators(make_sim: SimFactory) -> None:
    first = make_sim(static=True, seed=5)
    second = make_sim(static=True, seed=5)
    other = make_sim(static=True, seed=6)
    assert first.templates() == second.templates()
    code = first.templates()[0].code
    end = now_ms()
    start = end - 20 * DAY_MS
    answer = metrics(first, code, start, end)
    assert len(answer) == 2 * 21
    assert answer == metrics(first, code, start, end) == metrics(second, code, start, end)
    assert other.templates()[0].code != code


def _by_bucket(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(row["Language"], row["Start"]): row for row in rows}


def _check_order(row: dict[str, Any]) -> None:
    assert row["SentCount"] >= row["DeliveredCount"] >= row["ReadCount"] >= 0
    assert all(0 <= c["Count"] <= row["ReadCount"] for c in row["Cliented"])


def test_live_values_never_decrease(make_sim: SimFactory) -> None:
    sim = make_sim(qps_limit=1000)
    today = day_floor(now_ms())
    start, end = today - 5 * DAY_MS, today + DAY_MS
    for template in sim.templates()[:8:2]:
        previous: dict[tuple[str, int], dict[str, Any]] = {}
        for hours in (0, 1, 5, 12, 24, 30, 48, 72, 100):
            sim.set_clock_offset(hours * 3600)
            response = call(
                sim,
                METRIC,
                {"TemplateCode": template.code, "Start": start, "End": end},
                offset_s=hours * 3600,
            )
            rows = _by_bucket(response.json()["Data"])
            for key, row in rows.items():
                _check_order(row)
                before = previous.get(key)
                if before is not None:
                    for field in ("SentCount", "DeliveredCount", "ReadCount"):
                        assert row[field] >= before[field], (hours, key, field)
                    for now_c, then_c in zip(row["Cliented"], before["Cliented"], strict=True):
                        assert now_c["Count"] >= then_c["Count"]
            assert set(previous) <= set(rows)
            previous = rows
        # after 100 hours every day in range is final: today's bucket has grown fully
        assert len(previous) == 2 * 6


# Percent of a day's final reads and clicks shown during day +k (issue 24: Meta's 7-day read
# window as measured), the spec the simulator plays.
READ_SHARES = (55, 75, 85, 90, 94, 97, 99, 100)


def _day_rows(sim: Simulator, code: str, day_start: int, at_ms: int) -> dict[str, dict[str, Any]]:
    """The rows of one day by language, asked with the simulator's clock at `at_ms`."""
    offset_s = (at_ms - now_ms()) / 1000
    sim.set_clock_offset(offset_s)
    params = {"TemplateCode": code, "Start": day_start, "End": day_start + DAY_MS}
    response = call(sim, METRIC, params, offset_s=offset_s)
    assert response.status_code == 200, response.text
    return {row["Language"]: row for row in response.json()["Data"]}


@pytest.mark.parametrize("read_reset", [False, True], ids=["kept", "reset"])
def test_reads_and_clicks_arrive_over_a_week_then_may_reset(
    make_sim: SimFactory, read_reset: bool
) -> None:
    final_sim = make_sim(static=True, qps_limit=1000)
    sim = make_sim(qps_limit=1000, read_reset=read_reset)
    day = day_floor(now_ms()) - 2 * DAY_MS
    checked = 0
    for template in sim.templates()[:8:2]:
        finals = _day_rows(final_sim, template.code, day, now_ms())
        # Day 0 grows linearly up to 55%; the ordering holds at every moment.
        for fraction in (0.1, 0.5, 0.99):
            at = day + int(fraction * DAY_MS)
            for language, row in _day_rows(sim, template.code, day, at).items():
                _check_order(row)
                assert row["ReadCount"] <= finals[language]["ReadCount"] * 55 // 100
        for age_days in range(1, 11):
            at = day + age_days * DAY_MS + 3_600_000  # an hour into day +k
            for language, row in _day_rows(sim, template.code, day, at).items():
                _check_order(row)
                final = finals[language]
                assert row["SentCount"] == final["SentCount"], (age_days, language)
                if age_days >= 2:  # deliveries take a day and a half
                    assert row["DeliveredCount"] == final["DeliveredCount"], (age_days, language)
                share = READ_SHARES[min(age_days, 7)]
                reset = read_reset and age_days >= 8
                want_read = 0 if reset else final["ReadCount"] * share // 100
                assert row["ReadCount"] == want_read, (age_days, language)
                want_clicks = [0 if reset else c["Count"] * share // 100 for c in final["Cliented"]]
                assert [c["Count"] for c in row["Cliented"]] == want_clicks, (age_days, language)
                checked += bool(final["ReadCount"])
    sim.set_clock_offset(0)
    assert checked >= 20, "too few days with reads to tell"


def test_static_read_reset_answers_zero_reads_past_the_window_only(make_sim: SimFactory) -> None:
    kept = make_sim(static=True, qps_limit=1000)
    reset = make_sim(static=True, qps_limit=1000, read_reset=True)
    end = day_floor(now_ms()) + DAY_MS
    start = end - 12 * DAY_MS
    seen_reset = 0
    for template in kept.templates()[:6]:
        kept_rows = _by_bucket(metrics(kept, template.code, start, end))
        reset_rows = _by_bucket(metrics(reset, template.code, start, end))
        assert reset_rows == _by_bucket(metrics(reset, template.code, start, end))  # frozen
        assert kept_rows.keys() == reset_rows.keys()
        for key, row in kept_rows.items():
            other = reset_rows[key]
            assert (other["SentCount"], other["DeliveredCount"]) == (
                row["SentCount"],
                row["DeliveredCount"],
            )
            if key[1] < end - 8 * DAY_MS:  # day +8 or older at the end of the anchor day
                assert other["ReadCount"] == 0 and all(c["Count"] == 0 for c in other["Cliented"])
                seen_reset += row["ReadCount"] > 0
            else:
                assert other == row
    assert seen_reset > 0


def test_cli_read_reset_flag() -> None:
    from cams_simulator.cli import _parse_args

    assert _parse_args(["--read-reset"])[0].read_reset is True
    assert _parse_args([])[0].read_reset is False


def test_live_today_grows_and_future_is_absent(make_sim: SimFactory) -> None:
    sim = make_sim(qps_limit=1000)
    now = now_ms()
    rows = metrics(sim, sim.templates()[0].code, now - DAY_MS, now + 3 * DAY_MS)
    assert max(row["Start"] for row in rows) <= now
    assert all(row["End"] - row["Start"] == DAY_MS for row in rows)


def test_history_limits_the_data(make_sim: SimFactory) -> None:
    sim = make_sim(static=True, history_s=3 * 86400)
    end = now_ms()
    rows = []
    for template in sim.templates()[:6]:
        rows += metrics(sim, template.code, end - 10 * DAY_MS, end, Language=template.language)
    oldest = day_floor(end) - 3 * DAY_MS
    assert all(r["SentCount"] == 0 for r in rows if r["Start"] < oldest)
    assert any(r["SentCount"] > 0 for r in rows if r["Start"] >= oldest)


def _shape_sims(make_sim: SimFactory) -> dict[str, Simulator]:
    shapes = ("per-bucket", "aggregate", "utc8", "sparse")
    return {shape: make_sim(static=True, qps_limit=1000, shape=shape) for shape in shapes}


def test_shapes(make_sim: SimFactory) -> None:
    sims = _shape_sims(make_sim)
    end = now_ms()
    start = end - 29 * DAY_MS - 12345
    zero_rows = 0
    for template in sims["per-bucket"].templates()[:10:2]:
        code = template.code
        per_bucket = metrics(sims["per-bucket"], code, start, end)
        assert len(per_bucket) == 2 * 30
        for row in per_bucket:
            _check_order(row)
            assert row["Start"] % DAY_MS == 0 and row["End"] - row["Start"] == DAY_MS
        zero_rows += sum(1 for row in per_bucket if row["SentCount"] == 0)

        aggregate = metrics(sims["aggregate"], code, start, end)
        assert [row["Language"] for row in aggregate] == ["en", "es"]
        for row in aggregate:
            assert (row["Start"], row["End"]) == (start, end)
            mine = [r for r in per_bucket if r["Language"] == row["Language"]]
            for field in ("SentCount", "DeliveredCount", "ReadCount"):
                assert row[field] == sum(r[field] for r in mine)
            for i, click in enumerate(row["Cliented"]):
                assert click["Count"] == sum(r["Cliented"][i]["Count"] for r in mine)

        utc8 = metrics(sims["utc8"], code, start, end)
        assert utc8 and all(row["Start"] % DAY_MS == 16 * 3_600_000 for row in utc8)
        assert all(row["End"] - row["Start"] == DAY_MS for row in utc8)
        assert min(row["Start"] for row in utc8) <= start

        sparse = metrics(sims["sparse"], code, start, end)
        expected = []
        for row in per_bucket:
            if row["SentCount"] or row["DeliveredCount"] or row["ReadCount"]:
                clicks = [c for c in row["Cliented"] if c["Count"]]
                expected.append({**row, "Cliented": clicks})
        assert sparse == expected
    assert zero_rows > 0


def test_half_hour_buckets_sum_to_the_day(make_sim: SimFactory) -> None:
    sims = _shape_sims(make_sim)
    today = day_floor(now_ms())
    start, end = today - 3 * DAY_MS, today
    for template in sims["per-bucket"].templates()[:6:2]:
        code = template.code
        daily = metrics(sims["per-bucket"], code, start, end)
        halves = metrics(sims["per-bucket"], code, start, end, Granularity="HALF_HOUR")
        assert len(halves) == 2 * 3 * 48
        assert all(row["End"] - row["Start"] == HALF_HOUR_MS for row in halves)
        for day in daily:
            mine = [
                h
                for h in halves
                if h["Language"] == day["Language"] and day["Start"] <= h["Start"] < day["End"]
            ]
            assert len(mine) == 48
            for field in ("SentCount", "DeliveredCount", "ReadCount"):
                assert day[field] == sum(h[field] for h in mine)
            for i, click in enumerate(day["Cliented"]):
                assert click["Count"] == sum(h["Cliented"][i]["Count"] for h in mine)
        aggregate = metrics(sims["aggregate"], code, start, end, Granularity="HALF_HOUR")
        for row in aggregate:
            total = sum(d["SentCount"] for d in daily if d["Language"] == row["Language"])
            assert row["SentCount"] == total
        sparse = metrics(sims["sparse"], code, start, end, Granularity="HALF_HOUR")
        assert [r["Start"] for r in sparse] == [
            h["Start"] for h in halves if h["SentCount"] or h["DeliveredCount"] or h["ReadCount"]
        ]
        utc8 = metrics(sims["utc8"], code, start, end, Granularity="HALF_HOUR")
        assert all(row["Start"] % HALF_HOUR_MS == 0 for row in utc8)


def test_live_half_hour_buckets(make_sim: SimFactory) -> None:
    sim = make_sim(qps_limit=1000)
    now = now_ms()
    today = day_floor(now)
    code = sim.templates()[0].code
    halves = metrics(sim, code, today - DAY_MS, today + DAY_MS, Granularity="HALF_HOUR")
    assert max(h["Start"] for h in halves) <= now
    # Ordering holds per day, not per half hour: a message sent at 10:29 and delivered at 10:31
    # counts in two buckets (and the simulator spreads each count over the day on its own).
    for h in halves:
        assert min(h["SentCount"], h["DeliveredCount"], h["ReadCount"]) >= 0
    for language in {h["Language"] for h in halves}:
        mine = [h for h in halves if h["Language"] == language]
        sent, delivered, read = (
            sum(h[f] for h in mine) for f in ("SentCount", "DeliveredCount", "ReadCount")
        )
        assert sent >= delivered >= read
    daily = metrics(sim, code, today, today + DAY_MS)
    for row in daily:
        mine = [h for h in halves if h["Language"] == row["Language"] and h["Start"] >= today]
        for field in ("SentCount", "DeliveredCount", "ReadCount"):
            assert sum(h[field] for h in mine) <= row[field]


def test_many_templates_stay_fast(make_sim: SimFactory) -> None:
    began = time.monotonic()
    sim = make_sim(templates=5000, static=True, list_qps_limit=1000, qps_limit=1000)
    assert len(sim.templates()) == 10_000
    page = call(sim, LIST, {"Page": json.dumps({"Index": 100, "Size": 100})}).json()
    assert page["Total"] == 10_000 and len(page["ListTemplate"]) == 100
    code = page["ListTemplate"][-1]["TemplateCode"]
    end = now_ms()
    for _ in range(20):
        assert len(metrics(sim, code, end - 30 * DAY_MS, end)) == 2 * 31
    assert time.monotonic() - began < 10


# ---------------------------------------------------------------------------------------------
# ListChatappTemplate paging and filters


def test_paging_and_filters(sim: Simulator) -> None:
    def listing(**params: Any) -> dict[str, Any]:
        response = call(sim, LIST, params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    rows = sim.templates()
    first = listing()
    assert first["Total"] == 40 and len(first["ListTemplate"]) == 10
    assert set(first["ListTemplate"][0]) == {
        "TemplateCode",
        "TemplateName",
        "Language",
        "Category",
        "AuditStatus",
        "TemplateType",
        "Reason",
        "LastUpdateTime",
    }
    lower = listing(Page='{"index": 4, "size": 12}')
    assert [t["TemplateCode"] for t in lower["ListTemplate"]] == [r.code for r in rows[36:40]]
    beyond = listing(Page='{"Index": 9, "Size": 50}')
    assert beyond["Total"] == 40 and beyond["ListTemplate"] == []

    utility = listing(Category="UTILITY", Page='{"Index":1,"Size":100}')
    assert utility["Total"] == 10
    assert {t["Category"] for t in utility["ListTemplate"]} == {"UTILITY"}
    assert listing(Language="es")["Total"] == 20
    assert listing(Code=rows[4].code)["Total"] == 2
    assert listing(AuditStatus="pass")["Total"] == 40
    assert listing(AuditStatus="fail")["Total"] == 0
    assert listing(TemplateType="WHATSAPP")["Total"] == 40
    assert listing(TemplateType="VIBER")["Total"] == 0
    word = rows[0].name.split("_")[1]
    named = listing(Name=word, Page='{"Index":1,"Size":100}')
    expected = [r.code for r in rows if word in r.name]
    assert [t["TemplateCode"] for t in named["ListTemplate"]] == expected
    assert listing(Name=rows[2].name, Language="en")["Total"] == 1

    for page in ('{"Index":1,"Size":101}', '{"Index":0,"Size":10}', "not json", "[1]"):
        response = call(sim, LIST, {"Page": page})
        assert response.status_code == 400 and code_of(response) == "InvalidParameter"
        assert "Page" in response.json()["Message"]


# ---------------------------------------------------------------------------------------------
# admin endpoints and connections


def test_key_rotation_over_admin(sim: Simulator) -> None:
    response = requests.post(
        f"{sim.url}/_sim/keys",
        json={"access_key_id": "k2", "access_key_secret": "s2"},
        timeout=10,
    )
    assert response.status_code == 200 and "s2" not in response.text
    assert code_of(call(sim, LIST, {})) == "InvalidAccessKeyId.NotFound"
    assert code_of(call(sim, LIST, {}, key="k2", secret="s2")) == "OK"
    sim.set_keys("demo", "demo-secret")
    assert code_of(call(sim, LIST, {})) == "OK"


def test_clock_over_admin(sim: Simulator) -> None:
    response = requests.post(f"{sim.url}/_sim/clock", json={"offset_seconds": 7200}, timeout=10)
    assert response.status_code == 200
    assert code_of(call(sim, LIST, {}, offset_s=7200)) == "OK"
    bad = requests.post(f"{sim.url}/_sim/clock", json={"offset_seconds": "x"}, timeout=10)
    assert bad.status_code == 400


def test_delete_and_restore_templates(sim: Simulator) -> None:
    code = sim.templates()[0].code
    end = now_ms()
    assert metrics(sim, code, end - DAY_MS, end)
    response = requests.post(f"{sim.url}/_sim/templates/delete", json={"code": code}, timeout=10)
    assert response.status_code == 200
    assert len(sim.templates()) == 38 and code not in {t.code for t in sim.templates()}
    assert call(sim, LIST, {}).json()["Total"] == 38
    assert metrics(sim, code, end - DAY_MS, end) == []
    sim.restore_template(code)
    assert call(sim, LIST, {}).json()["Total"] == 40
    unknown = requests.post(f"{sim.url}/_sim/templates/delete", json={"code": "x"}, timeout=10)
    assert unknown.status_code == 404
    with pytest.raises(KeyError):
        sim.delete_template("x")


def test_keep_alive_and_stop_closes_pooled_connections(make_sim: SimFactory) -> None:
    sim = make_sim(static=True, list_qps_limit=1000)
    host, port = sim.endpoint.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    for _ in range(3):
        headers = signed(sim)
        connection.request("POST", "/", headers=headers)
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["Code"] == "OK"
    connection.close()

    session = requests.Session()
    assert call(sim, LIST, {}, session=session).status_code == 200
    sim.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        call(sim, LIST, {}, session=session, timeout=3)
    session.close()


def test_latency(make_sim: SimFactory) -> None:
    sim = make_sim(static=True, latency_s=0.3)
    began = time.monotonic()
    assert call(sim, LIST, {}).status_code == 200
    assert time.monotonic() - began >= 0.3


# ---------------------------------------------------------------------------------------------
# command line


def test_cli_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys; from cams_simulator import main; sys.exit(main(sys.argv[1:]))"
    argv = ["--listen", "127.0.0.1:0", "--static", "--templates", "3", "--languages", "en"]
    process = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert found, line
        stats = requests.get(f"{found.group(1)}/_sim/stats", timeout=5)
        assert stats.status_code == 200 and stats.json() == {"actions": {}}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
