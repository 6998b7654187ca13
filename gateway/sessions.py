"""Engineer sessions after an OpenID Connect sign-in, and who may have one (pure functions).

A session lives only in its cookie: a token sealed with the gateway secret
(:mod:`gateway.signing`, purpose ``session``), so any replica can read it and
nobody can read or alter it. It carries who signed in, when (for the
absolute lifetime) and an expiry that slides with use (the idle lifetime)
but never past ``signed_in + session_max``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway import signing
from gateway.settings import OidcSettings

SESSION = "session"
PENDING = "oidc-pending"


@dataclass(frozen=True)
class Engineer:
    """A signed-in engineer: the provider's subject, e-mail and name, and since when."""

    sub: str
    email: str
    name: str
    signed_in: int

    @property
    def who(self) -> str:
        """How audit lines name them."""
        return self.email or self.sub


def allowed(claims: Mapping[str, Any], oidc: OidcSettings) -> bool:
    """Whether the ID token's claims pass the allow rule: an e-mail address (not marked
    unverified) in an allowed domain, or a group in the allowed groups."""
    email = claims.get("email")
    if (
        oidc.allowed_domains
        and isinstance(email, str)
        and claims.get("email_verified") is not False
    ):
        domain = email.rpartition("@")[2].lower()
        if "@" in email and domain in oidc.allowed_domains:
            return True
    if oidc.allowed_groups:
        groups = claims.get(oidc.groups_claim)
        if isinstance(groups, str):
            groups = [groups]
        if isinstance(groups, list) and set(map(str, groups)) & set(oidc.allowed_groups):
            return True
    return False


def expiry(signed_in: int, now: float, oidc: OidcSettings) -> int:
    """Idle lifetime from now, capped by the absolute lifetime from the sign-in."""
    return min(int(now) + oidc.session_idle, signed_in + oidc.session_max)


def seal(engineer: Engineer, secret: bytes, now: float, oidc: OidcSettings) -> tuple[str, int]:
    """The cookie value for ``engineer`` and its expiry (unix seconds)."""
    exp = expiry(engineer.signed_in, now, oidc)
    claims = {"s": engineer.sub, "e": engineer.email, "n": engineer.name,
              "i": engineer.signed_in, "exp": exp}  # fmt: skip
    return signing.sign(claims, secret, SESSION), exp


def open_session(value: str, secret: bytes, now: float, oidc: OidcSettings) -> Engineer | None:
    """The engineer of a session cookie; None if it is forged, altered or expired."""
    try:
        claims = signing.verify(value, secret, SESSION, now)
        engineer = Engineer(
            sub=str(claims["s"]), email=str(claims["e"]), name=str(claims["n"]),
            signed_in=int(claims["i"]),
        )  # fmt: skip
    except (signing.TokenInvalid, signing.TokenExpired, KeyError, TypeError, ValueError):
        return None
    if now >= engineer.signed_in + oidc.session_max:
        return None
    return engineer
