"""How many calls per hour each action costs an account, from its config and its size.

The arithmetic of the schedules, in steady state (discovery cached, the first backfill done):
- GetChatappTemplateMetric: one call per template-language per cycle (per-bucket shape), or one
  per template once the exporter has proven that one call answers for every language; a cycle
  lasts `poll.interval`, or `calls * 1.03 / qps` when that is longer;
- ListChatappTemplate: ceil(units / 100) pages per discovering space per `discovery_interval`;
- QueryChatappPhoneNumbers: one call per space per `phone_numbers.interval`;
- GetChatappPhoneNumberMetric: one call per number per cycle of its own interval
  (`phone_number_metrics.interval`, default `poll.interval`), the way the template counters
  read each unit;
- GetWhatsappHealthStatus: one call per node (the WABA of each space, each number, each
  template-language with `templates`) per round; a round lasts `health_status.interval`, or
  `nodes * 1.03 / qps` when that is longer (`exporter.senders.health.round_seconds`).
"""

from __future__ import annotations

import math

from exporter.cams.actions import (
    HEALTH_ACTION,
    LIST_ACTION,
    METRIC_ACTION,
    PHONE_METRIC_ACTION,
    PHONE_NUMBERS_ACTION,
)
from exporter.config import Account, PollConfig
from exporter.senders.health import round_seconds

_PAGE_SIZE = 100  # the client's ListChatappTemplate page size
_PACING = 1.03  # the rate limiter's spacing margin


def calls_per_hour(
    account: Account,
    poll: PollConfig,
    *,
    units: int,
    numbers: int,
    templates: int | None = None,
) -> dict[str, float]:
    """Calls per hour per action for an account with `units` template-language units spread
    over its spaces and `numbers` phone numbers (sender actions only when it opted in); with
    `templates`, the metric calls are one per template (every language read in one call)."""
    spaces = len(account.spaces)
    discovering = sum(1 for space in account.spaces if space.discover)
    reads = units if templates is None else templates
    cycle = max(poll.interval_s, reads * _PACING / account.qps)
    pages = math.ceil(units / max(1, spaces) / _PAGE_SIZE) if units else 1
    out = {
        METRIC_ACTION: reads * 3600 / cycle,
        LIST_ACTION: discovering * pages * 3600 / poll.discovery_interval_s,
    }
    health = account.sender_health
    if health is None:
        return out
    out[PHONE_NUMBERS_ACTION] = spaces * 3600 / health.phone_numbers.interval_s
    metrics = health.phone_number_metrics
    if metrics.enabled:
        interval = metrics.interval_s or poll.interval_s
        out[PHONE_METRIC_ACTION] = numbers * 3600 / max(interval, numbers * _PACING / metrics.qps)
    status = health.health_status
    if status.enabled:
        nodes = spaces + numbers + (units if status.templates else 0)
        out[HEALTH_ACTION] = nodes * 3600 / round_seconds(nodes, status.interval_s, status.qps)
    return out
