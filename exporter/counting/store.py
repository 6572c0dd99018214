"""The counter store: every unit's and phone number's `UnitState`, and the state file.

`CounterStore` is owned by the poller (all mutation happens under its lock) and is saved as
JSON with temp file + fsync + rename, so a crash never leaves a half-written state behind; a
file that cannot be read starts a fresh store with a one-line warning saying why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

from exporter.cams.answers import safe_text
from exporter.cams.model import NumberKey, UnitKey
from exporter.counting.state import STATE_VERSION, UnitState

log = logging.getLogger("cams_exporter.state")

_SAVE_BATCH = 200  # units per chunk written


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
