"""Zendesk webhook signatures, as pure functions.

Zendesk signs each webhook request with the webhook's signing secret:
``base64(HMAC-SHA256(secret, TIMESTAMP + BODY))``, where TIMESTAMP is the exact
text of the ``X-Zendesk-Webhook-Signature-Timestamp`` header and BODY the raw
request body, and sends the result in ``X-Zendesk-Webhook-Signature``.

:func:`verify_webhook` checks the signature in constant time and refuses a
timestamp outside a window around ``now`` (passed in, so tests control the
clock). That window bounds replays; within it the caller stores
:func:`replay_key` of each accepted signature and refuses a second use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from datetime import UTC, datetime

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"


class WebhookError(ValueError):
    """A webhook request that must be refused. ``reason`` is a short slug.

    Reasons: ``missing`` (a header is absent or empty), ``bad_timestamp``
    (unparseable), ``stale`` (outside the allowed window), ``bad_signature``.
    The message never contains the secret or the expected signature.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign_webhook(body: bytes, secret: str | bytes, timestamp: str) -> str:
    """The signature Zendesk would send for ``body`` at ``timestamp``."""
    digest = hmac.new(_key(secret), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_timestamp(timestamp: str) -> float:
    """Seconds since the epoch from Zendesk's ISO 8601 timestamp (or plain epoch seconds)."""
    text = timestamp.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"not a finite timestamp: {timestamp!r}")
        return value
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def verify_webhook(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    secret: str | bytes,
    now: float,
    max_skew: int = 300,
) -> None:
    """Return if the request is genuine and fresh; raise :class:`WebhookError` if not."""
    if not secret:
        raise ValueError("the webhook signing secret is empty")
    if not signature or not signature.strip():
        raise WebhookError("missing", f"the {SIGNATURE_HEADER} header is missing")
    if not timestamp or not timestamp.strip():
        raise WebhookError("missing", f"the {TIMESTAMP_HEADER} header is missing")
    try:
        sent_at = parse_timestamp(timestamp)
    except ValueError:
        raise WebhookError(
            "bad_timestamp", f"the {TIMESTAMP_HEADER} header is not a timestamp"
        ) from None
    if abs(now - sent_at) > max_skew:
        raise WebhookError(
            "stale",
            f"the webhook timestamp is more than {max_skew} seconds away from the server clock",
        )
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookError("bad_signature", "the webhook signature is not valid base64") from None
    expected = hmac.new(_key(secret), timestamp.encode() + body, hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise WebhookError("bad_signature", "the webhook signature does not match")


def replay_key(signature: str) -> str:
    """A short, fixed-length name for a signature, to remember it was seen."""
    return hashlib.sha256(signature.strip().encode()).hexdigest()[:32]
