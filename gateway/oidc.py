"""OpenID Connect relying party: authorization code flow with PKCE, for engineer sign-in.

The provider is found by discovery (``{issuer}/.well-known/openid-configuration``,
whose ``issuer`` must be the configured one). A sign-in starts with
:meth:`Provider.start`: fresh ``state``, ``nonce`` and PKCE verifier (S256),
kept by the caller in a short-lived sealed cookie, and the provider's
authorization URL. :meth:`Provider.finish` exchanges the code (client secret
plus the verifier) at the token endpoint and verifies the ID token with
``joserfc``: signature against the provider's JWKS (fetched again once when a
key id is unknown: key rotation), issuer, audience, expiry, issued-at and
nonce. HTTP goes through the gateway's own httpx client.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from gateway.settings import OidcSettings

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA"]  # fmt: skip
LEEWAY = 60


class SignInFailed(Exception):
    """The provider's answer cannot sign anyone in; the message is safe to show."""


@dataclass(frozen=True)
class Pending:
    """What a started sign-in must find again at the callback."""

    state: str
    nonce: str
    verifier: str
    next: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def code_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)), unpadded."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


class Provider:
    def __init__(
        self,
        settings: OidcSettings,
        redirect_uri: str,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.redirect_uri = redirect_uri
        self.client = client
        self.clock = clock
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    async def _json(self, url: str) -> dict[str, Any]:
        try:
            response = await self.client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInFailed(f"the identity provider did not answer properly: {exc}") from exc
        if not isinstance(data, dict):
            raise SignInFailed("the identity provider sent something other than JSON")
        return data

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            issuer = self.settings.issuer
            data = await self._json(f"{issuer}/.well-known/openid-configuration")
            if str(data.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
                raise SignInFailed("the identity provider names another issuer")
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(data.get(name), str):
                    raise SignInFailed(f"the identity provider's discovery lacks {name}")
            self._metadata = data
        return self._metadata

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            metadata = await self.metadata()
            try:
                data: Any = await self._json(metadata["jwks_uri"])
                self._keys = KeySet.import_key_set(data)
            except (JoseError, ValueError, TypeError) as exc:
                raise SignInFailed(f"the identity provider's keys are unusable: {exc}") from exc
        return self._keys

    async def start(self, next_path: str) -> tuple[str, Pending]:
        """The provider's authorization URL and what the callback must check."""
        metadata = await self.metadata()
        pending = Pending(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            next=next_path,
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self.settings.scopes,
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": code_challenge(pending.verifier),
                "code_challenge_method": "S256",
            }
        )
        endpoint = str(metadata["authorization_endpoint"])
        joiner = "&" if "?" in endpoint else "?"
        return f"{endpoint}{joiner}{query}", pending

    async def finish(self, code: str, pending: Pending) -> dict[str, Any]:
        """Exchange ``code``; the verified ID token's claims."""
        metadata = await self.metadata()
        try:
            response = await self.client.post(
                str(metadata["token_endpoint"]),
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                    "code_verifier": pending.verifier,
                },
                auth=(self.settings.client_id, self.settings.client_secret),
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise SignInFailed(f"the identity provider's token endpoint failed: {exc}") from exc
        if response.status_code != 200:
            raise SignInFailed(f"the identity provider refused the code ({response.status_code})")
        try:
            id_token = response.json()["id_token"]
        except (ValueError, KeyError, TypeError):
            raise SignInFailed("the identity provider sent no ID token") from None
        return await self.verify(str(id_token), pending.nonce)

    async def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of an ID token signed by the provider, for us, fresh, with ``nonce``."""
        keys = await self._key_set()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            except InvalidKeyIdError:  # an unknown key id: the provider may have rotated keys
                token = jwt.decode(
                    id_token, await self._key_set(refresh=True), algorithms=ALGORITHMS
                )
            registry = jwt.JWTClaimsRegistry(
                now=int(self.clock()),
                leeway=LEEWAY,
                iss={"essential": True, "value": self.settings.issuer},
                aud={"essential": True, "value": self.settings.client_id},
                exp={"essential": True},
                iat={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise SignInFailed(f"the ID token is not valid: {exc}") from exc
        claims: dict[str, Any] = dict(token.claims)
        return claims
