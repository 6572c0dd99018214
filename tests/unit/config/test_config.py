"""Tests for exporter.config: parsing, defaults, env expansion, rules, secrets, check-config."""

from __future__ import annotations

import builtins
import copy
import dataclasses
import datetime as dt
import functools
import io
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.cli import check_config_main
from exporter.config import (
    Config,
    ConfigError,
    PollConfig,
    StaticCredentials,
    default_credentials_provider,
    load_config,
    parse_config,
)
from exporter.config.schema import Account, Filters, Space, StateConfig, TemplateSpec
from tests.kit.configs import EXAMPLE

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SECRET = "SUPERSECRET-123"
ENV = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "AKID-EXAMPLE",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
}
PROBLEM_LINE = re.compile(r"^[A-Za-z_\[\]0-9.<>-]+: .+$")
EXTRA = "'default' needs the optional extra: pip install 'cams-exporter[credentials]'"


def minimal() -> dict[str, Any]:
    """The smallest valid document, as a tree that tests modify before dumping."""
    return {
        "accounts": [
            {
                "name": "main",
                "credentials": {"access_key_id": "AKID", "access_key_secret": "s3cr3t"},
                "spaces": [{"cust_space_id": "cams-1"}],
            }
        ]
    }


def dump(tree: Any) -> str:
    return yaml.dump(tree, Dumper=yaml.CSafeDumper, sort_keys=False)  # (libyaml: the fuzz's speed)


def parse(tree: Any, env: Mapping[str, str] | None = None) -> Config:
    return parse_config(tree if isinstance(tree, str) else dump(tree), env if env else {})


def problems(tree: Any, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse(tree, env)
    for line in info.value.problems:
        assert PROBLEM_LINE.match(line), line
    return info.value.problems


def with_change(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    tree = minimal()
    change(tree)
    return tree


def account(tree: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = tree["accounts"][0]
    return result


def space(tree: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = account(tree)["spaces"][0]
    return result


# --------------------------------------------------------------------------------------------------
# The example and the defaults


def test_example_parses_with_the_documented_environment() -> None:
    config = load_config(str(EXAMPLE), ENV)
    assert config.poll == PollConfig(
        interval_s=300.0,
        granularity="DAILY",
        lookback_s=8 * 86400.0,
        max_range_s=30 * 86400.0,
        counters_since=dt.date(2026, 1, 1),
        discovery_interval_s=3600.0,
        timeout_s=10.0,
        max_retries=4,
        idle_interval_s=3600.0,
        idle_after_s=3 * 86400.0,
    )
    assert config.state == StateConfig(path="/var/lib/cams-exporter/state.json")
    (main,) = config.accounts
    assert main.name == "main"
    assert main.endpoint == "https://cams.ap-southeast-1.aliyuncs.com"
    assert main.credentials == StaticCredentials("AKID-EXAMPLE", SECRET, None)
    assert (main.qps, main.list_qps) == (40.0, 4.0)
    first, second = main.spaces
    assert first.label == "cams-xxxx"
    assert first.isv_code is None
    assert first.discover is True
    assert first.filters.template_type == "WHATSAPP"
    assert first.filters.category == "MARKETING"
    assert first.filters.audit_status == "pass"
    assert first.filters.name_regex is not None
    assert first.filters.name_regex.pattern == ".*"
    assert first.templates == (TemplateSpec("744c4b5c79c9432497a075bdfca36bf5", "en", "WHATSAPP"),)
    assert second.discover is False
    assert second.templates == (TemplateSpec("744c4b5c79c9432497a075bdfca36bf5", "es"),)


def test_example_takes_the_security_token_from_the_environment() -> None:
    config = load_config(str(EXAMPLE), {**ENV, "ALIBABA_CLOUD_SECURITY_TOKEN": "sts-token"})
    credentials = config.accounts[0].credentials
    assert credentials is not None
    assert credentials.security_token == "sts-token"


def test_example_without_environment_names_both_variables_and_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(EXAMPLE), {})
    assert info.value.problems == (
        "accounts[0].credentials.access_key_id: "
        "environment variable ALIBABA_CLOUD_ACCESS_KEY_ID is not set",
        "accounts[0].credentials.access_key_secret: "
        "environment variable ALIBABA_CLOUD_ACCESS_KEY_SECRET is not set",
    )


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = [
        "interval", "granularity", "lookback", "max_range", "counters_since",
        "discovery_interval", "timeout", "max_retries", "idle_interval", "idle_after", "path",
        "name", "region", "endpoint",
        "credentials", "access_key_id", "access_key_secret", "security_token", "qps", "list_qps",
        "spaces", "cust_space_id", "isv_code", "discover", "filters", "template_type", "category",
        "audit_status", "name_regex", "templates", "code", "language", "type",
    ]  # fmt: skip
    for key in keys:
        assert re.search(rf"(^|[\s{{#]){key}:", text, re.MULTILINE), key


def test_defaults() -> None:
    config = parse(minimal())
    assert config.poll == PollConfig()
    assert config.poll.interval_s == 300
    assert config.poll.granularity == "DAILY"
    assert config.poll.lookback_s == 8 * 86400
    assert config.poll.max_range_s == 30 * 86400
    assert config.poll.counters_since is None
    assert config.poll.discovery_interval_s == 3600
    assert config.poll.timeout_s == 10.0
    assert config.poll.max_retries == 4
    assert config.poll.idle_interval_s == 3600
    assert config.poll.idle_after_s == 3 * 86400
    assert config.state == StateConfig(path=None)
    assert config.accounts == (
        Account(
            name="main",
            region="ap-southeast-1",
            endpoint="https://cams.ap-southeast-1.aliyuncs.com",
            credentials=StaticCredentials("AKID", "s3cr3t"),
            qps=40.0,
            list_qps=4.0,
            spaces=(Space("cams-1", None, True, Filters(), ()),),
        ),
    )


def test_null_sections_take_defaults() -> None:
    tree = minimal()
    tree.update(poll=None, state=None)
    space(tree).update(filters=None, templates=None, discover=None)
    config = parse(tree)
    assert config.poll == PollConfig()
    assert config.state == StateConfig()
    assert config.accounts[0].spaces[0] == Space("cams-1", None, True, Filters(), ())


def test_space_label_is_empty_without_cust_space_id() -> None:
    config = parse(with_change(lambda t: account(t).update(spaces=[{"isv_code": "isv-1"}])))
    (only,) = config.accounts[0].spaces
    assert only.cust_space_id is None
    assert only.isv_code == "isv-1"
    assert only.label == ""


def test_region_sets_the_default_endpoint() -> None:
    config = parse(with_change(lambda t: account(t).update(region="cn-hangzhou")))
    assert config.accounts[0].region == "cn-hangzhou"
    assert config.accounts[0].endpoint == "https://cams.cn-hangzhou.aliyuncs.com"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:18080", "http://127.0.0.1:18080"),
        ("https://cams.example.com", "https://cams.example.com"),
        ("https://cams.example.com/", "https://cams.example.com"),
        ("HTTP://localhost:8080", "http://localhost:8080"),
        ("localhost:8443", "https://localhost:8443"),
        ("cams.internal", "https://cams.internal"),
        ("http://[::1]:18080", "http://[::1]:18080"),
    ],
)
def test_endpoint_override(given: str, expected: str) -> None:
    config = parse(with_change(lambda t: account(t).update(endpoint=given)))
    assert config.accounts[0].endpoint == expected


@pytest.mark.parametrize(
    "given",
    ["ftp://host", "http://", "http://host:99999", "http://host/path", "host name", "http://u:p@h"],
)
def test_bad_endpoint(given: str) -> None:
    assert problems(with_change(lambda t: account(t).update(endpoint=given))) == (
        "accounts[0].endpoint: must be http://host[:port], https://host[:port] or host:port, "
        + ("got a URL with user info" if "@" in given else f"got {given!r}"),
    )


def test_endpoint_password_is_never_echoed() -> None:
    (problem,) = problems(
        with_change(lambda t: account(t).update(endpoint="http://user:S3CR3T-pw@127.0.0.1:1"))
    )
    assert "S3CR3T-pw" not in problem and "user info" in problem


def test_extra_poll_keys() -> None:
    config = parse(with_change(lambda t: t.update(poll={"timeout": "500ms", "max_retries": 0})))
    assert config.poll.timeout_s == 0.5
    assert config.poll.max_retries == 0


def test_granularity_is_case_insensitive() -> None:
    config = parse(with_change(lambda t: t.update(poll={"granularity": "half_hour"})))
    assert config.poll.granularity == "HALF_HOUR"


def test_template_type_defaults_and_is_upper_cased() -> None:
    templates = [
        {"code": "c1", "language": "en"},
        {"code": "c2", "language": "en", "type": "viber"},
    ]
    config = parse(with_change(lambda t: space(t).update(templates=templates)))
    assert config.accounts[0].spaces[0].templates == (
        TemplateSpec("c1", "en", "WHATSAPP"),
        TemplateSpec("c2", "en", "VIBER"),
    )


def test_counters_since_accepts_a_yaml_date_and_a_string() -> None:
    text = dump(minimal()) + "poll:\n  counters_since: 2026-01-01\n"
    assert parse_config(text, {}).poll.counters_since == dt.date(2026, 1, 1)
    text = dump(minimal()) + "poll:\n  counters_since: '2025-06-30'\n"
    assert parse_config(text, {}).poll.counters_since == dt.date(2025, 6, 30)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert parse(with_change(lambda t: t.update(poll={"counters_since": today}))).poll


def test_several_accounts_and_yaml_merge_keys() -> None:
    text = """
base: &base
  credentials: {access_key_id: a, access_key_secret: b}
  spaces: [{cust_space_id: cams-1}]
accounts:
  - <<: *base
    name: one
  - <<: *base
    name: two
    qps: 10
"""
    # `base` is not a config key: merge keys work, but the anchor must live in a known key.
    assert problems(text) == ("base: unknown key (expected one of: poll, state, accounts)",)
    text = """
accounts:
  - &one
    name: one
    credentials: {access_key_id: a, access_key_secret: b}
    spaces: [{cust_space_id: cams-1}]
  - <<: *one
    name: two
    qps: 10
"""
    config = parse(text)
    assert [(a.name, a.qps) for a in config.accounts] == [("one", 40.0), ("two", 10.0)]


def test_dataclasses_are_frozen() -> None:
    config = parse(minimal())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.accounts[0].qps = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.poll.interval_s = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# Environment expansion


def test_env_expansion_plain_default_and_escape() -> None:
    tree = minimal()
    account(tree).update(name="${NAME}", region="${REGION:-eu-central-1}")
    space(tree).update(cust_space_id="cams-$${ID}", filters={"name_regex": "^promo_.*$"})
    config = parse(tree, {"NAME": "prod"})
    (acct,) = config.accounts
    assert acct.name == "prod"
    assert type(acct.name) is str  # no internal marker type leaks out
    assert acct.region == "eu-central-1"
    assert acct.spaces[0].cust_space_id == "cams-${ID}"
    pattern = acct.spaces[0].filters.name_regex
    assert pattern is not None
    assert pattern.pattern == "^promo_.*$"


def test_env_default_also_used_for_an_empty_variable() -> None:
    tree = with_change(lambda t: account(t).update(region="${REGION:-eu-central-1}"))
    assert parse(tree, {"REGION": ""}).accounts[0].region == "eu-central-1"
    assert parse(tree, {"REGION": "cn-shanghai"}).accounts[0].region == "cn-shanghai"


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMS_TEST_ACCOUNT", "from-os-environ")
    text = dump(with_change(lambda t: account(t).update(name="${CAMS_TEST_ACCOUNT}")))
    assert parse_config(text).accounts[0].name == "from-os-environ"


def test_secret_with_yaml_special_characters_is_safe() -> None:
    nasty = "a: b # c {d} [e], 'f' \"g\" &h *i !j |k >l %m @n `o` \\p\n- q"
    tree = with_change(
        lambda t: account(t)["credentials"].update(access_key_secret="${SECRET_VALUE}")
    )
    credentials = parse(tree, {"SECRET_VALUE": nasty}).accounts[0].credentials
    assert credentials is not None
    assert credentials.access_key_secret == nasty


def test_missing_variable_names_variable_and_key() -> None:
    tree = minimal()
    account(tree)["credentials"]["access_key_secret"] = "${ALIBABA_CLOUD_ACCESS_KEY_SECRET}"
    assert problems(tree) == (
        "accounts[0].credentials.access_key_secret: "
        "environment variable ALIBABA_CLOUD_ACCESS_KEY_SECRET is not set",
    )


def test_several_missing_variables_in_one_value() -> None:
    tree = with_change(lambda t: space(t).update(cust_space_id="${A}-${B}-${A}"))
    assert problems(tree) == (
        "accounts[0].spaces[0].cust_space_id: environment variables A, B are not set",
    )


@pytest.mark.parametrize("value", ["${1BAD}", "${UNTERMINATED", "${}", "${A-b}"])
def test_invalid_variable_reference(value: str) -> None:
    tree = with_change(lambda t: account(t).update(region=value))
    assert problems(tree) == (
        "accounts[0].region: invalid ${...} reference "
        "(write ${NAME}, ${NAME:-default}, or $$ for a $)",
    )


def test_empty_security_token_means_no_token() -> None:
    tree = with_change(lambda t: account(t)["credentials"].update(security_token="${TOKEN:-}"))
    credentials = parse(tree).accounts[0].credentials
    assert credentials is not None
    assert credentials.security_token is None
    credentials = parse(tree, {"TOKEN": "tok"}).accounts[0].credentials
    assert credentials is not None
    assert credentials.security_token == "tok"


def test_numbers_and_booleans_may_come_from_the_environment() -> None:
    tree = minimal()
    account(tree).update(qps="${QPS}", list_qps="${LIST_QPS:-2.5}")
    space(tree).update(discover="${DISCOVER}", templates=[{"code": "c", "language": "en"}])
    tree["poll"] = {"max_retries": "${RETRIES:-7}"}
    config = parse(tree, {"QPS": "12", "DISCOVER": "False"})
    assert (config.accounts[0].qps, config.accounts[0].list_qps) == (12.0, 2.5)
    assert config.accounts[0].spaces[0].discover is False
    assert config.poll.max_retries == 7


def test_numbers_from_the_environment_are_still_checked() -> None:
    tree = with_change(lambda t: account(t).update(qps="${QPS}"))
    assert problems(tree, {"QPS": "fast"}) == (
        "accounts[0].qps: must be a number, got ${QPS} (from the environment)",
    )
    assert problems(tree, {"QPS": "80"}) == ("accounts[0].qps: must be between 1 and 50, got 80",)


def test_keys_are_not_expanded() -> None:
    text = dump(minimal()) + "${POLL}: {}\n"
    assert problems(text, {"POLL": "poll"}) == (
        "<config>: unknown key '${POLL}' (expected one of: poll, state, accounts)",
    )


@pytest.mark.parametrize("value", ["off", False, 0, "0", "0s", "0m", "${IDLE}"])
def test_idle_after_zero_or_off_reads_every_unit_every_cycle(value: object) -> None:
    tree = minimal()
    tree["poll"] = {"idle_after": value}
    assert parse(dump(tree), {"IDLE": "off"}).poll.idle_after_s is None


def test_idle_settings() -> None:
    tree = minimal()
    tree["poll"] = {"idle_after": "12h", "idle_interval": "30m", "interval": "30m"}
    poll = parse(tree).poll
    assert (poll.idle_after_s, poll.idle_interval_s) == (12 * 3600, 1800)
    # unset: 1h, or poll.interval when that is longer (never an error for a key not written)
    tree["poll"] = {"interval": "2h"}
    assert parse(tree).poll.idle_interval_s == 7200


# --------------------------------------------------------------------------------------------------
# Every rule, with the exact key path


def _set_poll(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda t: t.setdefault("poll", {}).update(values)


def _set_account(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda t: account(t).update(values)


def _set_space(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda t: space(t).update(values)


def _set_credentials(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda t: account(t)["credentials"].update(values)


def _set_template(**values: Any) -> Callable[[dict[str, Any]], None]:
    def change(tree: dict[str, Any]) -> None:
        template = {"code": "c1", "language": "en"}
        template.update(values)
        space(tree)["templates"] = [{k: v for k, v in template.items() if v is not _DROP}]

    return change


def _drop(container: Callable[[dict[str, Any]], dict[str, Any]], key: str) -> Any:
    return lambda t: container(t).pop(key)


_DROP = object()

RULES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    # accounts[].qps / list_qps
    ("qps-high", _set_account(qps=80), "accounts[0].qps: must be between 1 and 50, got 80"),
    ("qps-low", _set_account(qps=0.5), "accounts[0].qps: must be between 1 and 50, got 0.5"),
    ("qps-type", _set_account(qps="fast"), "accounts[0].qps: must be a number, got 'fast'"),
    ("qps-quoted", _set_account(qps="40"), "accounts[0].qps: must be a number, got '40'"),
    ("qps-bool", _set_account(qps=True), "accounts[0].qps: must be a number, got true"),
    ("qps-list", _set_account(qps=[1]), "accounts[0].qps: must be a number, got a list"),
    (
        "list_qps-high",
        _set_account(list_qps=6),
        "accounts[0].list_qps: must be between 1 and 5, got 6",
    ),
    (
        "list_qps-type",
        _set_account(list_qps={"a": 1}),
        "accounts[0].list_qps: must be a number, got a mapping",
    ),
    # accounts[].name / region
    ("name-missing", _drop(account, "name"), "accounts[0].name: required"),
    ("name-null", _set_account(name=None), "accounts[0].name: required"),
    ("name-empty", _set_account(name=""), "accounts[0].name: must not be empty"),
    (
        "name-pattern",
        _set_account(name="my account"),
        "accounts[0].name: must match [a-zA-Z0-9_.-]+, got 'my account'",
    ),
    ("name-type", _set_account(name=7), "accounts[0].name: must be a string, got 7 (quote it)"),
    (
        "region-pattern",
        _set_account(region="AP South"),
        "accounts[0].region: must be a region id such as ap-southeast-1, got 'AP South'",
    ),
    # credentials
    (
        "credentials-missing",
        _drop(account, "credentials"),
        "accounts[0].credentials: required: "
        "'default' or a mapping with access_key_id and access_key_secret",
    ),
    (
        "credentials-word",
        _set_account(credentials="env"),
        "accounts[0].credentials: "
        "must be 'default' or a mapping with access_key_id and access_key_secret, got a string",
    ),
    (
        "credentials-list",
        _set_account(credentials=["a", "b"]),
        "accounts[0].credentials: "
        "must be 'default' or a mapping with access_key_id and access_key_secret, got a list",
    ),
    (
        "credentials-no-id",
        _drop(lambda t: account(t)["credentials"], "access_key_id"),
        "accounts[0].credentials.access_key_id: required",
    ),
    (
        "credentials-no-secret",
        _drop(lambda t: account(t)["credentials"], "access_key_secret"),
        "accounts[0].credentials.access_key_secret: required",
    ),
    (
        "credentials-empty-secret",
        _set_credentials(access_key_secret=""),
        "accounts[0].credentials.access_key_secret: must not be empty",
    ),
    (
        "credentials-secret-type",
        _set_credentials(access_key_secret=12345),
        "accounts[0].credentials.access_key_secret: must be a string, got a number",
    ),
    # spaces
    (
        "spaces-missing",
        _drop(account, "spaces"),
        "accounts[0].spaces: at least one space is required",
    ),
    ("spaces-empty", _set_account(spaces=[]), "accounts[0].spaces: at least one space is required"),
    (
        "spaces-type",
        _set_account(spaces={"cust_space_id": "x"}),
        "accounts[0].spaces: must be a list of spaces, got a mapping",
    ),
    ("space-type", _set_account(spaces=["x"]), "accounts[0].spaces[0]: must be a mapping, got 'x'"),
    (
        "discover-type",
        _set_space(discover="maybe"),
        "accounts[0].spaces[0].discover: must be true or false, got 'maybe'",
    ),
    (
        "discover-false-needs-templates",
        _set_space(discover=False),
        "accounts[0].spaces[0].templates: at least one template is required when discover is false",
    ),
    (
        "discover-false-empty-templates",
        _set_space(discover=False, templates=[]),
        "accounts[0].spaces[0].templates: at least one template is required when discover is false",
    ),
    (
        "cust_space_id-type",
        _set_space(cust_space_id=12),
        "accounts[0].spaces[0].cust_space_id: must be a string, got 12 (quote it)",
    ),
    (
        "isv_code-type",
        _set_space(isv_code=["x"]),
        "accounts[0].spaces[0].isv_code: must be a string, got a list",
    ),
    # filters
    (
        "filters-type",
        _set_space(filters="all"),
        "accounts[0].spaces[0].filters: must be a mapping, got 'all'",
    ),
    (
        "filters-category-type",
        _set_space(filters={"category": 3}),
        "accounts[0].spaces[0].filters.category: must be a string, got 3 (quote it)",
    ),
    (
        "name_regex",
        _set_space(filters={"name_regex": "promo_(["}),
        "accounts[0].spaces[0].filters.name_regex: invalid regular expression: "
        "unterminated character set at position 7",
    ),
    # templates
    (
        "templates-type",
        _set_space(templates="c1"),
        "accounts[0].spaces[0].templates: must be a list of templates ({code, language, type}), "
        "got 'c1'",
    ),
    (
        "template-code-empty",
        _set_template(code=""),
        "accounts[0].spaces[0].templates[0].code: must not be empty",
    ),
    (
        "template-code-missing",
        _set_template(code=_DROP),
        "accounts[0].spaces[0].templates[0].code: required",
    ),
    (
        "template-code-number",
        _set_template(code=123456),
        "accounts[0].spaces[0].templates[0].code: must be a string, got 123456 (quote it)",
    ),
    (
        "template-language-empty",
        _set_template(language="  "),
        "accounts[0].spaces[0].templates[0].language: must not be empty",
    ),
    (
        "template-language-missing",
        _set_template(language=_DROP),
        "accounts[0].spaces[0].templates[0].language: required",
    ),
    (
        "template-type-type",
        _set_template(type=1),
        "accounts[0].spaces[0].templates[0].type: must be a string, got 1 (quote it)",
    ),
    # poll
    (
        "granularity",
        _set_poll(granularity="HOURLY"),
        "poll.granularity: must be DAILY or HALF_HOUR, got 'HOURLY'",
    ),
    (
        "interval-format",
        _set_poll(interval="5 minutes"),
        "poll.interval: must be a duration such as 30s, 5m, 1h, 3d, got '5 minutes'",
    ),
    (
        "interval-unitless",
        _set_poll(interval=300),
        "poll.interval: must be a duration such as 30s, 5m, 1h, 3d, "
        "got 300 (add a unit, e.g. 300s)",
    ),
    ("interval-zero", _set_poll(interval="0s"), "poll.interval: must be greater than 0, got '0s'"),
    ("interval-short", _set_poll(interval="5s"), "poll.interval: must be at least 10s, got 5s"),
    (
        "lookback-zero",
        _set_poll(lookback="0d"),
        "poll.lookback: must be greater than 0, got '0d'",
    ),
    (
        "lookback-over-max_range",
        _set_poll(lookback="31d"),
        "poll.lookback: must not exceed poll.max_range (30d), got 31d",
    ),
    (
        "default-lookback-over-max_range",
        _set_poll(max_range="1d"),
        "poll.lookback: must not exceed poll.max_range (1d), got 8d (the default)",
    ),
    (
        "max_range-zero",
        _set_poll(max_range="0h"),
        "poll.max_range: must be greater than 0, got '0h'",
    ),
    (
        "discovery_interval",
        _set_poll(discovery_interval="0m"),
        "poll.discovery_interval: must be greater than 0, got '0m'",
    ),
    (
        "discovery_interval-type",
        _set_poll(discovery_interval=True),
        "poll.discovery_interval: must be a duration such as 30s, 5m, 1h, 3d, got true",
    ),
    ("timeout-zero", _set_poll(timeout="0s"), "poll.timeout: must be greater than 0, got '0s'"),
    (
        "idle_interval-under-interval",
        _set_poll(interval="10m", idle_interval="5m"),
        "poll.idle_interval: must be at least poll.interval (10m), got 5m",
    ),
    (
        "idle_interval-under-default-interval",
        _set_poll(idle_interval="1m"),
        "poll.idle_interval: must be at least poll.interval (5m), got 1m",
    ),
    (
        "idle_interval-zero",
        _set_poll(idle_interval="0s"),
        "poll.idle_interval: must be greater than 0, got '0s'",
    ),
    (
        "idle_after-unitless",
        _set_poll(idle_after=3),
        "poll.idle_after: must be a duration such as 30s, 5m, 1h, 3d, got 3 "
        "(add a unit, e.g. 300s)",
    ),
    (
        "idle_after-on",
        _set_poll(idle_after=True),
        "poll.idle_after: must be a duration such as 30s, 5m, 1h, 3d, got true",
    ),
    (
        "idle_after-format",
        _set_poll(idle_after="3 days"),
        "poll.idle_after: must be a duration such as 30s, 5m, 1h, 3d, got '3 days'",
    ),
    (
        "max_retries-high",
        _set_poll(max_retries=11),
        "poll.max_retries: must be between 0 and 10, got 11",
    ),
    (
        "max_retries-negative",
        _set_poll(max_retries=-1),
        "poll.max_retries: must be between 0 and 10, got -1",
    ),
    (
        "max_retries-float",
        _set_poll(max_retries=2.5),
        "poll.max_retries: must be an integer, got 2.5",
    ),
    (
        "counters_since-format",
        _set_poll(counters_since="yesterday"),
        "poll.counters_since: must be an ISO date (YYYY-MM-DD), got 'yesterday'",
    ),
    (
        "counters_since-future",
        _set_poll(counters_since="2999-01-01"),
        "poll.counters_since: must not be in the future, got 2999-01-01",
    ),
    (
        "counters_since-type",
        _set_poll(counters_since=20260101),
        "poll.counters_since: must be an ISO date (YYYY-MM-DD), got 20260101",
    ),
    (
        "counters_since-timestamp",
        _set_poll(counters_since=dt.datetime(2026, 1, 1, 12, 0)),
        "poll.counters_since: must be a date (YYYY-MM-DD) without a time, "
        "got '2026-01-01 12:00:00'",
    ),
    ("poll-type", lambda t: t.update(poll=[1]), "poll: must be a mapping, got a list"),
    # state
    ("state-type", lambda t: t.update(state="/tmp/x"), "state: must be a mapping, got '/tmp/x'"),
    (
        "state-path-type",
        lambda t: t.update(state={"path": 5}),
        "state.path: must be a string, got 5 (quote it)",
    ),
    # accounts
    ("accounts-missing", lambda t: t.pop("accounts"), "accounts: at least one account is required"),
    (
        "accounts-null",
        lambda t: t.update(accounts=None),
        "accounts: at least one account is required",
    ),
    (
        "accounts-empty",
        lambda t: t.update(accounts=[]),
        "accounts: at least one account is required",
    ),
    (
        "accounts-type",
        lambda t: t.update(accounts={"name": "main"}),
        "accounts: must be a list of accounts, got a mapping",
    ),
    (
        "account-type",
        lambda t: t.update(accounts=[None]),
        "accounts[0]: must be a mapping, got null",
    ),
]


@pytest.mark.parametrize(("change", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule(change: Callable[[dict[str, Any]], None], expected: str) -> None:
    assert problems(with_change(change)) == (expected,)


def test_duplicate_account_names() -> None:
    def change(tree: dict[str, Any]) -> None:
        tree["accounts"] += [copy.deepcopy(account(tree)), copy.deepcopy(account(tree))]

    assert problems(with_change(change)) == (
        "accounts[1].name: duplicate account name 'main' (also accounts[0])",
        "accounts[2].name: duplicate account name 'main' (also accounts[0])",
    )


def test_duplicate_spaces_and_templates() -> None:
    templates = [{"code": "c", "language": "en"}, {"code": "c", "language": "en", "type": "X"}]
    tree = with_change(
        _set_account(
            spaces=[{"cust_space_id": "s"}, {"cust_space_id": "s", "templates": templates}]
        )
    )
    assert problems(tree) == (
        "accounts[0].spaces[1].templates[1]: duplicate template 'c' in language 'en' "
        "(also templates[0])",
        "accounts[0].spaces[1]: duplicate space 's' (also spaces[0])",
    )
    assert problems(with_change(_set_account(spaces=[{}, {"isv_code": "i"}]))) == (
        "accounts[0].spaces[1]: duplicate space without cust_space_id (also spaces[0])",
    )


def test_root_must_be_a_mapping() -> None:
    assert problems("- a\n- b\n") == (
        "<config>: must be a mapping with poll, state and accounts, got a list",
    )
    assert problems("") == (
        "<config>: the config is empty (expected a mapping with poll, state and accounts)",
    )
    assert problems("# only a comment\n") == problems("")


# --------------------------------------------------------------------------------------------------
# Unknown keys


UNKNOWN_KEYS: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (lambda t: t.update(acounts=1), "acounts: unknown key (did you mean 'accounts'?)"),
    (_set_poll(intervall="5m"), "poll.intervall: unknown key (did you mean 'interval'?)"),
    (_set_poll(Interval="5m"), "poll.Interval: unknown key (did you mean 'interval'?)"),
    (_set_poll(max_rang="5d"), "poll.max_rang: unknown key (did you mean 'max_range'?)"),
    (lambda t: t.update(state={"paht": "x"}), "state.paht: unknown key (did you mean 'path'?)"),
    (_set_account(regoin="x"), "accounts[0].regoin: unknown key (did you mean 'region'?)"),
    (
        _set_credentials(access_key_secrt="x"),
        "accounts[0].credentials.access_key_secrt: unknown key (did you mean 'access_key_secret'?)",
    ),
    (
        _set_space(discovr=True),
        "accounts[0].spaces[0].discovr: unknown key (did you mean 'discover'?)",
    ),
    (
        _set_space(filters={"categroy": "x"}),
        "accounts[0].spaces[0].filters.categroy: unknown key (did you mean 'category'?)",
    ),
    (
        _set_template(langauge="en"),
        "accounts[0].spaces[0].templates[0].langauge: unknown key (did you mean 'language'?)",
    ),
    (
        _set_poll(zzz=1),
        "poll.zzz: unknown key (expected one of: interval, granularity, lookback, max_range, "
        "counters_since, discovery_interval, timeout, max_retries, idle_interval, idle_after)",
    ),
    (
        lambda t: t.update({"my key": 1}),
        "<config>: unknown key 'my key' (expected one of: poll, state, accounts)",
    ),
    (
        _set_poll(**{"x y": 1}),
        "poll: unknown key 'x y' (expected one of: interval, granularity, lookback, max_range, "
        "counters_since, discovery_interval, timeout, max_retries, idle_interval, idle_after)",
    ),
]


@pytest.mark.parametrize(("change", "expected"), UNKNOWN_KEYS)
def test_unknown_keys_with_did_you_mean(
    change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    assert problems(with_change(change)) == (expected,)


def test_unknown_non_string_key() -> None:
    assert problems(dump(minimal()) + "1: x\n") == (
        "<config>: unknown key 1 (expected one of: poll, state, accounts)",
    )
    assert problems(dump(minimal()) + "null: x\n") == (
        "<config>: unknown key null (expected one of: poll, state, accounts)",
    )


# --------------------------------------------------------------------------------------------------
# Several problems at once


def test_all_problems_are_reported_at_once() -> None:
    tree = minimal()
    tree["poll"] = {"intervall": "5m", "granularity": "weekly", "lookback": "40d"}
    account(tree).update(qps=80, list_qps="x")
    account(tree)["credentials"].pop("access_key_secret")
    space(tree).update(discover=False, filters={"name_regex": "("})
    tree["accounts"].append({"name": "main", "spaces": []})
    assert problems(tree) == (
        "poll.intervall: unknown key (did you mean 'interval'?)",
        "poll.granularity: must be DAILY or HALF_HOUR, got 'weekly'",
        "poll.lookback: must not exceed poll.max_range (30d), got 40d",
        "accounts[0].credentials.access_key_secret: required",
        "accounts[0].qps: must be between 1 and 50, got 80",
        "accounts[0].list_qps: must be a number, got 'x'",
        "accounts[0].spaces[0].filters.name_regex: invalid regular expression: "
        "missing ), unterminated subpattern at position 0",
        "accounts[0].spaces[0].templates: at least one template is required when discover is false",
        "accounts[1].credentials: required: "
        "'default' or a mapping with access_key_id and access_key_secret",
        "accounts[1].spaces: at least one space is required",
        "accounts[1].name: duplicate account name 'main' (also accounts[0])",
    )


def test_config_error_string_is_one_line_per_problem() -> None:
    error = ConfigError(["a: one", "b: two\nwith a newline"])
    assert error.problems == ("a: one", "b: two with a newline")
    assert str(error) == "a: one\nb: two with a newline"
    assert ConfigError("x: y").problems == ("x: y",)


# --------------------------------------------------------------------------------------------------
# YAML errors and files


def test_yaml_syntax_error_is_one_line_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("poll:\n  interval: 5m\n  lookback: [3d\naccounts: []\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    (line,) = info.value.problems
    assert line.startswith(f"{path}: invalid YAML at line 4, column 9: ")
    assert "\n" not in str(info.value)
    assert "Traceback" not in line


def test_yaml_syntax_error_in_a_fixture_file() -> None:
    path = CONFIGS / "bad-indentation.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert info.value.problems == (
        f"{path}: invalid YAML at line 4, column 26: mapping values are not allowed here",
    )


def test_yaml_error_hints_at_unquoted_variables_in_flow_style() -> None:
    text = "accounts:\n  - credentials: {access_key_id: ${ID}}\n"
    (line,) = problems(text)
    assert line.startswith("<config>: invalid YAML at line 2, column ")
    assert line.endswith("inside {...} or [...] write ${...} values in quotes")


def test_impossible_yaml_date_is_a_problem_named_by_its_key() -> None:
    assert problems("poll:\n  counters_since: 2026-13-45\n")[0] == (
        "poll.counters_since: must be an ISO date (YYYY-MM-DD), got '2026-13-45'"
    )


def test_yaml_tabs_and_control_characters() -> None:
    (line,) = problems("poll:\n\tinterval: 5m\n")
    assert line.startswith("<config>: invalid YAML at line 2, column 1: ")
    (line,) = problems("poll: \x00\n")
    assert line.startswith("<config>: invalid YAML at character 6: ")


def test_nonexistent_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(missing))
    assert info.value.problems == (f"{missing}: file not found",)


def test_directory_and_non_utf8_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert info.value.problems == (f"{tmp_path}: is a directory, not a config file",)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"poll: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(binary))
    assert info.value.problems == (f"{binary}: not UTF-8 text (bad byte at offset 6)",)


def test_fixture_with_several_problems() -> None:
    path = CONFIGS / "many-problems.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert info.value.problems == (
        "poll.interval: must be at least 10s, got 1s",
        "state.path: must be a string, got a list",
        "accounts[0].name: must match [a-zA-Z0-9_.-]+, got 'main account'",
        "accounts[0].endpoint: must be http://host[:port], https://host[:port] or host:port, "
        "got 'ftp://example.com'",
        "accounts[0].credentials.access_key_secret: environment variable CAMS_SECRET is not set",
        "accounts[0].spaces[0].templates[0].language: required",
    )


# --------------------------------------------------------------------------------------------------
# check-config


def test_check_config_ok() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert check_config_main(str(EXAMPLE), out, err, ENV) == 0
    assert out.getvalue() == "config OK: 1 accounts, 2 spaces\n"
    assert err.getvalue() == ""


def test_check_config_problems(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    tree = with_change(_set_account(qps=80, list_qps=9))
    path.write_text(dump(tree), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert check_config_main(str(path), out, err, {}) == 2
    assert out.getvalue() == ""
    assert err.getvalue() == (
        "accounts[0].qps: must be between 1 and 50, got 80\n"
        "accounts[0].list_qps: must be between 1 and 5, got 9\n"
    )


def test_check_config_missing_file(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert check_config_main(str(tmp_path / "x.yaml"), out, err, {}) == 2
    assert err.getvalue() == f"{tmp_path / 'x.yaml'}: file not found\n"


def test_check_config_uses_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ALIBABA_CLOUD_SECURITY_TOKEN", raising=False)
    out, err = io.StringIO(), io.StringIO()
    assert check_config_main(str(EXAMPLE), out, err) == 0


# --------------------------------------------------------------------------------------------------
# Secrets never leak


def _both(
    first: Callable[[dict[str, Any]], None], second: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    def change(tree: dict[str, Any]) -> None:
        first(tree)
        second(tree)

    return change


SECRET_PLACEMENTS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("secret-as-list", _set_credentials(access_key_secret=[SECRET])),
    ("secret-as-mapping", _set_credentials(access_key_secret={"value": SECRET})),
    ("secret-in-nested-list", _set_credentials(access_key_secret=[[SECRET, 1]])),
    ("id-as-list", _set_credentials(access_key_id=[SECRET])),
    ("token-as-list", _set_credentials(security_token=[SECRET])),
    ("credentials-as-string", _set_account(credentials=SECRET)),
    ("credentials-as-list", _set_account(credentials=[SECRET])),
    ("secret-as-key", _set_credentials(**{SECRET: "x"})),
    ("secret-as-key-with-value", _set_credentials(**{SECRET: SECRET})),
    ("secret-at-unknown-key", _set_credentials(secret_key=SECRET)),
    ("secret-misplaced-on-account", _set_account(access_key_secret=SECRET)),
    (
        "right-typed-secret-beside-a-problem",
        _both(_set_credentials(access_key_secret=SECRET), _set_account(qps=99)),
    ),
    (
        "right-typed-everything-beside-a-problem",
        _both(
            _set_credentials(access_key_id=SECRET, access_key_secret=SECRET, security_token=SECRET),
            _set_space(discover="no"),
        ),
    ),
    ("secret-from-env-in-wrong-field", _set_account(qps="${ALIBABA_CLOUD_ACCESS_KEY_SECRET}")),
    ("secret-from-env-in-region", _set_account(region="${ALIBABA_CLOUD_ACCESS_KEY_SECRET}")),
    (
        "secret-from-env-as-duration",
        _set_poll(interval="${ALIBABA_CLOUD_ACCESS_KEY_SECRET}"),
    ),
]


@pytest.mark.parametrize(
    "change", [p[1] for p in SECRET_PLACEMENTS], ids=[p[0] for p in SECRET_PLACEMENTS]
)
def test_secret_never_appears_in_problems(
    change: Callable[[dict[str, Any]], None], tmp_path: Path
) -> None:
    tree = with_change(change)
    with pytest.raises(ConfigError) as info:
        parse(tree, ENV)
    error = info.value
    for text in (str(error), repr(error), *error.problems, *map(str, error.args)):
        assert SECRET not in text
    path = tmp_path / "config.yaml"
    path.write_text(dump(tree), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert check_config_main(str(path), out, err, ENV) == 2
    assert SECRET not in out.getvalue() + err.getvalue()


def test_secret_never_appears_in_repr_of_a_valid_config(tmp_path: Path) -> None:
    tree = with_change(_set_credentials(access_key_secret=SECRET, security_token=SECRET + "-token"))
    config = parse(tree)
    credentials = config.accounts[0].credentials
    assert credentials is not None
    assert credentials.access_key_secret == SECRET
    for text in (repr(config), str(config), repr(credentials), str(config.accounts)):
        assert SECRET not in text
    assert "AKID" in repr(credentials)  # the key id is not secret and helps debugging
    config = load_config(str(EXAMPLE), ENV)
    assert SECRET not in repr(config)
    out, err = io.StringIO(), io.StringIO()
    assert check_config_main(str(EXAMPLE), out, err, ENV) == 0
    assert SECRET not in out.getvalue() + err.getvalue()


def test_secret_in_a_yaml_syntax_error_line_is_not_shown() -> None:
    text = dump(minimal()) + f"poll: {{interval: 5m, lookback: [{SECRET}}}\n"
    (line,) = problems(text)
    assert SECRET not in line


# --------------------------------------------------------------------------------------------------
# Alibaba's default credential chain


def _block_credentials_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("alibabacloud_credentials"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_default_credentials_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    _block_credentials_package(monkeypatch)
    tree = with_change(_set_account(credentials="default"))
    tree["accounts"].append({**copy.deepcopy(account(tree)), "name": "second"})
    assert problems(tree) == (
        f"accounts[0].credentials: {EXTRA}",
        f"accounts[1].credentials: {EXTRA}",
    )
    with pytest.raises(ConfigError) as info:
        default_credentials_provider("accounts[1].credentials")
    assert info.value.problems == (f"accounts[1].credentials: {EXTRA}",)
    with pytest.raises(ConfigError) as info:
        default_credentials_provider()
    assert info.value.problems == (f"credentials: {EXTRA}",)


def test_default_credentials_parse_to_none() -> None:
    config = parse(with_change(_set_account(credentials="default")))
    assert config.accounts[0].credentials is None


def test_default_credentials_provider_reads_the_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    from alibabacloud_credentials.utils import auth_util

    def set_env(key_id: str, secret: str, token: str | None) -> None:
        # The library snapshots these variables when it is imported; set both views.
        for name, attribute, value in (
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "environment_access_key_id", key_id),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "environment_access_key_secret", secret),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "environment_security_token", token),
        ):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
            monkeypatch.setattr(auth_util, attribute, value)

    set_env("LTAI-first", SECRET, None)
    fetch = default_credentials_provider("accounts[0].credentials")
    assert callable(fetch)
    first = fetch()
    assert first == StaticCredentials("LTAI-first", SECRET, None)
    assert SECRET not in repr(first)
    set_env("STS-second", "rotated-secret", "sts-token")
    assert fetch() == StaticCredentials("STS-second", "rotated-secret", "sts-token")


def test_default_credentials_provider_with_the_older_api(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class OldClient:
        def get_access_key_id(self) -> str:
            calls.append("id")
            return f"id-{len(calls)}"

        def get_access_key_secret(self) -> str:
            return "secret"

        def get_security_token(self) -> str:
            return ""

    import exporter.config.credentials as config_module

    monkeypatch.setattr(config_module, "client_class", lambda: OldClient)
    fetch = default_credentials_provider()
    assert fetch() == StaticCredentials("id-1", "secret", None)
    assert fetch() == StaticCredentials("id-2", "secret", None)


# --------------------------------------------------------------------------------------------------
# Fuzzing: whatever the input, a Config or a ConfigError with well-formed lines


def _assert_config_or_clean_error(text: str) -> None:
    try:
        result = parse_config(text, ENV)
    except ConfigError as error:
        assert error.problems
        for line in error.problems:
            assert PROBLEM_LINE.match(line), line
            assert SECRET not in line
    else:
        assert isinstance(result, Config)


_YAML_ALPHABET = st.sampled_from(
    [
        *"abcxyz019 :-_.,{}[]\"'#&*!|>%@`?$\n\t\\",
        *["${", "${X}", "${ALIBABA_CLOUD_ACCESS_KEY_SECRET}", "$$", "  ", "\n  ", "\n- ", ": "],
        *["accounts", "poll", "spaces", "credentials", "default", "interval", "5m", "0s", "null"],
        *["2026-01-01", "2026-13-45", "true", "1e999", ".nan", "!!binary", "!!set", "&a", "*a"],
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    # The secret only ever arrives through the environment here: a value expanded from it must
    # never be echoed, wherever it lands.
    st.sampled_from(["5m", "0s", "default", "${X}", "${X:-1}", "$$", "DAILY", "("]),
    st.sampled_from(["", "x", "5"]).map(lambda s: s + "${ALIBABA_CLOUD_ACCESS_KEY_SECRET}"),
    st.just("${ALIBABA_CLOUD_ACCESS_KEY_SECRET:-d}"),
    st.dates(),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=12), st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_YAML_ALPHABET, max_size=40).map("".join))
def test_fuzz_random_yaml_ish_text(text: str) -> None:
    _assert_config_or_clean_error(text)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@functools.cache
def _parsed_example() -> Any:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def _example_tree() -> Any:
    """A fresh copy of the example config's tree, to mutate (parsed once per process)."""
    return copy.deepcopy(_parsed_example())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(min_value=0), st.sampled_from(["replace", "delete", "add"]), _VALUES),
        min_size=1,
        max_size=4,
    ),
    st.text(min_size=1, max_size=12),
)
def test_fuzz_mutations_of_the_example(mutations: list[tuple[int, str, Any]], new_key: str) -> None:
    tree = _example_tree()
    for choice, action, value in mutations:
        paths = _paths(tree)
        path = paths[choice % len(paths)]
        if not path:
            tree = value if action == "replace" else tree
            continue
        parent = tree
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "replace":
            parent[last] = value
        elif action == "delete":
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][new_key] = value
        elif isinstance(parent[last], list):
            parent[last].append(value)
        else:
            parent[last] = value
    try:
        text = yaml.dump(tree, Dumper=yaml.CSafeDumper, allow_unicode=True)
    except yaml.YAMLError:
        return
    _assert_config_or_clean_error(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_text_edits_of_the_example(data: st.DataObject) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(text)))
        length = data.draw(st.integers(min_value=0, max_value=12))
        insert = data.draw(st.one_of(st.just(""), _YAML_ALPHABET, st.text(max_size=4)))
        text = text[:position] + insert + text[position + length :]
    _assert_config_or_clean_error(text)


VALID_ACCOUNT = """accounts:
  - name: main
    credentials: {access_key_id: a, access_key_secret: SUPERSECRET-123}
    spaces: [{cust_space_id: cams-1}]
"""


@pytest.mark.parametrize("text", ["5m5m", "1s1h", "1h 30m", "1.5h", "5M", "m"])
def test_durations_are_as_strict_as_prometheus(text: str) -> None:
    assert problems(f"poll:\n  interval: {text}\n" + VALID_ACCOUNT) == (
        f"poll.interval: must be a duration such as 30s, 5m, 1h, 3d, got {text!r}",
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("1h30m", 5400.0), ("1d12h", 129600.0), ("1w", 604800.0)]
)
def test_durations_in_prometheus_order_are_accepted(text: str, seconds: float) -> None:
    assert parse(f"poll:\n  interval: {text}\n" + VALID_ACCOUNT).poll.interval_s == seconds


def test_duplicate_keys_are_refused_with_their_lines() -> None:
    text = (
        "poll:\n  interval: 5m\n  interval: 10m\n"
        "accounts:\n  - name: main\n    qps: 10\n    qps: 20\n"
        "    credentials: {access_key_id: a, access_key_secret: X1, access_key_secret: X2}\n"
        "    spaces: [{cust_space_id: cams-1}]\n"
    )
    assert problems(text) == (
        "poll.interval: duplicate key at line 3 (first at line 2)",
        "accounts[0].qps: duplicate key at line 7 (first at line 6)",
        "accounts[0].credentials.access_key_secret: duplicate key at line 8 (first at line 8)",
    )


def test_a_duplicate_misplaced_secret_is_never_shown() -> None:
    text = VALID_ACCOUNT.replace(
        "access_key_secret: SUPERSECRET-123}",
        "access_key_secret: x, SUPERSECRET-123: 1, SUPERSECRET-123: 2}",
    )
    found = problems(text)
    assert found and not any(SECRET in line for line in found)


def test_merge_keys_are_not_duplicates() -> None:
    text = (
        "accounts:\n  - &one\n    name: one\n"
        "    credentials: {access_key_id: a, access_key_secret: b}\n"
        "    spaces: [{cust_space_id: cams-1}]\n"
        "  - <<: *one\n    name: two\n"
    )
    assert [a.name for a in parse(text).accounts] == ["one", "two"]
