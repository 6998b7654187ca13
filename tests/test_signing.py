"""Tokens: authentic, tamper-evident, expiring, purpose-bound and opaque."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.signing import (
    DOWNLOAD,
    MAX_TOKEN_LENGTH,
    UPLOAD,
    DownloadGrant,
    TokenExpired,
    TokenInvalid,
    UploadLink,
    load_or_create_secret,
    new_link_id,
    sign,
    verify,
)

SECRET = b"s" * 48
NOW = 1_700_000_000


def _link(ticket: str = "48213", exp: int = NOW + 3600) -> UploadLink:
    return UploadLink(ticket=ticket, expires_at=exp, max_size=10**9, link_id=new_link_id())


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_round_trip() -> None:
    link = _link()
    token = sign(link.claims(), SECRET, UPLOAD)
    assert UploadLink.from_claims(verify(token, SECRET, UPLOAD, NOW)) == link
    grant = DownloadGrant(file_id="abc", expires_at=NOW + 10)
    token = sign(grant.claims(), SECRET, DOWNLOAD)
    assert DownloadGrant.from_claims(verify(token, SECRET, DOWNLOAD, NOW)) == grant


def test_tokens_are_url_safe_and_differ_each_time() -> None:
    claims = _link().claims()
    a, b = sign(claims, SECRET, UPLOAD), sign(claims, SECRET, UPLOAD)
    assert a != b
    assert all(c.isalnum() or c in "-_" for c in a)


@settings(max_examples=60)
@given(st.data())
def test_any_flipped_byte_is_invalid(data: st.DataObject) -> None:
    token = sign(_link().claims(), SECRET, UPLOAD)
    raw = bytearray(_raw(token))
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    raw[index] ^= 1 << bit
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(TokenInvalid):
        verify(forged, SECRET, UPLOAD, NOW)


@given(st.text(max_size=300))
def test_arbitrary_text_is_invalid(text: str) -> None:
    with pytest.raises(TokenInvalid):
        verify(text, SECRET, UPLOAD, NOW)


def test_truncated_and_extended_tokens_are_invalid() -> None:
    token = sign(_link().claims(), SECRET, UPLOAD)
    for bad in (token[:-1], token[:-4], token[:10], "", token + "A", token + "AAAA"):
        with pytest.raises(TokenInvalid):
            verify(bad, SECRET, UPLOAD, NOW)
    with pytest.raises(TokenInvalid):
        verify("A" * (MAX_TOKEN_LENGTH + 4), SECRET, UPLOAD, NOW)


def test_expired_token() -> None:
    token = sign(_link(exp=NOW).claims(), SECRET, UPLOAD)
    assert verify(token, SECRET, UPLOAD, NOW - 1)
    with pytest.raises(TokenExpired) as info:
        verify(token, SECRET, UPLOAD, NOW)
    assert info.value.claims["exp"] == NOW
    with pytest.raises(TokenExpired):
        verify(token, SECRET, UPLOAD, NOW + 10**6)


def test_upload_token_is_not_a_download_token() -> None:
    up = sign(_link().claims(), SECRET, UPLOAD)
    down = sign(DownloadGrant("f", NOW + 10).claims(), SECRET, DOWNLOAD)
    with pytest.raises(TokenInvalid):
        verify(up, SECRET, DOWNLOAD, NOW)
    with pytest.raises(TokenInvalid):
        verify(down, SECRET, UPLOAD, NOW)


def test_another_secret_is_invalid() -> None:
    token = sign(_link().claims(), SECRET, UPLOAD)
    with pytest.raises(TokenInvalid):
        verify(token, b"t" * 48, UPLOAD, NOW)


@given(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
def test_token_reveals_no_ticket(ticket: str) -> None:
    token = sign(_link(ticket=f"ticket-{ticket}").claims(), SECRET, UPLOAD)
    assert f"ticket-{ticket}" not in token
    assert f"ticket-{ticket}".encode() not in _raw(token)
    assert b'"t"' not in _raw(token)


def test_token_reveals_no_numeric_ticket() -> None:
    token = sign(_link(ticket="4815162342").claims(), SECRET, UPLOAD)
    assert "4815162342" not in token
    assert b"4815162342" not in _raw(token)


def test_sign_requires_integer_expiry() -> None:
    with pytest.raises(ValueError):
        sign({"t": "1"}, SECRET, UPLOAD)
    with pytest.raises(ValueError):
        sign({"t": "1", "exp": "soon"}, SECRET, UPLOAD)


def test_claims_of_the_wrong_shape_are_invalid() -> None:
    token = sign({"exp": NOW + 10}, SECRET, UPLOAD)
    with pytest.raises(TokenInvalid):
        UploadLink.from_claims(verify(token, SECRET, UPLOAD, NOW))


def test_the_embedded_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "data")
    path = tmp_path / "data" / "secret.key"
    assert len(first) >= 32 and path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(tmp_path / "data") == first  # the same key after a restart
    path.write_text("short\n")  # too short to be a key: replaced by a fresh one
    assert load_or_create_secret(tmp_path / "data") not in (first, b"short")
