"""The generic part of the config checker: walking mappings and lists, and reading scalar
values (strings, numbers, integers, booleans, durations, dates) with one problem line per bad
value, `key.path: message`.

A value that came from the environment may stand for a number or a boolean; a secret is never
shown in a message (only what kind of value it is).
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from exporter.config.durations import format_duration, parse_duration
from exporter.config.env import Expanded, Unresolved

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_ENV_INT = re.compile(r"[+-]?\d+")
_MAX_SHOWN = 60
ABSENT = object()
N = TypeVar("N", int, float)
T = TypeVar("T")


def _is_datetime(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def kind(value: Any) -> str:
    """What a value is, without showing it (used for secrets)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, dt.datetime):
        return "a timestamp"
    if isinstance(value, dt.date):
        return "a date"
    return f"a value of type {type(value).__name__}"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def show(value: Any) -> str:
    """A short, one-line rendering of a (non-secret) value for a message."""
    if isinstance(value, Expanded):
        return f"{_clip(value.source)} (from the environment)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = repr(value)
        return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 4] + "...'"
    if isinstance(value, int | float):
        return _clip(repr(value))
    if isinstance(value, dt.date):  # also datetime
        return value.isoformat()
    return kind(value)


def number_text(value: float) -> str:
    value = float(value)
    if math.isfinite(value) and value.is_integer():
        return _clip(str(int(value)))
    return _clip(repr(value))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a value was not taken (the message after `key.path: `)."""

    message: str


def _int_text(value: int) -> str:
    return _clip(str(value))


def _as_float(value: Any) -> float | None:
    """The number a config value stands for (inf past the float range), None if it is none."""
    if isinstance(value, bool) or not isinstance(value, int | float | Expanded):
        return None
    if isinstance(value, Expanded):
        return float(value) if _ENV_NUMBER.fullmatch(value.strip()) else None
    try:
        return float(value)
    except OverflowError:
        return float("inf")


def _as_int(value: Any) -> int | None:
    """The integer a config value stands for, None if it is none."""
    if isinstance(value, Expanded) and _ENV_INT.fullmatch(value.strip()):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _ranged(
    value: Any,
    bounds: tuple[N, N],
    kind: str,
    parse: Callable[[Any], N | None],
    text: Callable[[N], str],
) -> N | Refusal:
    """`value` as `parse` reads it, when it is within `bounds` (inclusive)."""
    number = parse(value)
    if number is None:
        return Refusal(f"must be {kind}, got {show(value)}")
    low, high = bounds
    if not low <= number <= high:
        return Refusal(f"must be between {text(low)} and {text(high)}, got {text(number)}")
    return number


def _as_boolean(value: Any) -> bool | Refusal:
    if isinstance(value, bool):
        return value
    if isinstance(value, Expanded) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return Refusal(f"must be true or false, got {show(value)}")


def _as_duration(value: Any) -> float | Refusal:
    example = "such as 30s, 5m, 1h, 3d"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Refusal(f"must be a duration {example}, got {show(value)} (add a unit, e.g. 300s)")
    if not isinstance(value, str):
        return Refusal(f"must be a duration {example}, got {show(value)}")
    try:
        seconds = parse_duration(value)
    except (ValueError, OverflowError):
        return Refusal(f"must be a duration {example}, got {show(value)}")
    if not seconds > 0:
        return Refusal(f"must be greater than 0, got {show(value)}")
    return seconds


def _as_date(value: Any, today: dt.date) -> dt.date | Refusal:
    day: dt.date
    if isinstance(value, dt.datetime):
        return Refusal(f"must be a date (YYYY-MM-DD) without a time, got {show(value)}")
    if isinstance(value, dt.date):
        day = value
    elif isinstance(value, str):
        try:
            day = dt.date.fromisoformat(value.strip())
        except ValueError:
            if _is_datetime(value):
                return Refusal(f"must be a date (YYYY-MM-DD) without a time, got {show(value)}")
            return Refusal(f"must be an ISO date (YYYY-MM-DD), got {show(value)}")
    else:
        return Refusal(f"must be an ISO date (YYYY-MM-DD), got {show(value)}")
    if day > today:
        return Refusal(f"must not be in the future, got {day.isoformat()}")
    return day


def duration_text(seconds: float) -> str:
    seconds = float(seconds)
    if seconds.is_integer() and seconds >= 1:
        return format_duration(seconds)
    return f"{seconds:g}s"


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Checker:
    """Collects problems while reading values out of the expanded tree."""

    def __init__(self, source: str, today: dt.date) -> None:
        self.source = source
        self.today = today
        self.problems: list[str] = []

    # -- bookkeeping -------------------------------------------------------------------------------

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path or self.source}: {message}")

    def unknown_key(self, path: str, key: Any, allowed: tuple[str, ...], secret: bool) -> None:
        close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        plain = isinstance(key, str) and _PLAIN_KEY.fullmatch(key) is not None
        if plain and (close or not secret):
            expected = "" if close else f" (expected one of: {', '.join(allowed)})"
            self.add(child(path, key), f"unknown key{hint}{expected}")
        elif secret:  # the key itself might be a misplaced secret: never show it
            self.add(path, f"unknown key (expected one of: {', '.join(allowed)})")
        else:
            expected = "" if close else f" (expected one of: {', '.join(allowed)})"
            self.add(path, f"unknown key {show(key)}{hint}{expected}")

    def mapping(
        self,
        value: Any,
        path: str,
        allowed: tuple[str, ...],
        *,
        secret: bool = False,
        what: str = "a mapping",
    ) -> dict[Any, Any] | None:
        """The mapping at `path` with unknown keys reported, or None (problem recorded)."""
        if isinstance(value, Unresolved):
            self.add(path, value.reason)
            return None
        if not isinstance(value, dict):
            shown = kind(value) if secret else show(value)
            self.add(path, f"must be {what}, got {shown}")
            return None
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                self.unknown_key(path, key, allowed, secret)
        for key, (line, first) in getattr(value, "duplicates", {}).items():
            if isinstance(key, str) and key in allowed:  # unknown keys are reported above
                self.add(child(path, key), f"duplicate key at line {line} (first at line {first})")
        return value

    def items(self, value: Any, path: str, what: str) -> list[Any] | None:
        """The list at `path`, or None (problem recorded)."""
        if isinstance(value, Unresolved):
            self.add(path, value.reason)
            return None
        if not isinstance(value, list):
            self.add(path, f"must be a list of {what}, got {show(value)}")
            return None
        return value

    # -- scalars -----------------------------------------------------------------------------------
    # Each getter returns the value, or None when the key is absent/null or the value is invalid
    # (then a problem is recorded).

    def _raw(self, node: Mapping[Any, Any], key: str, path: str) -> Any:
        value = node.get(key, ABSENT)
        if isinstance(value, Unresolved):
            self.add(path, value.reason)
            return ABSENT
        return ABSENT if value is None else value

    def string(
        self,
        node: Mapping[Any, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        secret: bool = False,
    ) -> str | None:
        """A string; "" counts as absent for optional keys and as a problem for required ones."""
        full = child(path, key)
        value = node.get(key, ABSENT)
        if isinstance(value, Unresolved):
            self.add(full, value.reason)
            return None
        if value is ABSENT or value is None:
            if required:
                self.add(full, "required")
            return None
        if not isinstance(value, str):
            shown = kind(value) if secret else show(value)
            hint = " (quote it)" if isinstance(value, int | float) and not secret else ""
            self.add(full, f"must be a string, got {shown}{hint}")
            return None
        if not value.strip():
            if required:
                self.add(full, "must not be empty")
            return None
        return str(value)

    def _read(
        self, node: Mapping[Any, Any], key: str, path: str, convert: Callable[[Any], T | Refusal]
    ) -> T | None:
        """What `convert` makes of the value at `key`; None when absent or refused."""
        full = child(path, key)
        value = self._raw(node, key, full)
        if value is ABSENT:
            return None
        result = convert(value)
        if isinstance(result, Refusal):
            self.add(full, result.message)
            return None
        return result

    def number(
        self, node: Mapping[Any, Any], key: str, path: str, low: float, high: float
    ) -> float | None:
        return self._read(
            node, key, path, lambda v: _ranged(v, (low, high), "a number", _as_float, number_text)
        )

    def integer(
        self, node: Mapping[Any, Any], key: str, path: str, low: int, high: int
    ) -> int | None:
        return self._read(
            node, key, path, lambda v: _ranged(v, (low, high), "an integer", _as_int, _int_text)
        )

    def boolean(self, node: Mapping[Any, Any], key: str, path: str) -> bool | None:
        return self._read(node, key, path, _as_boolean)

    def duration(self, node: Mapping[Any, Any], key: str, path: str) -> float | None:
        """A Prometheus-style duration string, in seconds, > 0."""
        return self._read(node, key, path, _as_duration)

    def date(self, node: Mapping[Any, Any], key: str, path: str) -> dt.date | None:
        """A calendar date (YAML date or ISO string), not after today (UTC)."""
        return self._read(node, key, path, lambda v: _as_date(v, self.today))
