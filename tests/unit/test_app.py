"""exporter.app without HTTP: each action of an account gets its own rate limiter, at its share
of the account's rates under --shard."""

from __future__ import annotations

from exporter.app import build_limiters
from exporter.cams.client import (
    HEALTH_ACTION,
    LIST_ACTION,
    METRIC_ACTION,
    PHONE_METRIC_ACTION,
    PHONE_NUMBERS_ACTION,
)
from exporter.config import parse_config
from exporter.templates.sharding import Shard


def test_each_action_has_its_own_limiter_at_its_share() -> None:
    config = parse_config(
        """
accounts:
  - name: main
    credentials: {access_key_id: a, access_key_secret: b}
    qps: 40
    spaces: [{cust_space_id: cams-1}]
    sender_health:
      phone_numbers: {qps: 4}
      phone_number_metrics: {qps: 20}
      health_status: {qps: 3}
""",
        env={},
    )
    account = config.accounts[0]
    whole = build_limiters(account, Shard(0, 1))
    assert {a: lim.max_rate for a, lim in whole.items()} == {
        METRIC_ACTION: 40,
        LIST_ACTION: 4,
        PHONE_NUMBERS_ACTION: 4,
        PHONE_METRIC_ACTION: 20,
        HEALTH_ACTION: 3,
    }
    assert len({id(limiter) for limiter in whole.values()}) == 5
    half = build_limiters(account, Shard(1, 2))
    assert half[HEALTH_ACTION].max_rate == 1.5 and half[PHONE_METRIC_ACTION].max_rate == 10
