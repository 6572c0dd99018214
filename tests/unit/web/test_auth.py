"""exporter.web.auth without a socket: the Authorization header parsed, a decoy at bcrypt's
default cost for unknown users, a flood of wrong passwords that keeps the cached success, and a
changed hash that an old verdict does not meet."""

from __future__ import annotations

import base64

import bcrypt

from exporter.web.auth import BasicAuth, Verdict, parse_basic
from tests.kit.web import HASH, PASSWORD, bcrypt_calls
from tests.kit.web import basic_header as header

__all__ = ["bcrypt_calls"]  # the fixture, imported from tests.kit.web


def test_parse_basic() -> None:
    assert parse_basic(header("a", "b:c")) == (b"a", b"b:c")
    assert parse_basic("basic " + base64.b64encode(b"u:").decode()) == (b"u", b"")
    for bad in (None, "", "Basic", "Digest abc", "Basic " + base64.b64encode(b"nocolon").decode()):
        assert parse_basic(bad) is None


def test_unknown_users_are_checked_against_a_decoy_at_the_default_cost(
    bcrypt_calls: list[tuple[bytes, bytes]],
) -> None:
    auth = BasicAuth({"admin": HASH})  # a cost-4 hash
    assert auth.check(header("nobody", "whatever")) is Verdict.DENIED
    ((_, decoy),) = bcrypt_calls
    assert decoy.startswith(b"$2b$12$")
    assert decoy != HASH.encode()
    # The decoy's own password is unknown: nothing gets in with it, cached or not.
    assert auth.check(header("nobody", "whatever")) is Verdict.DENIED
    assert len(bcrypt_calls) == 1


def test_a_flood_of_distinct_wrong_passwords_keeps_the_cached_success(
    bcrypt_calls: list[tuple[bytes, bytes]],
) -> None:
    auth = BasicAuth({"admin": HASH}, failures=16)
    assert auth.check(header("admin", PASSWORD)) is Verdict.OK
    for index in range(40):
        assert auth.check(header("admin", f"wrong-{index}")) is Verdict.DENIED
    checks = len(bcrypt_calls)
    assert auth.check(header("admin", PASSWORD)) is Verdict.OK
    assert len(bcrypt_calls) == checks  # still cached


def test_a_changed_hash_is_not_met_by_an_old_verdict() -> None:
    new_hash = bcrypt.hashpw(b"new-password", bcrypt.gensalt(rounds=4)).decode()
    old = BasicAuth({"admin": HASH})
    assert old.check(header("admin", PASSWORD)) is Verdict.OK
    new = BasicAuth({"admin": new_hash})  # a reloaded web config builds a new BasicAuth
    assert new.check(header("admin", PASSWORD)) is Verdict.DENIED
    assert new.check(header("admin", "new-password")) is Verdict.OK
