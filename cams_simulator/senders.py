"""The sender-health actions of the simulator: phone numbers, their daily counts, can-send status.

- `QueryChatappPhoneNumbers` lists `phone_numbers` business numbers. Number 0 is steady (GREEN,
  CONNECTED, UNLIMITED). Every other number walks a six-step cycle, one step per
  `sender_period_s` (a *period*): GREEN, GREEN, YELLOW, RED (FLAGGED for odd numbers,
  RATE_LIMITED for even ones), YELLOW with its messaging-limit tier lowered one step, GREEN still
  lowered, then back to its tier. Numbers 1 and 2 are three steps apart, so one of them is
  always YELLOW or worse. Odd numbers use Alibaba's tier names (TIER_10, TIER_50, TIER_1000,
  UNLIMITED), even ones Meta's (TIER_250 ... TIER_UNLIMITED); every fourth number from 4 on
  is a new one: PENDING, rated UNKNOWN, at TIER_250.
- `GetChatappPhoneNumberMetric` gives each number daily (or half-hour) buckets from the same
  hash-based model as the templates, with the same late reads and the same `--shape`s; with
  `numbers_send_templates`, the sums of its templates' buckets instead (template k is sent
  from number k % numbers), as when the numbers send nothing but templates.
- `GetWhatsappHealthStatus` answers for the WABA (LIMITED one period in eight), a number
  (from its status: CONNECTED is AVAILABLE, FLAGGED and RATE_LIMITED are LIMITED, the others
  BLOCKED) and a template-language (unit k is LIMITED when (k + period) % 10 == 0 and BLOCKED
  when it is 5), each with the entities above it (WABA, business) and the errors of the ones
  that are not AVAILABLE. Error codes and texts are made up for the simulator.
- `--static` freezes the period at the anchor time. `/_sim/phone_numbers` and `/_sim/health`
  override a number's fields or an entity's can-send value (unknown values included), so
  tests can play what the cycle does not.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cams_simulator.data import Counts, TemplateDef, shaped_rows
from cams_simulator.options import SimulatorOptions
from cams_simulator.params import metric_range, text_param
from cams_simulator.traffic import Clock
from cams_simulator.variants import Variants
from cams_simulator.wire import invalid, request_id
from exporter.cams.actions import HEALTH_ACTION, PHONE_METRIC_ACTION, PHONE_NUMBERS_ACTION

Answer = Callable[[Mapping[str, str]], dict[str, Any]]
Buckets = Callable[[TemplateDef, str, int, int, int], list[tuple[int, Counts]]]
LiveTemplate = Callable[[str], TemplateDef | None]

ALIBABA_TIERS: Final = ("TIER_10", "TIER_50", "TIER_1000", "UNLIMITED")
META_TIERS: Final = ("TIER_250", "TIER_1K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED")
_CYCLE: Final = 6
_NAMES: Final = ("Store", "Support", "Alerts", "Offers", "Orders", "Care", "News", "Club")
_NUMBER_FIELDS: Final = ("VerifiedName", "Status", "QualityRating", "MessagingLimitTier")
_SEVERITY: Final = {"AVAILABLE": 0, "LIMITED": 1, "BLOCKED": 2}
# (entity, can-send) -> (ErrorCode, ErrorDescription, PossibleSolution); made up.
_ERRORS: Final = {
    ("FLAGGED", "LIMITED"): (
        "141001",
        "The phone number's quality rating is low, so its messaging is limited.",
        "Review recent messages for blocks and spam reports, and send less until it recovers.",
    ),
    ("RATE_LIMITED", "LIMITED"): (
        "141002",
        "The phone number reached its messaging limit for the current 24 hours.",
        "Wait for the window to roll over, or spread the sends over more numbers.",
    ),
    ("PHONE", "BLOCKED"): (
        "141003",
        "The phone number is not registered or not connected.",
        "Register the number again in the CAMS console.",
    ),
    ("WABA", "LIMITED"): (
        "141004",
        "The WhatsApp Business Account has a payment issue.",
        "Add a valid payment method in Meta Business Manager.",
    ),
    ("TEMPLATE", "LIMITED"): (
        "141005",
        "The message template is paused because of its low quality.",
        "Edit the template content, or wait until the pause ends.",
    ),
    ("TEMPLATE", "BLOCKED"): (
        "141006",
        "The message template is disabled.",
        "Create a new template with different content.",
    ),
}


def _digest_int(*parts: object) -> int:
    text = "|".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class NumberDef:
    """One simulated business phone number and its cycle."""

    index: int
    phone_number: str
    verified_name: str
    tiers: tuple[str, ...]  # its tier ladder, lowest first
    base_tier: int  # index in `tiers`
    bad_status: str  # the status of its RED step
    offset: int  # where its cycle starts
    kind: str  # "steady", "cycling" or "new"
    series: TemplateDef  # its counts come from the data model under this key


def build_numbers(count: int, seed: int) -> tuple[NumberDef, ...]:
    """The simulated numbers, deterministic from the seed."""
    base_offset = _digest_int("numbers", seed) % _CYCLE
    out = []
    for index in range(count):
        number = f"65{80_000_000 + (seed % 100) * 10_000 + index}"
        odd = index % 2 == 1
        kind = "steady" if index == 0 else "new" if index % 4 == 0 else "cycling"
        tiers = ALIBABA_TIERS if odd or index == 0 else META_TIERS
        base = {"steady": len(tiers) - 1, "new": 0}.get(kind, 2 + (index // 2) % 2)
        out.append(
            NumberDef(
                index=index,
                phone_number=number,
                verified_name=f"Demo {_NAMES[index % len(_NAMES)]} {index + 1}",
                tiers=tiers,
                base_tier=min(base, len(tiers) - 1),
                bad_status="FLAGGED" if odd else "RATE_LIMITED",
                offset=(base_offset + 3 * (index - 1) + (index - 1) // 2) % _CYCLE,
                kind=kind,
                series=TemplateDef(-1 - index, f"phone:{number}", "", "", (), 0),
            )
        )
    return tuple(out)


def number_state(number: NumberDef, period: int) -> dict[str, str]:
    """QualityRating, Status and MessagingLimitTier of a number during `period`."""
    if number.kind == "steady":
        return {
            "QualityRating": "GREEN",
            "Status": "CONNECTED",
            "MessagingLimitTier": number.tiers[number.base_tier],
        }
    if number.kind == "new":
        return {"QualityRating": "UNKNOWN", "Status": "PENDING", "MessagingLimitTier": "TIER_250"}
    step = (period + number.offset) % _CYCLE
    rating = ("GREEN", "GREEN", "YELLOW", "RED", "YELLOW", "GREEN")[step]
    tier = number.base_tier - (1 if step in (4, 5) else 0)
    return {
        "QualityRating": rating,
        "Status": number.bad_status if step == 3 else "CONNECTED",
        "MessagingLimitTier": number.tiers[max(0, tier)],
    }


def _phone_can_send(status: str) -> str:
    if status == "CONNECTED":
        return "AVAILABLE"
    if status in ("FLAGGED", "RATE_LIMITED"):
        return "LIMITED"
    if status in ("PENDING", "OFFLINE", "PAUSED", "DELETED"):
        return "BLOCKED"
    return "LIMITED"


def _errors(kind: str, can_send: str) -> list[dict[str, str]]:
    found = _ERRORS.get((kind, can_send))
    if found is None and can_send != "AVAILABLE":
        found = ("141000", f"The entity cannot send freely ({can_send}).", "See WhatsApp Manager.")
    if found is None:
        return []
    code, description, solution = found
    return [{"ErrorCode": code, "ErrorDescription": description, "PossibleSolution": solution}]


def _worst(values: list[str]) -> str:
    """The most restrictive can-send value (an unknown one counts as LIMITED)."""
    return max(values, key=lambda v: _SEVERITY.get(v, 1)) if values else "AVAILABLE"


class SenderApi:
    """The simulated account's senders and the answers of the three actions; thread-safe."""

    def __init__(
        self,
        options: SimulatorOptions,
        clock: Clock,
        templates: tuple[TemplateDef, ...],
        live: LiveTemplate,
        buckets: Buckets,
        variants: Callable[[], Variants],
        sends: Callable[[str], bool] = lambda code: True,
    ) -> None:
        self._options = options
        self._templates = templates
        self._sends = sends  # whether a template code ever sends (silent ones are skipped)
        self._variants = variants  # the answer variants in force (they may be replaced)
        self._clock = clock
        self._live = live
        self._buckets = buckets
        self._numbers = build_numbers(options.phone_numbers, options.seed)
        self._by_number = {n.phone_number: n for n in self._numbers}
        self._unit_index = {
            (t.code, language): k
            for k, (t, language) in enumerate(
                (t, language) for t in templates for language in options.languages
            )
        }
        self.waba_id = str(10**14 + _digest_int("waba", options.seed) % 10**14)
        self.business_id = str(10**14 + _digest_int("business", options.seed) % 10**14)
        self._lock = threading.Lock()
        self._number_overrides: dict[str, dict[str, str]] = {}
        self._unlisted: set[str] = set()
        self._can_send_overrides: dict[tuple[str, str], str] = {}
        self.answers: Mapping[str, Answer] = {
            PHONE_NUMBERS_ACTION: self.query_phone_numbers,
            PHONE_METRIC_ACTION: self.phone_number_metric,
            HEALTH_ACTION: self.health_status,
        }
        self.limits: Mapping[str, float] = {
            PHONE_NUMBERS_ACTION: options.numbers_qps_limit,
            PHONE_METRIC_ACTION: options.number_metric_qps_limit,
            HEALTH_ACTION: options.health_qps_limit,
        }

    # -- time and state ----------------------------------------------------------------------

    def period(self) -> int:
        """The current period (steps of the cycles); fixed at the anchor with --static."""
        moment = self._clock.anchor() if self._options.static else self._clock.now()
        return math.floor(moment / self._options.sender_period_s)

    def phone_numbers(self) -> list[dict[str, str]]:
        """The listed numbers' fields now, overrides applied."""
        period = self.period()
        with self._lock:
            overrides = {k: dict(v) for k, v in self._number_overrides.items()}
            unlisted = set(self._unlisted)
        out = []
        for number in self._numbers:
            if number.phone_number in unlisted:
                continue
            fields = {"PhoneNumber": number.phone_number, "VerifiedName": number.verified_name}
            fields |= number_state(number, period)
            fields |= overrides.get(number.phone_number, {})
            out.append(fields)
        return out

    def _can_send(self, node: str, key: str, computed: str) -> str:
        with self._lock:
            return self._can_send_overrides.get((node, key), computed)

    def _waba_can_send(self) -> str:
        computed = "LIMITED" if self.period() % 8 == 7 else "AVAILABLE"
        return self._can_send("waba", self.waba_id, computed)

    # -- control (/_sim/phone_numbers, /_sim/health) -------------------------------------------

    def override_number(self, doc: Mapping[str, Any]) -> None:
        """Set fields of a number (`VerifiedName`, `Status`, `QualityRating`,
        `MessagingLimitTier`), or `listed: false` to leave it out of the listing; `reset: true`
        drops its overrides. KeyError for an unknown number, ValueError for a bad field."""
        number = str(doc.get("phone_number", ""))
        if number not in self._by_number:
            raise KeyError(number)
        with self._lock:
            if doc.get("reset"):
                self._number_overrides.pop(number, None)
                self._unlisted.discard(number)
            fields = self._number_overrides.setdefault(number, {})
            for key, value in doc.items():
                if key in ("phone_number", "reset"):
                    continue
                if key == "listed":
                    (self._unlisted.discard if value else self._unlisted.add)(number)
                elif key in _NUMBER_FIELDS:
                    fields[key] = str(value)
                else:
                    raise ValueError(f"unknown field {key!r} (known: listed, {_NUMBER_FIELDS})")

    def override_can_send(self, doc: Mapping[str, Any]) -> None:
        """Set the CanSendMessage of one entity: `{"node": "template", "template_code": ...,
        "language": ..., "can_send": ...}`, `{"node": "phone", "phone_number": ...}` or
        `{"node": "waba"}`; `can_send: null` drops the override."""
        node = str(doc.get("node", ""))
        if node == "template":
            key = f"{doc.get('template_code', '')}:{doc.get('language', '')}"
        elif node == "phone":
            key = str(doc.get("phone_number", ""))
            if key not in self._by_number:
                raise KeyError(key)
        elif node == "waba":
            key = self.waba_id
        else:
            raise ValueError("node must be template, phone or waba")
        value = doc.get("can_send")
        with self._lock:
            if value is None:
                self._can_send_overrides.pop((node, key), None)
            else:
                self._can_send_overrides[(node, key)] = str(value)

    # -- actions -------------------------------------------------------------------------------

    def query_phone_numbers(self, params: Mapping[str, str]) -> dict[str, Any]:
        """QueryChatappPhoneNumbers: every number of the space (optionally of one Status)."""
        wanted = params.get("Status", "").upper()
        rows = [
            {
                **fields,
                "CodeVerificationStatus": "VERIFIED",
                "NameStatus": "APPROVED",
                "NewNameStatus": "NONE",
                "StatusCallbackUrl": "",
                "StatusQueue": "",
                "UpCallbackUrl": "",
                "UpQueue": "",
            }
            for fields in self.phone_numbers()
            if not wanted or fields["Status"].upper() == wanted
        ]
        return {
            "RequestId": request_id(),
            "Code": "OK",
            "Message": "success",
            "Success": True,
            "PhoneNumbers": rows,
        }

    def phone_number_metric(self, params: Mapping[str, str]) -> dict[str, Any]:
        """GetChatappPhoneNumberMetric: one number's rows for [Start, End), in the shape of
        --shape (an unknown number has no rows)."""
        phone = text_param(params, "PhoneNumber")
        query = metric_range(params, self._options.max_range_s)
        number = self._by_number.get(phone)
        data: list[dict[str, Any]] = []
        variants = self._variants()
        if number is not None:
            start, end, size = query.start_ms, query.end_ms, query.bucket_ms
            if self._options.numbers_send_templates:
                buckets = self._templates_sent(number, size, start, end)
            else:
                buckets = self._buckets(number.series, "", size, start, end)
            rows = shaped_rows(number.series, "", buckets, size, self._options.shape, start, end)
            if variants.any():  # the row variants, as template rows get them
                rows = variants.rows([dict(r, Cliented=[]) for r in rows], start, end)
            reads = not variants.on("number-no-read-count")
            for row in rows:
                item = {
                    "PhoneNumber": phone,
                    "SentCount": row["SentCount"],
                    "DeliveredCount": row["DeliveredCount"],
                    "Start": row["Start"],
                    "End": row["End"],
                    "Granularity": query.granularity,
                }
                if reads:
                    item["ReadCount"] = row["ReadCount"]
                data.append(item)
        body = {"RequestId": request_id(), "Code": "OK", "Message": "success", "Data": data}
        return variants.body(body)

    def _templates_sent(
        self, number: NumberDef, size: int, start: int, end: int
    ) -> list[tuple[int, Counts]]:
        """The buckets of every template-language this number sends, summed (no clicks)."""
        count = len(self._numbers)
        sums: dict[int, Counts] = {}
        for template in self._templates:
            if template.index % count != number.index or not self._sends(template.code):
                continue
            if self._live(template.code) is None:
                continue
            for language in self._options.languages:
                for bucket, counts in self._buckets(template, language, size, start, end):
                    plain = Counts(counts.sent, counts.delivered, counts.read, ())
                    sums[bucket] = sums[bucket].plus(plain) if bucket in sums else plain
        if not sums:  # no template of this number sends: zero rows, as for a quiet number
            return [
                (b, Counts(0, 0, 0, ()))
                for b, _ in self._buckets(number.series, "", size, start, end)
            ]
        return sorted(sums.items())

    @staticmethod
    def _entity(entity_type: str, why: str, can_send: str, **ids: str) -> dict[str, Any]:
        """One entity as the API spells it; `why` picks its errors when it is not AVAILABLE."""
        entity: dict[str, Any] = {"EntityType": entity_type, "CanSendMessage": can_send}
        entity |= {k: v for k, v in ids.items() if v}
        errors = _errors(why, can_send)
        if errors:
            entity["Errors"] = errors
        return entity

    def _in_waba(self, entity_type: str, why: str, can_send: str, **ids: str) -> dict[str, Any]:
        """An entity of this space's WABA: its own ids, then the WABA's and the business's."""
        return self._entity(
            entity_type, why, can_send, **ids, WabaId=self.waba_id, BusinessId=self.business_id
        )

    def _parents(self) -> list[dict[str, Any]]:
        waba = self._in_waba("WABA", "WABA", self._waba_can_send())
        business = self._entity("BUSINESS", "BUSINESS", "AVAILABLE", BusinessId=self.business_id)
        return [waba, business]

    def _template_node(self, params: Mapping[str, str]) -> dict[str, Any]:
        code = text_param(params, "TemplateCode")
        language = params.get("Language") or self._options.languages[0]
        template = self._live(code)
        unit = self._unit_index.get((code, language))
        if template is None or unit is None:
            raise invalid("TemplateCode", f"no template {code!r} in language {language!r}")
        step = (unit + self.period()) % 10
        computed = {0: "LIMITED", 5: "BLOCKED"}.get(step, "AVAILABLE")
        can_send = self._can_send("template", f"{code}:{language}", computed)
        return self._in_waba(
            "MESSAGE_TEMPLATE", "TEMPLATE", can_send, TemplateCode=code, Language=language
        )

    def _phone_node(self, params: Mapping[str, str]) -> dict[str, Any]:
        phone = text_param(params, "PhoneNumber")
        fields = next((f for f in self.phone_numbers() if f["PhoneNumber"] == phone), None)
        if fields is None:
            raise invalid("PhoneNumber", f"no phone number {phone!r} in this space")
        status = fields["Status"]
        can_send = self._can_send("phone", phone, _phone_can_send(status))
        why = status if status in ("FLAGGED", "RATE_LIMITED") else "PHONE"
        return self._in_waba("PHONE_NUMBER", why, can_send, PhoneNumber=phone)

    def health_status(self, params: Mapping[str, str]) -> dict[str, Any]:
        """GetWhatsappHealthStatus for one node and the nodes above it."""
        node = text_param(params, "NodeType")
        text_param(params, "CustSpaceId")
        waba_id = params.get("WabaId", "")
        if waba_id and waba_id != self.waba_id:
            raise invalid("WabaId", f"no WABA {waba_id!r} in this space")
        parents = self._parents()
        if node == "waba":
            entities = parents
        elif node == "phone":
            entities = [self._phone_node(params), *parents]
        elif node == "template":
            entities = [self._template_node(params), *parents]
        else:
            raise invalid("NodeType", f"expected template, phone or waba, got {node!r}")
        return {
            "RequestId": request_id(),
            "Code": "OK",
            "Message": "success",
            "Success": True,
            "Data": {
                "CanSendMessage": _worst([e["CanSendMessage"] for e in entities]),
                "Entities": entities,
            },
        }
