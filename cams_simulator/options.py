"""What shapes a simulator: its options, the fault spec, and the constants of the API it plays.

Two simulators built from equal `SimulatorOptions` serve equal data (faults aside). Everything
here is a frozen value; `parse_faults` turns `throttle=0.05,5xx=0.02,...,seed=7` into a
`FaultSpec` and names the bad item when it cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from cams_simulator.variants import parse_fraction, parse_variants
from exporter.cams.actions import (
    HEALTH_ACTION,
    LIST_ACTION,
    METRIC_ACTION,
    PHONE_METRIC_ACTION,
    PHONE_NUMBERS_ACTION,
)

SENDER_ACTIONS: Final = (PHONE_NUMBERS_ACTION, PHONE_METRIC_ACTION, HEALTH_ACTION)
ACTIONS: Final = (METRIC_ACTION, LIST_ACTION, *SENDER_ACTIONS)
SHAPES: Final = ("per-bucket", "aggregate", "utc8", "sparse")
GRANULARITIES: Final = ("DAILY", "HALF_HOUR")
SIGNATURE_WINDOW_S: Final = 15 * 60
MAX_PAGE_SIZE: Final = 100
DEFAULT_LISTEN: Final = "127.0.0.1:18080"
LANGUAGE_CODE: Final = re.compile(r"^[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*$")

# (spec name, FaultSpec field) in the order a draw walks them.
_FAULT_NAMES: Final = (
    ("throttle", "throttle"),
    ("5xx", "server_error"),
    ("timeout", "timeout"),
    ("reset", "reset"),
    ("malformed", "malformed"),
    ("error200", "error200"),
)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Per-request fault probabilities (each 0..1, together at most 1) and the draw's seed."""

    throttle: float = 0.0
    server_error: float = 0.0  # "5xx" in the spec: 503 ServiceUnavailable or 500 InternalError
    timeout: float = 0.0
    reset: float = 0.0
    malformed: float = 0.0
    error200: float = 0.0
    seed: int | None = None

    def probabilities(self) -> tuple[tuple[str, float], ...]:
        """(spec name, probability) for every fault kind, in drawing order."""
        return tuple((name, float(getattr(self, attr))) for name, attr in _FAULT_NAMES)

    @property
    def active(self) -> bool:
        """True when any fault has a positive probability."""
        return any(p > 0 for _, p in self.probabilities())


def parse_faults(spec: str) -> FaultSpec:
    """Parse `throttle=0.05,5xx=0.02,...,seed=7`; ValueError names the bad item."""
    values: dict[str, float] = {}
    seed: int | None = None
    attrs = dict(_FAULT_NAMES)
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, text = (part.strip() for part in item.partition("="))
        if not sep or not name or not text:
            raise ValueError(f"fault {item!r}: expected NAME=VALUE")
        if name == "seed":
            try:
                seed = int(text)
            except ValueError:
                raise ValueError(f"fault {item!r}: seed must be an integer") from None
            continue
        if name not in attrs:
            known = ", ".join([*attrs, "seed"])
            raise ValueError(f"fault {item!r}: unknown fault {name!r} (known: {known})")
        if attrs[name] in values:
            raise ValueError(f"fault {item!r}: {name} is given twice")
        values[attrs[name]] = parse_fraction(text, f"fault {item!r}: probability")
    total = sum(values.values())
    if total > 1.0 + 1e-9:
        raise ValueError(f"faults {spec.strip()!r}: probabilities add up to {total:g}, more than 1")
    return FaultSpec(
        throttle=values.get("throttle", 0.0),
        server_error=values.get("server_error", 0.0),
        timeout=values.get("timeout", 0.0),
        reset=values.get("reset", 0.0),
        malformed=values.get("malformed", 0.0),
        error200=values.get("error200", 0.0),
        seed=seed,
    )


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """Everything that shapes a simulator; two simulators with equal options serve equal data."""

    templates: int = 20
    languages: tuple[str, ...] = ("en", "es")
    seed: int = 1
    static: bool = False
    history_s: float = 90 * 86400
    access_key_id: str = "demo"
    access_key_secret: str = "demo-secret"
    qps_limit: float = 50
    list_qps_limit: float = 5
    latency_s: float = 0.0
    max_range_s: float = 30 * 86400
    faults: str = ""
    shape: str = "per-bucket"  # per-bucket | aggregate | utc8 | sparse
    timeout_fault_s: float = 15.0  # how long a 'timeout' fault stays silent before closing
    phone_numbers: int = 3  # business phone numbers QueryChatappPhoneNumbers lists
    sender_period_s: float = 600.0  # how often ratings, tiers and can-send states move on
    numbers_qps_limit: float = 10  # QueryChatappPhoneNumbers requests per second
    number_metric_qps_limit: float = 50  # GetChatappPhoneNumberMetric requests per second
    health_qps_limit: float = 5  # GetWhatsappHealthStatus requests per second
    variants: str = ""  # answer variants, e.g. "page-cap,utc8-flip=0.5" (simulator.variants)
    read_reset: bool = False  # reads and clicks of days past the 7-day read window answer 0
    # Idle accounts: only the first round(templates x active_share) templates send; each of
    # `wakes` (template index, start, stop; unix seconds) is a silent one that sends from start
    # to the end of stop's day (stop may be inf).
    active_share: float = 1.0
    wakes: tuple[tuple[int, float, float], ...] = ()
    # A number's counts are the sums of its templates' (template k sends from number
    # k % phone_numbers), instead of a series of its own: the numbers send only templates.
    numbers_send_templates: bool = False

    @property
    def active_templates(self) -> int:
        """How many templates (the first ones) send all along."""
        return round(self.templates * self.active_share)

    def __post_init__(self) -> None:
        problems = []
        if self.templates < 0:
            problems.append(f"templates must be >= 0, got {self.templates}")
        if not 0 <= self.phone_numbers <= 10_000:
            problems.append(f"phone_numbers must be between 0 and 10000, got {self.phone_numbers}")
        if not self.languages:
            problems.append("languages must not be empty")
        for language in self.languages:
            if not LANGUAGE_CODE.match(language):
                problems.append(f"language {language!r} is not a language code like en or pt_BR")
        if len(set(self.languages)) != len(self.languages):
            problems.append("languages must not repeat")
        if not self.access_key_id or not self.access_key_secret:
            problems.append("access key id and secret must not be empty")
        positive = (
            "history_s",
            "max_range_s",
            "qps_limit",
            "list_qps_limit",
            "sender_period_s",
            "numbers_qps_limit",
            "number_metric_qps_limit",
            "health_qps_limit",
        )
        for name in positive:
            if not float(getattr(self, name)) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("latency_s", "timeout_fault_s"):
            if not float(getattr(self, name)) >= 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.active_share <= 1.0:
            problems.append(f"active_share must be between 0 and 1, got {self.active_share}")
        for index, start, stop in self.wakes:
            if not self.active_templates <= index < self.templates:
                problems.append(
                    f"wakes: template {index} is not one of the silent templates "
                    f"{self.active_templates}..{self.templates - 1}"
                )
            if not start <= stop:
                problems.append(
                    f"wakes: template {index} stops ({stop}) before it starts ({start})"
                )
        if self.shape not in SHAPES:
            problems.append(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if problems:
            raise ValueError("; ".join(problems))
        parse_faults(self.faults)
        parse_variants(self.variants)
