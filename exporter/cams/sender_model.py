"""Sender-health values as the API returns them, and the known values of its open enums.

Every enum of these APIs is an open string (`../shared/notes/cams-api.md` section 10): the
exporter maps the values it knows and keeps the others visible (in info labels, on the status
page, counted in `cams_sender_unknown_values`), never turning them into a state-set series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from exporter.cams.model import MetricRow

# QueryChatappPhoneNumbers QualityRating; UNKNOWN is Meta's "not rated yet".
QUALITY_RATINGS: Final = ("GREEN", "YELLOW", "RED", "UNKNOWN")
# QueryChatappPhoneNumbers Status.
NUMBER_STATUSES: Final = (
    "CONNECTED",
    "FLAGGED",
    "RATE_LIMITED",
    "PENDING",
    "OFFLINE",
    "PAUSED",
    "DELETED",
)
# GetWhatsappHealthStatus CanSendMessage.
CAN_SEND_STATES: Final = ("AVAILABLE", "LIMITED", "BLOCKED")
# MessagingLimitTier -> business-initiated conversations per 24 h. Alibaba's phone-number page
# names TIER_10 (1K), TIER_50 (10K), TIER_1000 (100K) and UNLIMITED; Meta's own names are
# TIER_250, TIER_1K, TIER_10K, TIER_100K and TIER_UNLIMITED. Both spellings are accepted.
TIER_LIMITS: Final[dict[str, float]] = {
    "TIER_10": 1_000.0,
    "TIER_50": 10_000.0,
    "TIER_1000": 100_000.0,
    "UNLIMITED": math.inf,
    "TIER_250": 250.0,
    "TIER_1K": 1_000.0,
    "TIER_10K": 10_000.0,
    "TIER_100K": 100_000.0,
    "TIER_UNLIMITED": math.inf,
}

# GetWhatsappHealthStatus NodeType values.
NODE_WABA: Final = "waba"
NODE_PHONE: Final = "phone"
NODE_TEMPLATE: Final = "template"
NODE_TYPES: Final = (NODE_WABA, NODE_PHONE, NODE_TEMPLATE)
# The EntityType spellings that stand for each node (CAMS does not document them; Meta's
# health_status API uses WABA, PHONE_NUMBER and MESSAGE_TEMPLATE).
ENTITY_TYPES: Final[dict[str, frozenset[str]]] = {
    NODE_WABA: frozenset({"WABA", "WHATSAPP_BUSINESS_ACCOUNT"}),
    NODE_PHONE: frozenset({"PHONE", "PHONE_NUMBER"}),
    NODE_TEMPLATE: frozenset({"TEMPLATE", "MESSAGE_TEMPLATE"}),
}


def known(value: str, values: tuple[str, ...]) -> str | None:
    """The known spelling of `value` (case and spaces ignored), or None when it is not known."""
    normalized = value.strip().upper()
    return normalized if normalized in values else None


def messaging_limit(tier: str) -> float | None:
    """Conversations per 24 h of a MessagingLimitTier (inf when unlimited), None if unknown."""
    return TIER_LIMITS.get(tier.strip().upper())


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """One element of QueryChatappPhoneNumbers' `PhoneNumbers`: the keys the exporter shows
    (values verbatim, "" if absent), each field named after its key (`verified_name`:
    `VerifiedName`). The element's other keys (CodeVerificationStatus, NameStatus, callbacks)
    are not read."""

    phone_number: str
    verified_name: str = ""
    status: str = ""
    quality_rating: str = ""
    messaging_limit_tier: str = ""


@dataclass(frozen=True, slots=True)
class PhoneNumberRow:
    """One `Data` element of GetChatappPhoneNumberMetric: counts for [start_ms, end_ms).

    `read` is None when the row has no `ReadCount`: the notes list the field, but the official
    SDK's model (5.3.1) has only SentCount and DeliveredCount, so the real API may not send it.
    """

    phone_number: str
    sent: int
    delivered: int
    read: int | None
    start_ms: int
    end_ms: int
    granularity: str = ""

    def as_metric_row(self) -> MetricRow:
        """The row as the counters read a template's: the number in the template code's place,
        no language, no clicks, a missing ReadCount as 0 (the caller notes whether the answer
        carried reads at all)."""
        return MetricRow(
            self.phone_number, "", self.sent, self.delivered, self.read or 0, (),
            self.start_ms, self.end_ms,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class HealthError:
    """One reason an entity cannot send freely (`Errors[]` of GetWhatsappHealthStatus)."""

    code: str
    description: str = ""
    solution: str = ""


@dataclass(frozen=True, slots=True)
class HealthEntity:
    """One element of `Data.Entities` of GetWhatsappHealthStatus (values verbatim), each field
    named after its key but `can_send` (`CanSendMessage`) and `errors`; `BusinessId` is not read
    (no series carries it)."""

    entity_type: str
    can_send: str
    template_code: str = ""
    language: str = ""
    phone_number: str = ""
    waba_id: str = ""
    errors: tuple[HealthError, ...] = ()


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """A GetWhatsappHealthStatus answer: the overall CanSendMessage and its entities."""

    can_send: str
    entities: tuple[HealthEntity, ...] = ()

    def entity_for(self, node_type: str) -> HealthEntity | None:
        """The entity that stands for the queried node: by EntityType, else by the ids it
        carries (a template entity has a TemplateCode, a phone entity a PhoneNumber but no
        TemplateCode, a WABA entity a WabaId and neither); None when no entity fits."""
        aliases = ENTITY_TYPES.get(node_type, frozenset())
        for entity in self.entities:
            if entity.entity_type.strip().upper() in aliases:
                return entity
        for entity in self.entities:
            if entity.entity_type.strip():
                continue
            if node_type == NODE_TEMPLATE and entity.template_code:
                return entity
            if node_type == NODE_PHONE and entity.phone_number and not entity.template_code:
                return entity
            if (
                node_type == NODE_WABA
                and entity.waba_id
                and not entity.phone_number
                and not entity.template_code
            ):
                return entity
        return None
