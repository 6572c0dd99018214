"""The validated configuration as frozen dataclasses, and the error that lists its problems.

Secrets (the values of the `credentials` fields) never appear in a message, an exception or a
repr. Every other module reads the config only through these types.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

READ_WINDOW_LOOKBACK_S = 8 * 86_400.0
"""The shortest `poll.lookback` that re-reads a DAILY bucket until its reads are final: Meta's
7-day read and click window after the day (`exporter.cams.model.READ_WINDOW_MS`), plus the day
itself. The default lookback."""


DEFAULT_REGION = "ap-southeast-1"
DEFAULT_QPS = 40.0
DEFAULT_LIST_QPS = 4.0
GRANULARITIES = ("DAILY", "HALF_HOUR")
# The documented per-account limits of the sender-health actions: the ceilings of their `qps`.
NUMBERS_QPS_LIMIT = 10.0  # QueryChatappPhoneNumbers
NUMBER_METRIC_QPS_LIMIT = 50.0  # GetChatappPhoneNumberMetric
HEALTH_QPS_LIMIT = 5.0  # GetWhatsappHealthStatus


class ConfigError(Exception):
    """The configuration is unusable; `problems` holds one `key.path: message` line per problem."""

    problems: tuple[str, ...]

    def __init__(self, problems: str | Iterable[str]) -> None:
        items = [problems] if isinstance(problems, str) else list(problems)
        # One line per problem, always: a stray newline would break `check-config` output.
        self.problems = tuple(" ".join(p.splitlines()) for p in items) or ("invalid config",)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class StaticCredentials:
    """An AccessKey pair, with an STS token when the pair is temporary."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Filters:
    """Which discovered templates to keep (None = no constraint)."""

    template_type: str | None = None
    category: str | None = None
    audit_status: str | None = None
    name_regex: re.Pattern[str] | None = None


@dataclass(frozen=True)
class TemplateSpec:
    """A template-language listed explicitly in the config (polled with or without discovery)."""

    code: str
    language: str
    template_type: str = "WHATSAPP"


@dataclass(frozen=True)
class Space:
    """One CAMS space (`CustSpaceId`) of an account."""

    cust_space_id: str | None
    isv_code: str | None
    discover: bool
    filters: Filters
    templates: tuple[TemplateSpec, ...]

    @property
    def label(self) -> str:
        """The `space` label value: the cust_space_id, or "" when absent."""
        return self.cust_space_id or ""


@dataclass(frozen=True)
class PhoneNumbersConfig:
    """QueryChatappPhoneNumbers: how often each space's numbers are listed, and how fast."""

    interval_s: float = 300.0
    qps: float = 1.0


@dataclass(frozen=True)
class PhoneNumberMetricsConfig:
    """GetChatappPhoneNumberMetric: the per-number counters (None interval = poll.interval)."""

    enabled: bool = True
    interval_s: float | None = None
    qps: float = 10.0


@dataclass(frozen=True)
class HealthStatusConfig:
    """GetWhatsappHealthStatus: one round over the WABA of each space, each number and (with
    `templates`) each template-language per interval, calls spread over it, at most `qps`."""

    enabled: bool = True
    interval_s: float = 900.0
    qps: float = 2.0
    templates: bool = True
    max_error_series: int = 100


@dataclass(frozen=True)
class SenderHealth:
    """An account's sender-health settings (present only when the account opted in)."""

    phone_numbers: PhoneNumbersConfig = field(default_factory=PhoneNumbersConfig)
    phone_number_metrics: PhoneNumberMetricsConfig = field(default_factory=PhoneNumberMetricsConfig)
    health_status: HealthStatusConfig = field(default_factory=HealthStatusConfig)


@dataclass(frozen=True)
class Account:
    """One Alibaba Cloud account (or RAM user) and the spaces polled with it."""

    name: str
    region: str
    endpoint: str
    credentials: StaticCredentials | None  # None = Alibaba's default credential chain
    qps: float
    list_qps: float
    spaces: tuple[Space, ...]
    sender_health: SenderHealth | None = None  # None = templates only


@dataclass(frozen=True)
class PollConfig:
    """The polling schedule; every duration in seconds."""

    interval_s: float = 300.0
    granularity: str = "DAILY"
    lookback_s: float = READ_WINDOW_LOOKBACK_S  # covers Meta's 7-day read window
    max_range_s: float = 30 * 86400.0
    counters_since: dt.date | None = None
    discovery_interval_s: float = 3600.0
    timeout_s: float = 10.0
    max_retries: int = 4
    idle_interval_s: float = 3600.0  # how often an idle unit is read
    idle_after_s: float | None = 3 * 86400.0  # quiet period before a unit is idle; None = never


@dataclass(frozen=True)
class StateConfig:
    """Where the counters are persisted (None = not persisted)."""

    path: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    poll: PollConfig
    state: StateConfig
    accounts: tuple[Account, ...]
