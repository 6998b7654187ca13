"""Zendesk webhook signatures: known vectors, refusals, and properties."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.tickets.webhook import (
    WebhookError,
    parse_timestamp,
    replay_key,
    sign_webhook,
    verify_webhook,
)

SECRET = "dGhpc19pc19hX3NpZ25pbmdfc2VjcmV0"
TS = "2024-05-01T12:00:00Z"
NOW = parse_timestamp(TS)
BODY = b'{"ticket_id": "123", "requester_email": "customer@example.test"}'


def test_signature_is_base64_hmac_sha256_of_timestamp_then_body() -> None:
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), TS.encode() + BODY, hashlib.sha256).digest()
    ).decode()
    assert sign_webhook(BODY, SECRET, TS) == expected
    verify_webhook(BODY, expected, TS, SECRET, now=NOW)


def test_timestamp_formats() -> None:
    assert parse_timestamp("2024-05-01T12:00:00Z") == 1714564800.0
    assert parse_timestamp("2024-05-01T14:00:00+02:00") == 1714564800.0
    assert parse_timestamp("1714564800") == 1714564800.0
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


@pytest.mark.parametrize(
    "signature, timestamp",
    [(None, TS), ("", TS), ("  ", TS), ("sig", None), ("sig", "")],
)
def test_missing_headers(signature: str | None, timestamp: str | None) -> None:
    with pytest.raises(WebhookError) as info:
        verify_webhook(BODY, signature, timestamp, SECRET, now=NOW)
    assert info.value.reason == "missing"
    assert "X-Zendesk-Webhook-Signature" in str(info.value)


def test_bad_timestamp() -> None:
    sig = sign_webhook(BODY, SECRET, "not a time")
    with pytest.raises(WebhookError) as info:
        verify_webhook(BODY, sig, "not a time", SECRET, now=NOW)
    assert info.value.reason == "bad_timestamp"


@pytest.mark.parametrize(
    "offset, ok",
    [(0, True), (299, True), (-300, True), (301, False), (-301, False), (86400, False)],
)
def test_timestamp_window(offset: int, ok: bool) -> None:
    sig = sign_webhook(BODY, SECRET, TS)
    if ok:
        verify_webhook(BODY, sig, TS, SECRET, now=NOW + offset)
    else:
        with pytest.raises(WebhookError) as info:
            verify_webhook(BODY, sig, TS, SECRET, now=NOW + offset)
        assert info.value.reason == "stale"


def test_wrong_secret_and_garbage_signatures() -> None:
    sig = sign_webhook(BODY, "another secret", TS)
    for bad in (sig, "not base64 !!", base64.b64encode(b"short").decode(), "Zm9v\u00e9"):
        with pytest.raises(WebhookError) as info:
            verify_webhook(BODY, bad, TS, SECRET, now=NOW)
        assert info.value.reason == "bad_signature"
        assert SECRET not in str(info.value)
        assert sign_webhook(BODY, SECRET, TS) not in str(info.value)


def test_signature_binds_the_timestamp() -> None:
    other = "2024-05-01T12:00:01Z"
    with pytest.raises(WebhookError) as info:
        verify_webhook(BODY, sign_webhook(BODY, SECRET, TS), other, SECRET, now=NOW)
    assert info.value.reason == "bad_signature"


def test_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="secret"):
        verify_webhook(BODY, "x", TS, "", now=NOW)


def test_empty_body_is_signed_too() -> None:
    verify_webhook(b"", sign_webhook(b"", SECRET, TS), TS, SECRET, now=NOW)


def test_replay_key_is_short_stable_and_distinct() -> None:
    a = sign_webhook(BODY, SECRET, TS)
    b = sign_webhook(BODY + b" ", SECRET, TS)
    assert replay_key(a) == replay_key(a) == replay_key(f" {a} ")
    assert replay_key(a) != replay_key(b)
    assert len(replay_key(a)) == 32
    assert a not in replay_key(a)


secrets_ = st.one_of(st.text(min_size=1, max_size=64), st.binary(min_size=1, max_size=64))


@given(body=st.binary(max_size=2048), secret=secrets_, skew=st.integers(-300, 300))
def test_any_signed_body_verifies(body: bytes, secret: str | bytes, skew: int) -> None:
    verify_webhook(body, sign_webhook(body, secret, TS), TS, secret, now=NOW + skew)


@given(body=st.binary(min_size=1, max_size=2048), secret=secrets_, data=st.data())
def test_any_single_byte_change_fails(
    body: bytes, secret: str | bytes, data: st.DataObject
) -> None:
    signature = sign_webhook(body, secret, TS)
    index = data.draw(st.integers(0, len(body) - 1))
    delta = data.draw(st.integers(1, 255))
    changed = bytearray(body)
    changed[index] = (changed[index] + delta) % 256
    with pytest.raises(WebhookError) as info:
        verify_webhook(bytes(changed), signature, TS, secret, now=NOW)
    assert info.value.reason == "bad_signature"


@given(body=st.binary(max_size=256), secret=secrets_, data=st.data())
def test_any_single_signature_byte_change_fails(
    body: bytes, secret: str | bytes, data: st.DataObject
) -> None:
    raw = bytearray(base64.b64decode(sign_webhook(body, secret, TS)))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(WebhookError):
        verify_webhook(body, base64.b64encode(bytes(raw)).decode(), TS, secret, now=NOW)
