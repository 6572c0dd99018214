"""The `sender_health` section of an account: defaults, opt-in, one line per problem with the
documented limits as ceilings, the example config and docs/configuration.md, and the calls per
hour it costs."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from exporter.cams.actions import (
    HEALTH_ACTION,
    LIST_ACTION,
    METRIC_ACTION,
    PHONE_METRIC_ACTION,
    PHONE_NUMBERS_ACTION,
)
from exporter.cli import check_config_main
from exporter.config import (
    ConfigError,
    HealthStatusConfig,
    PhoneNumberMetricsConfig,
    PhoneNumbersConfig,
    SenderHealth,
    load_config,
    parse_config,
)
from exporter.senders.plan import calls_per_hour
from tests.kit.configs import EXAMPLE
from tests.kit.procs import ROOT

ENV = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "AKID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "SECRET-X"}
KEYS = (
    "sender_health",
    "enabled",
    "phone_numbers",
    "phone_number_metrics",
    "health_status",
    "interval",
    "qps",
    "templates",
    "max_error_series",
)


def account_yaml(sender_health: str | None, spaces: str = "[{cust_space_id: cams-1}]") -> str:
    text = (
        "accounts:\n"
        "  - name: main\n"
        "    credentials: {access_key_id: a, access_key_secret: b}\n"
        f"    spaces: {spaces}\n"
    )
    if sender_health is not None:
        text += f"    sender_health: {sender_health}\n"
    return text


def sender_health(text: str | None) -> SenderHealth | None:
    return parse_config(account_yaml(text), env={}).accounts[0].sender_health


def problems(text: str, spaces: str = "[{cust_space_id: cams-1}]") -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(account_yaml(text, spaces), env={})
    return info.value.problems


def test_absent_or_off_is_templates_only() -> None:
    assert sender_health(None) is None
    assert sender_health("false") is None
    assert sender_health("{enabled: false, health_status: {qps: 3}}") is None


def test_defaults() -> None:
    expected = SenderHealth(
        phone_numbers=PhoneNumbersConfig(interval_s=300.0, qps=1.0),
        phone_number_metrics=PhoneNumberMetricsConfig(enabled=True, interval_s=None, qps=10.0),
        health_status=HealthStatusConfig(
            enabled=True, interval_s=900.0, qps=2.0, templates=True, max_error_series=100
        ),
    )
    assert sender_health("true") == expected
    assert sender_health("{}") == expected
    assert sender_health("{enabled: true}") == expected


def test_every_key_is_read() -> None:
    health = sender_health(
        "{phone_numbers: {interval: 1m, qps: 10}, phone_number_metrics: {enabled: false,"
        " interval: 2m, qps: 50}, health_status: {enabled: true, interval: 1h, qps: 5,"
        " templates: false, max_error_series: 7}}"
    )
    assert health == SenderHealth(
        PhoneNumbersConfig(60.0, 10.0),
        PhoneNumberMetricsConfig(False, 120.0, 50.0),
        HealthStatusConfig(True, 3600.0, 5.0, False, 7),
    )
    off = sender_health("{health_status: false, phone_number_metrics: false}")
    assert off is not None
    assert not off.health_status.enabled and not off.phone_number_metrics.enabled


def test_the_documented_limits_are_the_ceilings() -> None:
    assert problems(
        "{phone_numbers: {qps: 11}, phone_number_metrics: {qps: 51}, health_status: {qps: 5.5}}"
    ) == (
        "accounts[0].sender_health.phone_numbers.qps: must be between 0.1 and 10, got 11",
        "accounts[0].sender_health.phone_number_metrics.qps: must be between 0.1 and 50, got 51",
        "accounts[0].sender_health.health_status.qps: must be between 0.1 and 5, got 5.5",
    )


def test_bad_values_one_line_each() -> None:
    assert problems(
        "{phone_numbers: {interval: 5s}, health_status: {interval: 30s, templates: maybe,"
        " max_error_series: -1, colour: red}, phone_number_metrics: 3, extra: 1}"
    ) == (
        "accounts[0].sender_health.extra: unknown key (expected one of: enabled, phone_numbers,"
        " phone_number_metrics, health_status)",
        "accounts[0].sender_health.phone_numbers.interval: must be at least 10s, got 5s",
        "accounts[0].sender_health.phone_number_metrics: must be a mapping, got 3",
        "accounts[0].sender_health.health_status.colour: unknown key (expected one of: enabled,"
        " interval, qps, templates, max_error_series)",
        "accounts[0].sender_health.health_status.templates: must be true or false, got 'maybe'",
        "accounts[0].sender_health.health_status.max_error_series: must be between 0 and 10000,"
        " got -1",
        "accounts[0].sender_health.health_status.interval: must be at least 1m, got 30s",
    )
    assert problems("yes please") == (
        "accounts[0].sender_health: must be true, false or a mapping, got 'yes please'",
    )
    assert problems("{helth_status: {}}")[0].startswith(
        "accounts[0].sender_health.helth_status: unknown key (did you mean 'health_status'?)"
    )


def test_health_status_needs_a_cust_space_id() -> None:
    spaces = "[{cust_space_id: cams-1}, {discover: true}]"
    assert problems("true", spaces) == (
        "accounts[0].spaces[1].cust_space_id: required when sender_health.health_status is "
        "enabled (GetWhatsappHealthStatus needs a CustSpaceId)",
    )
    config = parse_config(account_yaml("{health_status: false}", spaces), env={})
    assert config.accounts[0].sender_health is not None


def test_check_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(account_yaml("{health_status: {qps: 8}}"), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert check_config_main(str(path), out, err, {}) == 2
    assert err.getvalue() == (
        "accounts[0].sender_health.health_status.qps: must be between 0.1 and 5, got 8\n"
    )


def test_example_and_docs_document_every_key() -> None:
    config = load_config(str(EXAMPLE), ENV)
    assert config.accounts[0].sender_health == SenderHealth(
        PhoneNumbersConfig(300.0, 1.0),
        PhoneNumberMetricsConfig(True, 300.0, 10.0),
        HealthStatusConfig(True, 900.0, 2.0, True, 100),
    )
    example = EXAMPLE.read_text(encoding="utf-8")
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = page.split("\n## Sender health\n", 1)[1].split("\n## ", 1)[0]
    for key in KEYS:
        assert re.search(rf"(^|\s){key}:", example, re.MULTILINE), key
        assert f"`{key}`" in section or f"{key}:" in section, key


def test_calls_per_hour_at_1000_templates_and_10_numbers() -> None:
    """The figures docs/sender-health.md gives: 1,000 template-language units in one space,
    10 numbers, every default (poll.interval 5m, discovery 1h, numbers 5m, health 15m at 2/s)."""
    config = parse_config(account_yaml("true"), env={})
    plan = calls_per_hour(config.accounts[0], config.poll, units=1000, numbers=10)
    assert plan == {
        METRIC_ACTION: 1000 * 12,
        LIST_ACTION: 10,  # 10 pages of 100, once an hour
        PHONE_NUMBERS_ACTION: 12,
        PHONE_METRIC_ACTION: 10 * 12,
        HEALTH_ACTION: (1 + 10 + 1000) * 4,  # one round every 15 minutes
    }
    grouped = calls_per_hour(config.accounts[0], config.poll, units=1000, numbers=10, templates=500)
    assert grouped[METRIC_ACTION] == 500 * 12  # 500 templates x 2 languages, one call each
    assert grouped[HEALTH_ACTION] == plan[HEALTH_ACTION]  # health asks per template-language
    slow = parse_config(account_yaml("{health_status: {qps: 1}}"), env={})
    plan = calls_per_hour(slow.accounts[0], slow.poll, units=1000, numbers=10)
    assert plan[HEALTH_ACTION] == pytest.approx(3600 / 1.03)  # the round outlasts 15m at 1/s
    none = parse_config(account_yaml(None), env={})
    assert set(calls_per_hour(none.accounts[0], none.poll, units=1000, numbers=10)) == {
        METRIC_ACTION,
        LIST_ACTION,
    }
