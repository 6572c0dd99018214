"""Exact cumulative counters: counts kept per bucket, settled totals, atomic persistence.

The API reports counts per time bucket, and a bucket keeps changing for days (late reads). So
each unit keeps the latest value of every bucket it has read since its origin: re-reading a
bucket replaces its value, never adds to it. A counter is the settled total (buckets that ended
before the lookback window, folded) plus the live buckets. A re-read that comes back lower than
what was already exported is a downward revision: the old value is held, so a counter never
goes down, and the revision is counted.

`CounterStore` is owned by the poller (all mutation happens under its lock) and is saved as
JSON with temp file + fsync + rename, so a crash never leaves a half-written state behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exporter.cams.answers import safe_text
from exporter.cams.model import MetricRow, NumberKey, TemplateMeta, UnitKey, button_type_label

log = logging.getLogger("cams_exporter.state")

STATE_VERSION = 1
_SAVE_BATCH = 200  # units per chunk written
ClickKey = tuple[str, str]  # (button_type label, button text)


@dataclass(frozen=True, slots=True)
class Counts:
    """Cumulative counts of one unit. `clicks` is sorted ((button_type, button, count), ...)."""

    sent: int = 0
    delivered: int = 0
    read: int = 0
    clicks: tuple[tuple[str, str, int], ...] = ()


@dataclass(slots=True)
class Tally:
    """Mutable counts of one bucket or one settled total."""

    sent: int = 0
    delivered: int = 0
    read: int = 0
    clicks: dict[ClickKey, int] = field(default_factory=dict)

    @classmethod
    def of_rows(cls, rows: Iterable[MetricRow]) -> Tally:
        """The sum of some rows (button types normalised to their label)."""
        tally = cls()
        for row in rows:
            tally.sent += row.sent
            tally.delivered += row.delivered
            tally.read += row.read
            for click in row.clicks:
                key = (button_type_label(click.button_type), click.content)
                tally.clicks[key] = tally.clicks.get(key, 0) + click.count
        return tally

    def add(self, other: Tally) -> None:
        """Add another tally into this one."""
        self.sent += other.sent
        self.delivered += other.delivered
        self.read += other.read
        for key, count in other.clicks.items():
            self.clicks[key] = self.clicks.get(key, 0) + count

    def held_max(self, new: Tally) -> tuple[Tally, bool]:
        """`new`, except that any field lower than ours keeps our value; and whether one did."""
        merged = Tally(
            max(self.sent, new.sent), max(self.delivered, new.delivered), max(self.read, new.read)
        )
        merged.clicks = dict(new.clicks)
        for key, count in self.clicks.items():
            merged.clicks[key] = max(count, merged.clicks.get(key, 0))
        revised = (
            new.sent < self.sent
            or new.delivered < self.delivered
            or new.read < self.read
            or any(new.clicks.get(k, 0) < v for k, v in self.clicks.items())
        )
        return merged, revised

    @property
    def active(self) -> bool:
        """Whether anything happened in this bucket."""
        return bool(self.sent or self.delivered or self.read or any(self.clicks.values()))

    def to_json(self) -> list[Any]:
        """Compact JSON form: [sent, delivered, read, [[type, button, count], ...]]."""
        clicks = [[t, b, c] for (t, b), c in sorted(self.clicks.items())]
        return [self.sent, self.delivered, self.read, clicks]

    @classmethod
    def from_json(cls, data: Any) -> Tally:
        """Inverse of to_json; ValueError when malformed."""
        if not isinstance(data, list) or len(data) != 4:
            raise ValueError("tally must be [sent, delivered, read, clicks]")
        sent, delivered, read, clicks = data
        tally = cls(_count(sent), _count(delivered), _count(read))
        if not isinstance(clicks, list):
            raise ValueError("clicks must be a list")
        for item in clicks:
            if not isinstance(item, list) or len(item) != 3:
                raise ValueError("click must be [type, button, count]")
            # Texts an older version stored unsanitised collapse onto one safe label.
            key = (safe_text(item[0]), safe_text(item[1]))
            tally.clicks[key] = tally.clicks.get(key, 0) + _count(item[2])
        return tally


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"count must be a non-negative integer, got {value!r}")
    return value


@dataclass(slots=True)
class Bucket:
    """The latest (held) counts of one bucket [start_ms, end_ms)."""

    end_ms: int
    tally: Tally


@dataclass(slots=True)
class UnitState:
    """Counters of one unit: settled total + live buckets since `settled_until_ms`."""

    origin_ms: int
    settled_until_ms: int
    granularity: str = "DAILY"
    settled: Tally = field(default_factory=Tally)
    buckets: dict[int, Bucket] = field(default_factory=dict)
    meta: TemplateMeta = field(default_factory=TemplateMeta)  # as last listed, for restarts
    newest_data_ms: int | None = None
    last_success: float | None = None
    last_error: str | None = None
    revisions_held: int = 0
    changed_at: float | None = None  # unix seconds: when a read last found its counts changed
    # Not persisted: an empty answer settles nothing until a second one agrees.
    empty_answer_at: int | None = None  # settled_until when a per-bucket read came back empty
    empty_reads: set[int] = field(default_factory=set)  # aggregate reads seen empty once

    def put(self, start_ms: int, end_ms: int, tally: Tally) -> bool:
        """Replace bucket [start_ms, end_ms) with `tally`, holding any downward revision.

        Returns True when a field came back lower than before (and was held).
        """
        if end_ms <= self.settled_until_ms:
            return False  # already folded into the settled total
        if tally.active and (self.newest_data_ms is None or start_ms > self.newest_data_ms):
            self.newest_data_ms = start_ms
        old = self.buckets.get(start_ms)
        if old is None:
            self.buckets[start_ms] = Bucket(end_ms, tally)
            return False
        merged, revised = old.tally.held_max(tally)
        self.buckets[start_ms] = Bucket(max(end_ms, old.end_ms), merged)
        if revised:
            self.revisions_held += 1
        return revised

    def put_rows(self, rows: Iterable[MetricRow]) -> int:
        """Apply per-bucket rows (one per bucket; duplicates merged); revisions held."""
        grouped: dict[int, tuple[int, Tally]] = {}
        for row in rows:
            tally = Tally.of_rows((row,))
            end = max(row.end_ms, row.start_ms + 1)
            if row.start_ms in grouped:
                prev_end, prev = grouped[row.start_ms]
                tally, _ = prev.held_max(tally)
                end = max(end, prev_end)
            grouped[row.start_ms] = (end, tally)
        return sum(self.put(start, end, tally) for start, (end, tally) in grouped.items())

    def fold(self, boundary_ms: int) -> None:
        """Move buckets that ended by `boundary_ms` into the settled total.

        The caller must have just read every bucket from `settled_until_ms` up to now, so that
        nothing before `boundary_ms` can still be missing (sparse answers leave out buckets
        with no activity: those are zero). A bucket that straddles the boundary stays live.
        """
        if boundary_ms <= self.settled_until_ms:
            return
        for start in sorted(self.buckets):
            bucket = self.buckets[start]
            if bucket.end_ms <= boundary_ms:
                self.settled.add(bucket.tally)
                del self.buckets[start]
        self.settled_until_ms = boundary_ms

    def total(self) -> Counts:
        """The exported counters: settled + every live bucket."""
        total = Tally()
        total.add(self.settled)
        for bucket in self.buckets.values():
            total.add(bucket.tally)
        return Counts(
            sent=total.sent,
            delivered=total.delivered,
            read=total.read,
            clicks=tuple((t, b, c) for (t, b), c in sorted(total.clicks.items())),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form for the state file."""
        return {
            "origin": self.origin_ms,
            "settled_until": self.settled_until_ms,
            "granularity": self.granularity,
            "settled": self.settled.to_json(),
            "buckets": [[s, b.end_ms, b.tally.to_json()] for s, b in sorted(self.buckets.items())],
            "meta": list(self.meta),
            "newest": self.newest_data_ms,
            "last_success": self.last_success,
            "changed": self.changed_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> UnitState:
        """Inverse of to_json; ValueError when malformed."""
        if not isinstance(data, dict):
            raise ValueError("unit must be an object")
        unit = cls(
            origin_ms=_count(data["origin"]),
            settled_until_ms=_count(data["settled_until"]),
            granularity=str(data.get("granularity", "DAILY")),
            settled=Tally.from_json(data["settled"]),
        )
        for item in data.get("buckets", []):
            start, end, tally = item
            unit.buckets[_count(start)] = Bucket(_count(end), Tally.from_json(tally))
        meta = data.get("meta") or ["", "", ""]
        if not isinstance(meta, list) or len(meta) != len(TemplateMeta._fields):
            raise ValueError("unit meta must be [name, category, audit status]")
        unit.meta = TemplateMeta(*(safe_text(x) for x in meta))
        newest = data.get("newest")
        unit.newest_data_ms = _count(newest) if newest is not None else None
        last = data.get("last_success")
        unit.last_success = float(last) if isinstance(last, int | float) else None
        changed = data.get("changed")  # absent in files of versions before idle polling
        unit.changed_at = float(changed) if isinstance(changed, int | float) else None
        return unit


def _key_to_json(key: UnitKey) -> str:
    return json.dumps(
        [key.account, key.space, key.template_code, key.language, key.template_type],
        ensure_ascii=False,
    )


def _strings_from_json(text: str, count: int, what: str) -> list[str]:
    parts = json.loads(text)
    if (
        not isinstance(parts, list)
        or len(parts) != count
        or not all(isinstance(p, str) for p in parts)
    ):
        raise ValueError(f"{what} key must be a list of {count} strings")
    return [safe_text(p) for p in parts]


def _key_from_json(text: str) -> UnitKey:
    return UnitKey(*_strings_from_json(text, 5, "unit"))


def _number_to_json(key: NumberKey) -> str:
    return json.dumps([key.account, key.space, key.phone_number], ensure_ascii=False)


def _number_from_json(text: str) -> NumberKey:
    return NumberKey(*_strings_from_json(text, 3, "number"))


def _temp_prefix(path: str) -> str:
    """Temporary files of `save` are named after the state file: `.state.json.XXXX.tmp`."""
    return f".{os.path.basename(path)}."


def _remove_leftovers(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    removed = 0
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
                removed += 1
    if removed:
        log.info("removed %d temporary state file(s) a crash left in %s", removed, directory)


class CounterStore:
    """All units' counters, the phone numbers' counters (sender health), and per-account facts
    learned from the API (the answer shape, per action)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.units: dict[UnitKey, UnitState] = {}
        self.numbers: dict[NumberKey, UnitState] = {}
        self.shapes: dict[str, str] = {}

    def __iter__(self) -> Iterator[tuple[UnitKey, UnitState]]:
        return iter(list(self.units.items()))

    def to_json(self) -> dict[str, Any]:
        """The whole store as a JSON-ready object."""
        with self.lock:
            return {
                "version": STATE_VERSION,
                "shapes": dict(self.shapes),
                "units": {_key_to_json(k): u.to_json() for k, u in self.units.items()},
                "numbers": {_number_to_json(k): u.to_json() for k, u in self.numbers.items()},
            }

    @classmethod
    def from_json(cls, data: Any) -> CounterStore:
        """Inverse of to_json; ValueError (or KeyError/TypeError) when malformed."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} state file")
        store = cls()
        shapes = data.get("shapes", {})
        if not isinstance(shapes, dict):
            raise ValueError("shapes must be an object")
        store.shapes = {str(k): str(v) for k, v in shapes.items()}
        units = data.get("units", {})
        if not isinstance(units, dict):
            raise ValueError("units must be an object")
        for key, unit in units.items():
            unit_key = _key_from_json(key)
            if unit_key in store.units:  # two stored labels that differ only in unsafe text
                log.warning("state file: dropping a second unit with the labels of %s", unit_key)
                continue
            store.units[unit_key] = UnitState.from_json(unit)
        numbers = data.get("numbers", {})  # absent in files of versions before sender health
        if not isinstance(numbers, dict):
            raise ValueError("numbers must be an object")
        for key, unit in numbers.items():
            store.numbers.setdefault(_number_from_json(key), UnitState.from_json(unit))
        return store

    def chunks(self, batch: int = _SAVE_BATCH) -> Iterator[bytes]:
        """The JSON of `to_json`, a few hundred units at a time.

        Each unit is encoded under the lock on its own and the lock is let go between units, so
        a save of a hundred thousand units never holds the GIL (json's C encoder does, for a
        whole call) or the lock for long: scrapes and polling go on meanwhile. Counters only
        grow, so a unit encoded later than another never holds less than a scrape has seen.
        """
        with self.lock:
            shapes = dict(self.shapes)
        head = {"version": STATE_VERSION, "shapes": shapes}
        yield json.dumps(head, separators=(",", ":"))[:-1].encode("utf-8")
        tables: tuple[tuple[str, dict[Any, UnitState], Callable[[Any], str]], ...] = (
            ("units", self.units, _key_to_json),
            ("numbers", self.numbers, _number_to_json),
        )
        for name, table, key_text in tables:
            yield f',"{name}":{{'.encode()
            yield from self._table_chunks(table, key_text, batch)
            yield b"}"
        yield b"}"

    def _table_chunks(
        self, table: dict[Any, UnitState], key_text: Callable[[Any], str], batch: int
    ) -> Iterator[bytes]:
        with self.lock:
            keys = list(table)
        parts: list[str] = []
        first = True
        for key in keys:
            with self.lock:
                unit = table.get(key)
                data = None if unit is None else unit.to_json()
            if data is None:
                continue
            body = json.dumps(data, separators=(",", ":"))
            parts.append(("" if first else ",") + json.dumps(key_text(key)) + ":" + body)
            first = False
            if len(parts) >= batch:
                yield "".join(parts).encode("utf-8")
                parts = []
        if parts:
            yield "".join(parts).encode("utf-8")

    def save(self, path: str) -> None:
        """Write atomically: temp file in the same directory, fsync, rename, fsync the dir."""
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in self.chunks():
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        try:
            dir_fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path: str) -> tuple[CounterStore, str | None]:
        """The stored counters, or a fresh store and a one-line warning saying why.

        Temporary files a crash (kill -9 during `save`) left beside the state file are removed.
        """
        _remove_leftovers(path)
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return cls(), None
        except OSError as exc:
            return cls(), f"state file {path} is unreadable ({exc.strerror}); starting fresh"
        try:
            return cls.from_json(json.loads(raw)), None
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return cls(), f"state file {path} is corrupt ({reason}); starting fresh"
