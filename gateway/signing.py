"""Signed, opaque, expiring tokens (pure functions, the clock passed in).

A token is ``base64url(nonce || AES-256-GCM(claims))``. GCM authenticates the
claims (tamper-evident, constant-time tag check) and encrypts them, so a link
reveals nothing, not even its ticket. Keys are derived from the gateway secret
with HKDF, one per purpose, so an upload token can never pass as a download
token.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE = 12
MAX_TOKEN_LENGTH = 2048


class TokenInvalid(Exception):
    """The token was not made with this secret and purpose, or was altered."""


class TokenExpired(Exception):
    """The token is authentic but its expiry has passed."""

    def __init__(self, claims: dict[str, Any]) -> None:
        super().__init__("token expired")
        self.claims = claims


def _key(secret: bytes, purpose: str) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"gateway:" + purpose.encode()
    )
    return hkdf.derive(secret)


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    if len(text) > MAX_TOKEN_LENGTH or not text.isascii():
        raise TokenInvalid("malformed")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenInvalid("malformed") from exc


def sign(claims: dict[str, Any], secret: bytes, purpose: str) -> str:
    """Seal ``claims`` (must include integer ``exp``, unix seconds) into a token."""
    if not isinstance(claims.get("exp"), int):
        raise ValueError("claims need an integer 'exp'")
    body = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(_key(secret, purpose)).encrypt(nonce, body, purpose.encode())
    return _b64e(nonce + sealed)


def open_token(token: str, secret: bytes, purpose: str) -> dict[str, Any]:
    """Return the claims of an authentic token, without looking at expiry."""
    raw = _b64d(token)
    if len(raw) < _NONCE + 16:
        raise TokenInvalid("malformed")
    try:
        body = AESGCM(_key(secret, purpose)).decrypt(raw[:_NONCE], raw[_NONCE:], purpose.encode())
        claims = json.loads(body)
    except (InvalidTag, ValueError) as exc:
        raise TokenInvalid("not authentic") from exc
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        raise TokenInvalid("no expiry")
    return claims


def verify(token: str, secret: bytes, purpose: str, now: float) -> dict[str, Any]:
    """Return the claims of an authentic, unexpired token; raise otherwise."""
    claims = open_token(token, secret, purpose)
    if now >= claims["exp"]:
        raise TokenExpired(claims)
    return claims


@dataclass(frozen=True)
class UploadLink:
    """What an upload token grants: uploads for one ticket, up to a size, until a time."""

    ticket: str
    expires_at: int
    max_size: int
    link_id: str

    def claims(self) -> dict[str, Any]:
        return {"t": self.ticket, "exp": self.expires_at, "m": self.max_size, "l": self.link_id}

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> UploadLink:
        try:
            return cls(
                ticket=str(claims["t"]),
                expires_at=int(claims["exp"]),
                max_size=int(claims["m"]),
                link_id=str(claims["l"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenInvalid("claims") from exc


@dataclass(frozen=True)
class DownloadGrant:
    """What a download token grants: one stored file, until a time."""

    file_id: str
    expires_at: int

    def claims(self) -> dict[str, Any]:
        return {"f": self.file_id, "exp": self.expires_at}

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> DownloadGrant:
        try:
            return cls(file_id=str(claims["f"]), expires_at=int(claims["exp"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenInvalid("claims") from exc


UPLOAD = "upload"
DOWNLOAD = "download"


def new_link_id() -> str:
    return _b64e(os.urandom(9))


def load_or_create_secret(data_dir: Path) -> bytes:
    """The embedded default's signing key: ``secret.key`` in the data dir, made once (0600)."""
    path = data_dir / "secret.key"
    try:
        raw = path.read_text().strip()
        if len(raw) >= 32:
            return raw.encode()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value.encode()
