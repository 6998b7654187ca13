"""Engineer sessions and the allow rule (pure), and the PKCE challenge."""

from __future__ import annotations

from gateway.oidc import code_challenge
from gateway.sessions import Engineer, allowed, expiry, open_session, seal
from gateway.settings import OidcSettings

SECRET = b"s" * 40
OIDC = OidcSettings(
    issuer="https://id.example",
    client_id="c",
    client_secret="x",
    allowed_domains=("support.example",),
    allowed_groups=("tier2",),
    session_idle=3600,
    session_max=12 * 3600,
)


def test_pkce_s256_matches_rfc_7636() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_allow_rule() -> None:
    assert allowed({"email": "a@support.example"}, OIDC)
    assert allowed({"email": "A@Support.Example"}, OIDC)
    assert not allowed({"email": "a@support.example", "email_verified": False}, OIDC)
    assert not allowed({"email": "a@support.example.evil"}, OIDC)
    assert not allowed({"email": "support.example"}, OIDC)
    assert allowed({"email": "b@other.example", "groups": ["x", "tier2"]}, OIDC)
    assert allowed({"groups": "tier2"}, OIDC)
    assert not allowed({"groups": ["tier22"]}, OIDC)
    assert not allowed({}, OIDC)
    groups_only = OidcSettings("https://id", "c", "x", allowed_groups=("tier2",))
    assert not allowed({"email": "a@support.example"}, groups_only)


def test_session_round_trip_and_lifetimes() -> None:
    start = 1_000_000
    alice = Engineer("alice", "alice@support.example", "Alice", start)
    value, exp = seal(alice, SECRET, start, OIDC)
    assert exp == start + 3600
    assert open_session(value, SECRET, start + 10, OIDC) == alice
    assert open_session(value, SECRET, start + 3600, OIDC) is None  # idle
    assert open_session(value, b"t" * 40, start + 10, OIDC) is None  # another secret
    assert open_session(value[:-2] + "AA", SECRET, start + 10, OIDC) is None
    # Used just before it went idle, again and again: never past the absolute lifetime.
    assert expiry(start, start + 11.5 * 3600, OIDC) == start + 12 * 3600
    late, _ = seal(alice, SECRET, start + 11.9 * 3600, OIDC)
    assert open_session(late, SECRET, start + 11.95 * 3600, OIDC) == alice
    assert open_session(late, SECRET, start + 12 * 3600, OIDC) is None
    assert alice.who == "alice@support.example"
    assert Engineer("sub-1", "", "", start).who == "sub-1"
