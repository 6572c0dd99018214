"""Value objects that flow between modules: what the CAMS API returned, as frozen dataclasses.

The client turns JSON into these; the poller and state consume them. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

DAY_MS = 86_400_000
HALF_HOUR_MS = 1_800_000

READ_WINDOW_MS = 7 * DAY_MS
"""Meta's read and click window. WhatsApp template analytics, which GetChatappTemplateMetric
relays field for field, documents: "Read and click event data ... is only available for up to 7
days from the date the message is sent. After this 7-day window, the corresponding read/click
counts reset to zero and no further updates are recorded." (developers.facebook.com, WhatsApp
Business Management API, template analytics; copy of Apr 20, 2026 in the team's API notes.)
So a day's ReadCount and Cliented keep growing for up to a week after the day and may then
fall to 0 while SentCount and DeliveredCount stay. A bucket is *past the read window* when its
start is more than READ_WINDOW_MS before now (`past_read_window`)."""


def past_read_window(start_ms: int, now_ms: int) -> bool:
    """Whether a bucket starting at `start_ms` is past Meta's read window at `now_ms`: its reads
    and clicks are final, and the API may answer them as 0 from now on."""
    return start_ms < now_ms - READ_WINDOW_MS


# Cliented.Type values as the API spells them (the docs and SDK misspell quick reply; the doc
# example spells it right) mapped to the `button_type` label value we expose.
BUTTON_TYPES: dict[str, str] = {
    "url_button": "url",
    "quick_reply_button": "quick_reply",
    "quick_relpy_button": "quick_reply",
    "phone_number_button": "phone_number",
}


def button_type_label(api_type: str) -> str:
    """The `button_type` label for an API `Cliented.Type` value (unknown types pass through)."""
    key = api_type.strip().lower()
    return BUTTON_TYPES.get(key, key.removesuffix("_button") or "unknown")


@dataclass(frozen=True, slots=True, order=True)
class UnitKey:
    """One (template, language) unit of one account and space: the labels every series carries."""

    account: str
    space: str
    template_code: str
    language: str
    template_type: str


class TemplateMeta(NamedTuple):
    """What ListChatappTemplate says of a unit's template beyond its key (cams_template_info's
    labels); empty until a listing or the state file tells."""

    name: str = ""
    category: str = ""
    audit_status: str = ""

    def filled_from(self, fallback: TemplateMeta) -> TemplateMeta:
        """These fields, each one left empty taken from `fallback` (an older account of it)."""
        return TemplateMeta(
            self.name or fallback.name,
            self.category or fallback.category,
            self.audit_status or fallback.audit_status,
        )


@dataclass(frozen=True, slots=True, order=True)
class NumberKey:
    """One phone number of one account and space: the labels its series carry."""

    account: str
    space: str
    phone_number: str


@dataclass(frozen=True, slots=True)
class Template:
    """One (template, language) row of ListChatappTemplate."""

    code: str
    name: str
    language: str
    category: str
    audit_status: str
    template_type: str
    last_update_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ButtonCount:
    """One `Cliented` element: clicks on one button in one row."""

    button_type: str  # the API's Type, verbatim
    content: str  # ButtonContent
    count: int


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One `Data` element of GetChatappTemplateMetric: counts for [start_ms, end_ms)."""

    template_code: str
    language: str
    sent: int
    delivered: int
    read: int
    clicks: tuple[ButtonCount, ...]
    start_ms: int
    end_ms: int
