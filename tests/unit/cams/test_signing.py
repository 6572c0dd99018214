"""Our V3 and V1 signatures equal those of Alibaba's official SDK helpers."""

from __future__ import annotations

import hashlib
import types

from alibabacloud_tea_openapi.utils import Utils
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.cams import signing

EMPTY = hashlib.sha256(b"").hexdigest()
V3_HEADERS = {
    "host": "cams.ap-southeast-1.aliyuncs.com",
    "x-acs-action": "GetChatappTemplateMetric",
    "x-acs-version": "2020-06-06",
    "x-acs-date": "2024-01-01T00:00:00Z",
    "x-acs-signature-nonce": "nonce-1",
    "x-acs-content-sha256": EMPTY,
}


def sdk_authorization(
    query: dict[str, str], headers: dict[str, str], ak: str, secret: str, payload: str = EMPTY
) -> str:
    request = types.SimpleNamespace(pathname="/", method="POST", query=query, headers=headers)
    result: str = Utils.get_authorization(request, "ACS3-HMAC-SHA256", payload, ak, secret)
    return result


def ours(query: dict[str, str], headers: dict[str, str], ak: str, secret: str) -> str:
    return signing.v3_authorization(
        method="POST",
        pathname="/",
        query=query,
        headers=headers,
        payload_hash=headers.get("x-acs-content-sha256", EMPTY),
        access_key_id=ak,
        secret=secret,
    )


def test_v3_fixed_vector_from_the_notes() -> None:
    query = {
        "CustSpaceId": "cams-1",
        "End": "1700086400000",
        "Granularity": "DAILY",
        "Language": "en",
        "Start": "1700000000000",
        "TemplateCode": "t1",
    }
    auth = ours(query, V3_HEADERS, "testid", "testsecret")
    assert auth.endswith(
        "Signature=dc0cc958a0fbf31ad5dee46a44f7df6b3a53cb103fbb2c437019e5fdcb447ccc"
    )
    assert "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;" in auth
    assert auth == sdk_authorization(query, V3_HEADERS, "testid", "testsecret")


def test_v1_fixed_vector_from_the_notes() -> None:
    params = {
        "Action": "GetChatappTemplateMetric",
        "Format": "JSON",
        "Version": "2020-06-06",
        "AccessKeyId": "testid",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": "nonce-1",
        "Timestamp": "2024-01-01T00:00:00Z",
        "TemplateCode": "t 1*~",
        "Start": "1700000000000",
    }
    assert signing.v1_signature(params, "POST", "testsecret") == "h0W5Qv5ZoHOBCgrHlUwP2gEg+VM="
    assert Utils.get_rpcsignature(params, "POST", "testsecret") == "h0W5Qv5ZoHOBCgrHlUwP2gEg+VM="


# Values with unicode, spaces, '*', '~', '/', '%', empty and long strings.
tricky = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "*", "~", "/", "%", "%20", "a b*c~d/e%f", "x" * 500, "日本語 ✓"]),
)
keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="=&"),
    min_size=1,
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    query=st.dictionaries(keys, tricky, max_size=8),
    secret=st.text(min_size=1, max_size=40),
    ak=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789", min_size=1, max_size=24),
    token=st.one_of(st.none(), st.text(min_size=1, max_size=60)),
    body=st.binary(max_size=64),
)
def test_v3_equals_the_sdk_helper(
    query: dict[str, str], secret: str, ak: str, token: str | None, body: bytes
) -> None:
    headers = signing.sign_rpc_v3(
        host="127.0.0.1:18080",
        action="ListChatappTemplate",
        version="2020-06-06",
        query=query,
        access_key_id=ak,
        secret=secret,
        security_token=token,
        body=body,
    )
    auth = headers.pop("Authorization")
    assert auth == sdk_authorization(query, headers, ak, secret, hashlib.sha256(body).hexdigest())
    if token:
        assert headers["x-acs-security-token"] == token
        assert headers["x-acs-accesskey-id"] == ak


@settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(keys, tricky, max_size=10), secret=st.text(max_size=40))
def test_v1_equals_the_sdk_helper(params: dict[str, str], secret: str) -> None:
    for method in ("POST", "GET"):
        assert signing.v1_signature(params, method, secret) == Utils.get_rpcsignature(
            params, method, secret
        )


def test_parse_v3_authorization() -> None:
    parsed = signing.parse_v3_authorization(
        "ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host;x-acs-date,Signature=abc"
    )
    assert parsed == {"Credential": "ak", "SignedHeaders": "host;x-acs-date", "Signature": "abc"}
    assert signing.parse_v3_authorization("Basic Zm9vOmJhcg==") is None
    assert signing.parse_v3_authorization("ACS3-HMAC-SHA256 Credential=ak") is None
