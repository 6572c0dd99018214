"""Sender health -> metric families (client_python collectors over one frozen `Snapshot`).

State sets are gauges with one series per known state: 1 for the current one, 0 for the
others. A value the exporter does not know gains no series (every known state is then 0); it
shows in the info labels and in `cams_sender_unknown_values`. Nothing here calls the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.cams.sender_model import (
    CAN_SEND_STATES,
    NODE_PHONE,
    NODE_TEMPLATE,
    NODE_WABA,
    QUALITY_RATINGS,
    known,
)
from exporter.publish.snapshot import Snapshot
from exporter.senders.view import SenderStatus

_DESCRIPTION_MAX = 100  # characters of an error description kept in a label


def _state_set(
    family: GaugeMetricFamily, labels: list[str], value: str, states: tuple[str, ...]
) -> None:
    """One series per known state: 1 for `value`'s state, 0 for the others."""
    current = known(value, states)
    for state in states:
        family.add_metric([*labels, state], 1 if state == current else 0)


class _SendersCollector(Collector):
    """A collector over the sender-health part of one snapshot."""

    def __init__(self, senders: Iterable[SenderStatus]) -> None:
        self._senders = tuple(senders)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class PhoneNumberCollector(_SendersCollector):
    """The listed phone numbers (QueryChatappPhoneNumbers); e.g. with space "s1":

    # HELP cams_phone_number_info What QueryChatappPhoneNumbers says about a business ...
    # TYPE cams_phone_number_info gauge
    cams_phone_number_info{account="main",messaging_limit_tier="TIER_1000",phone_number="658001",
        quality_rating="GREEN",space="s1",status="CONNECTED",verified_name="Demo Support"} 1.0
    # TYPE cams_phone_number_quality_rating gauge
    cams_phone_number_quality_rating{account="main",phone_number="658001",rating="GREEN",...} 1.0
    cams_phone_number_quality_rating{account="main",phone_number="658001",rating="YELLOW",...} 0.0
    # TYPE cams_phone_number_messaging_limit gauge
    cams_phone_number_messaging_limit{account="main",phone_number="658001",space="s1"} 100000.0
    """

    def collect(self) -> Iterator[Metric]:
        ids = ["account", "space", "phone_number"]
        info = GaugeMetricFamily(
            "cams_phone_number_info",
            "What QueryChatappPhoneNumbers says about a business phone number; the value is "
            "always 1.",
            labels=[*ids, "verified_name", "status", "quality_rating", "messaging_limit_tier"],
        )
        rating = GaugeMetricFamily(
            "cams_phone_number_quality_rating",
            "Quality rating of a business phone number (state set: 1 for the current rating).",
            labels=[*ids, "rating"],
        )
        limit = GaugeMetricFamily(
            "cams_phone_number_messaging_limit",
            "Business-initiated conversations per 24 hours the number's messaging-limit tier "
            "allows (+Inf when unlimited).",
            labels=ids,
        )
        for status in self._senders:
            for view in status.numbers:
                n = view.number
                labels = [status.account, view.space, n.phone_number]
                info.add_metric(
                    [
                        *labels,
                        n.verified_name,
                        n.status,
                        n.quality_rating,
                        n.messaging_limit_tier,
                    ],
                    1,
                )
                _state_set(rating, labels, n.quality_rating, QUALITY_RATINGS)
                if view.messaging_limit is not None:
                    limit.add_metric(labels, view.messaging_limit)
        yield from (info, rating, limit)


class PhoneNumberCountersCollector(_SendersCollector):
    """The per-number counters (GetChatappPhoneNumberMetric), exact like the template ones:

    # HELP cams_phone_number_messages_sent_total Messages sent from the business phone number...
    # TYPE cams_phone_number_messages_sent_total counter
    cams_phone_number_messages_sent_total{account="main",phone_number="658001",space="s1"} 812.0
    (likewise _delivered_total, and _read_total for numbers whose answers carry ReadCount)
    """

    def collect(self) -> Iterator[Metric]:
        ids = ["account", "space", "phone_number"]
        what = (
            ("sent", "Messages sent from the business phone number, since the origin."),
            ("delivered", "Messages from the number delivered to the recipient, since the origin."),
            ("read", "Messages from the number read by the recipient, since the origin."),
        )
        families = {
            name: CounterMetricFamily(f"cams_phone_number_messages_{name}", text, labels=ids)
            for name, text in what
        }
        for status in self._senders:
            for view in status.numbers:
                counts = view.counts
                if counts is None:
                    continue
                labels = [status.account, view.space, view.number.phone_number]
                families["sent"].add_metric(labels, counts.sent)
                families["delivered"].add_metric(labels, counts.delivered)
                if counts.read is not None:
                    families["read"].add_metric(labels, counts.read)
        yield from families.values()


class CanSendCollector(_SendersCollector):
    """Can-send status and its errors (GetWhatsappHealthStatus); e.g. with space "s1":

    # HELP cams_template_can_send Whether a template-language can send (GetWhatsappHealthStatus...
    # TYPE cams_template_can_send gauge
    cams_template_can_send{account="main",language="en",space="s1",status="AVAILABLE",
        template_code="744c4b5c"} 0.0
    cams_template_can_send{...,status="LIMITED",template_code="744c4b5c"} 1.0
    # TYPE cams_phone_number_can_send gauge
    cams_phone_number_can_send{account="main",phone_number="658001",space="s1",status="LIMITED"} 1
    # TYPE cams_waba_can_send gauge
    cams_waba_can_send{account="main",space="s1",status="AVAILABLE",waba_id="1680779144"} 1.0
    # TYPE cams_health_status_error_info gauge
    cams_health_status_error_info{account="main",description="The message template is paused
        because of its low quality.",error_code="141005",language="en",node_type="template",
        phone_number="",space="s1",template_code="744c4b5c",waba_id=""} 1.0
    # TYPE cams_health_status_errors gauge
    cams_health_status_errors{account="main",error_code="141005",node_type="template",...} 1.0
    """

    def collect(self) -> Iterator[Metric]:
        help_tail = "(GetWhatsappHealthStatus; state set: 1 for the current status)."
        waba = GaugeMetricFamily(
            "cams_waba_can_send",
            f"Whether the WhatsApp Business Account can send {help_tail}",
            labels=["account", "space", "waba_id", "status"],
        )
        phone = GaugeMetricFamily(
            "cams_phone_number_can_send",
            f"Whether a business phone number can send {help_tail}",
            labels=["account", "space", "phone_number", "status"],
        )
        template = GaugeMetricFamily(
            "cams_template_can_send",
            f"Whether a template-language can send {help_tail}",
            labels=["account", "space", "template_code", "language", "status"],
        )
        error_labels = ["waba_id", "phone_number", "template_code", "language"]
        info = GaugeMetricFamily(
            "cams_health_status_error_info",
            "An error GetWhatsappHealthStatus reports for a node (at most "
            "sender_health.health_status.max_error_series per account; the solution is on the "
            "status page); the value is always 1.",
            labels=["account", "space", "node_type", *error_labels, "error_code", "description"],
        )
        counts = GaugeMetricFamily(
            "cams_health_status_errors",
            "Nodes for which GetWhatsappHealthStatus reports an error code now.",
            labels=["account", "space", "node_type", "error_code"],
        )
        for status in self._senders:
            shown = 0
            tally: dict[tuple[str, str, str], int] = {}
            for e in status.health:
                if e.can_send:
                    if e.node_type == NODE_WABA:
                        labels = [status.account, e.space, e.waba_id]
                        _state_set(waba, labels, e.can_send, CAN_SEND_STATES)
                    elif e.node_type == NODE_PHONE:
                        labels = [status.account, e.space, e.phone_number]
                        _state_set(phone, labels, e.can_send, CAN_SEND_STATES)
                    elif e.node_type == NODE_TEMPLATE:
                        labels = [status.account, e.space, e.template_code, e.language]
                        _state_set(template, labels, e.can_send, CAN_SEND_STATES)
                for error in {err.code: err for err in e.errors}.values():
                    key = (e.space, e.node_type, error.code)
                    tally[key] = tally.get(key, 0) + 1
                    if shown < status.max_error_series:
                        shown += 1
                        ids = [e.waba_id, e.phone_number, e.template_code, e.language]
                        description = error.description[:_DESCRIPTION_MAX]
                        info.add_metric(
                            [status.account, e.space, e.node_type, *ids, error.code, description],
                            1,
                        )
            for (space, node_type, code), count in sorted(tally.items()):
                counts.add_metric([status.account, space, node_type, code], count)
        yield from (waba, phone, template, info, counts)


class SenderStatusCollector(_SendersCollector):
    """How fresh the sender-health data is, and the values the exporter does not know:

    # HELP cams_phone_numbers_discovered Phone numbers the last QueryChatappPhoneNumbers ...
    # TYPE cams_phone_numbers_discovered gauge
    cams_phone_numbers_discovered{account="main",space="s1"} 3.0
    # TYPE cams_phone_numbers_last_success_timestamp_seconds gauge
    cams_phone_numbers_last_success_timestamp_seconds{account="main",space="s1"} 1.7640288e+09
    # TYPE cams_health_status_targets gauge
    cams_health_status_targets{account="main"} 16.0
    # TYPE cams_health_status_failed_targets gauge
    cams_health_status_failed_targets{account="main"} 0.0
    # TYPE cams_health_status_last_round_timestamp_seconds gauge
    cams_health_status_last_round_timestamp_seconds{account="main"} 1.7640288e+09
    # TYPE cams_health_status_round_duration_seconds gauge
    cams_health_status_round_duration_seconds{account="main"} 897.2
    # TYPE cams_health_status_interval_seconds gauge
    cams_health_status_interval_seconds{account="main"} 900.0
    # TYPE cams_sender_unknown_values gauge
    cams_sender_unknown_values{account="main",field="QualityRating",value="PURPLE"} 1.0
    """

    def collect(self) -> Iterator[Metric]:
        account = ["account"]
        discovered = GaugeMetricFamily(
            "cams_phone_numbers_discovered",
            "Phone numbers the last QueryChatappPhoneNumbers listings returned.",
            labels=["account", "space"],
        )
        listed = GaugeMetricFamily(
            "cams_phone_numbers_last_success_timestamp_seconds",
            "When QueryChatappPhoneNumbers last listed the space successfully (unix seconds).",
            labels=["account", "space"],
        )
        targets = GaugeMetricFamily(
            "cams_health_status_targets",
            "Nodes (WABAs, numbers, template-languages) in the last GetWhatsappHealthStatus round.",
            labels=account,
        )
        failed = GaugeMetricFamily(
            "cams_health_status_failed_targets",
            "Nodes of the last round that could not be read (their last answers are kept).",
            labels=account,
        )
        finished = GaugeMetricFamily(
            "cams_health_status_last_round_timestamp_seconds",
            "When the last GetWhatsappHealthStatus round ended (unix seconds).",
            labels=account,
        )
        duration = GaugeMetricFamily(
            "cams_health_status_round_duration_seconds",
            "How long the last GetWhatsappHealthStatus round took.",
            labels=account,
        )
        interval = GaugeMetricFamily(
            "cams_health_status_interval_seconds",
            "The configured interval of GetWhatsappHealthStatus rounds.",
            labels=account,
        )
        unknown = GaugeMetricFamily(
            "cams_sender_unknown_values",
            "Entities for which the API reports a value of an enum field the exporter does not "
            "know (QualityRating, Status, MessagingLimitTier, CanSendMessage).",
            labels=["account", "field", "value"],
        )
        for status in self._senders:
            name = [status.account]
            per_space: dict[str, int] = {space: 0 for space, _ in status.numbers_listed}
            for view in status.numbers:
                per_space[view.space] = per_space.get(view.space, 0) + 1
            for space, count in sorted(per_space.items()):
                discovered.add_metric([status.account, space], count)
            for space, when in status.numbers_listed:
                listed.add_metric([status.account, space], when)
            if status.health_enabled:
                interval.add_metric(name, status.health_interval_s)
                if status.health_round_finished is not None:
                    targets.add_metric(name, status.health_targets)
                    failed.add_metric(name, status.health_failed)
                    finished.add_metric(name, status.health_round_finished)
                    duration.add_metric(name, status.health_round_duration or 0.0)
            for field, value, count in status.unknown_values:
                unknown.add_metric([status.account, field, value], count)
        yield from (discovered, listed, targets, failed, finished, duration, interval, unknown)


def sender_collectors(snapshot: Snapshot) -> list[Collector]:
    """The sender-health collectors of `snapshot` (none when no account opted in)."""
    if not snapshot.senders:
        return []
    return [
        PhoneNumberCollector(snapshot.senders),
        PhoneNumberCountersCollector(snapshot.senders),
        CanSendCollector(snapshot.senders),
        SenderStatusCollector(snapshot.senders),
    ]
