"""What is exported for each template-language unit: the metric families, their help and labels.

One table, `TEMPLATE_FAMILIES`, names every per-template family, its type, its help text, the
labels it adds to the common ones (`LABELS`) and how to read its samples off a `TemplateSeries`.
The exposition writer renders from it; the tests' reference collectors build client_python
families from the same table, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exporter.templates.view import TemplateSeries

LABELS = ("account", "space", "template_code", "language", "template_type")

SampleValues = Iterable[tuple[tuple[str, ...], float]]


@dataclass(frozen=True, slots=True)
class TemplateFamily:
    """One per-template metric family: its name, type, help, extra labels and samples."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    extra: tuple[str, ...]
    samples: Callable[[TemplateSeries], SampleValues]


def _one(value: float | None) -> SampleValues:
    return () if value is None else (((), value),)


COUNTER_FAMILIES = (
    TemplateFamily(
        "cams_template_messages_sent",
        "counter",
        "Template messages sent, as reported by GetChatappTemplateMetric, since the origin.",
        (),
        lambda s: (((), s.counts.sent),),
    ),
    TemplateFamily(
        "cams_template_messages_delivered",
        "counter",
        "Template messages delivered to the recipient's device, since the origin.",
        (),
        lambda s: (((), s.counts.delivered),),
    ),
    TemplateFamily(
        "cams_template_messages_read",
        "counter",
        "Template messages read by the recipient, since the origin.",
        (),
        lambda s: (((), s.counts.read),),
    ),
    TemplateFamily(
        "cams_template_button_clicks",
        "counter",
        "Clicks on a template's buttons, by button type and button text, since the origin.",
        ("button_type", "button"),
        lambda s: (((kind, button), count) for kind, button, count in s.counts.clicks),
    ),
)
INFO_FAMILIES = (
    TemplateFamily(
        "cams_template_info",
        "gauge",
        "Template metadata from ListChatappTemplate; the value is always 1.",
        ("template_name", "category", "audit_status"),
        lambda s: (((s.name, s.category, s.audit_status), 1),),
    ),
    TemplateFamily(
        "cams_template_last_success_timestamp_seconds",
        "gauge",
        "When this template and language were last read successfully (unix seconds).",
        (),
        lambda s: _one(s.last_success),
    ),
    TemplateFamily(
        "cams_template_newest_data_timestamp_seconds",
        "gauge",
        "Start of the newest bucket with any activity for this template and language.",
        (),
        lambda s: _one(s.newest_data),
    ),
    TemplateFamily(
        "cams_template_idle_interval_seconds",
        "gauge",
        "Present while this template and language is idle (no change in its counts for "
        "poll.idle_after): it is read once per this many seconds (poll.idle_interval) instead "
        "of every poll.interval.",
        (),
        lambda s: _one(s.idle_interval),
    ),
)
TEMPLATE_FAMILIES = COUNTER_FAMILIES + INFO_FAMILIES


def label_values(series: TemplateSeries) -> tuple[str, ...]:
    """The common label values of a unit's series, in the order of `LABELS`."""
    k = series.key
    return (k.account, k.space, k.template_code, k.language, k.template_type)
