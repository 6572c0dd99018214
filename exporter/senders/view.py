"""The sender-health part of the `Snapshot`: frozen, built by each account's `SenderPoller`
only when something changed, read by the collectors and the status page (never the API)."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.cams.sender_model import HealthError, PhoneNumber
from exporter.senders.counts import NumberCounts


@dataclass(frozen=True, slots=True)
class NumberView:
    """One listed phone number of one space, as exported."""

    space: str
    number: PhoneNumber
    messaging_limit: float | None  # conversations per 24 h (inf: unlimited; None: unknown tier)
    counts: NumberCounts | None = None  # GetChatappPhoneNumberMetric counters (when polled)


@dataclass(frozen=True, slots=True)
class EntityHealth:
    """The last GetWhatsappHealthStatus answer for one node (ids "" where they do not apply)."""

    node_type: str  # waba | phone | template
    space: str
    can_send: str  # verbatim CanSendMessage ("" when the answer had none)
    waba_id: str = ""
    phone_number: str = ""
    template_code: str = ""
    language: str = ""
    errors: tuple[HealthError, ...] = ()
    last_error: str | None = None  # code of the last failed read; the values above are kept


@dataclass(frozen=True, slots=True)
class SenderStatus:
    """Everything sender health shows for one account."""

    account: str
    numbers: tuple[NumberView, ...] = ()
    health: tuple[EntityHealth, ...] = ()
    numbers_listed: tuple[tuple[str, float], ...] = ()  # (space, last successful listing)
    numbers_error: str | None = None  # code of the last failed listing, cleared on success
    health_enabled: bool = False
    health_interval_s: float = 0.0
    health_targets: int = 0  # nodes in the last complete round
    health_failed: int = 0  # of them, read without success in that round
    health_round_finished: float | None = None  # unix seconds
    health_round_duration: float | None = None
    unknown_values: tuple[tuple[str, str, int], ...] = ()  # (field, value, how many entities)
    max_error_series: int = 100
