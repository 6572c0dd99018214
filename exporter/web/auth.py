"""HTTP basic auth against the web config's bcrypt hashes, cached both ways.

bcrypt is slow by design (about 250 ms at cost 12), so:
- every verdict is cached, successes and failures in separate LRU caches keyed by a keyed hash
  (HMAC with a per-process random key) of user and password: a flood of wrong passwords, even
  distinct ones, cannot push a legitimate user's cached success out, and a repeated wrong
  password costs one bcrypt check, not one per request;
- one bcrypt check runs at a time, and at most `max_waiting` requests queue for one: beyond
  that a request that would need a check is `busy` without waiting (the server says 429), so a
  flood never holds the server's threads while cached scrapes go through untouched;
- an unknown user is checked against a decoy hash at bcrypt's default cost (12), so that
  timing does not tell which user names exist.
A `BasicAuth` belongs to one user list; a reloaded web config builds a new one (so a changed
hash never meets an old cached verdict).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from collections.abc import Mapping
from enum import Enum

import bcrypt
from cachetools import LRUCache

_SUCCESS_CACHE_SIZE = 256
_FAILURE_CACHE_SIZE = 4096
_DECOY_COST = 12  # bcrypt.gensalt()'s default
MAX_WAITING = 16  # requests running or queued for a bcrypt check at once


class Verdict(Enum):
    """The outcome of one check."""

    OK = "ok"
    DENIED = "denied"
    BUSY = "busy"  # would need a bcrypt check while too many are already waiting for one


def parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) of an `Authorization: Basic` header, None when it is not one."""
    if not header:
        return None
    scheme, _, param = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(param.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user, password


class BasicAuth:
    """Checks `Authorization: Basic` headers against user -> bcrypt hash; thread-safe."""

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        max_waiting: int = MAX_WAITING,
        successes: int = _SUCCESS_CACHE_SIZE,
        failures: int = _FAILURE_CACHE_SIZE,
    ) -> None:
        self._users = tuple((u.encode("utf-8"), h.encode("ascii")) for u, h in users.items())
        self._key = os.urandom(32)
        self._successes: LRUCache[bytes, bool] = LRUCache(maxsize=successes)
        self._failures: LRUCache[bytes, bool] = LRUCache(maxsize=failures)
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()
        self._waiting = 0
        self._max_waiting = max_waiting
        self._decoy: bytes | None = None

    @property
    def checks_in_progress(self) -> int:
        """Requests running or queued for a bcrypt check now."""
        return self._waiting

    def _decoy_hash(self) -> bytes:
        # Made on first need (under the bcrypt lock), from a password nobody knows.
        if self._decoy is None:
            secret = os.urandom(24).hex().encode()
            self._decoy = bcrypt.hashpw(secret, bcrypt.gensalt(rounds=_DECOY_COST))
        return self._decoy

    def _cache_key(self, user: bytes, password: bytes) -> bytes:
        message = len(user).to_bytes(4, "big") + user + password
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _cached(self, key: bytes) -> Verdict | None:
        with self._cache_lock:
            if key in self._successes:
                self._successes[key] = True  # refresh its place in the LRU order
                return Verdict.OK
            if key in self._failures:
                return Verdict.DENIED
        return None

    def _remember(self, key: bytes, ok: bool) -> None:
        with self._cache_lock:
            (self._successes if ok else self._failures)[key] = True

    def quick_check(self, header: str | None) -> Verdict | None:
        """The verdict when it needs no bcrypt check (cached, malformed, or the check queue
        full), None when `check` has to run one. Cheap: the connection loop calls it."""
        credentials = parse_basic(header)
        if credentials is None:
            return Verdict.DENIED
        cached = self._cached(self._cache_key(*credentials))
        if cached is not None:
            return cached
        return Verdict.BUSY if self._waiting >= self._max_waiting else None

    def check(self, header: str | None) -> Verdict:
        """The verdict for one request's `Authorization` header (may run a bcrypt check)."""
        credentials = parse_basic(header)
        if credentials is None:
            return Verdict.DENIED
        user, password = credentials
        key = self._cache_key(user, password)
        cached = self._cached(key)
        if cached is not None:
            return cached
        matched: bytes | None = None
        for name, hashed in self._users:
            if hmac.compare_digest(name, user):
                matched = hashed
        with self._cache_lock:
            if self._waiting >= self._max_waiting:
                return Verdict.BUSY
            self._waiting += 1
        try:
            with self._bcrypt_lock:
                cached = self._cached(key)  # checked by another request while this one waited
                if cached is not None:
                    return cached
                try:
                    valid = bcrypt.checkpw(
                        password, matched if matched is not None else self._decoy_hash()
                    )
                except ValueError:  # e.g. a password longer than bcrypt's 72 bytes
                    valid = False
                ok = valid and matched is not None
                self._remember(key, ok)
        finally:
            with self._cache_lock:
                self._waiting -= 1
        return Verdict.OK if ok else Verdict.DENIED
