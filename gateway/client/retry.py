"""When and how long the upload and download client waits before trying again (pure).

The arithmetic (backoff, ``Retry-After``) is :mod:`gateway.backoff`, shared with
the delivery outbox and the ticket clients; here are the client's own statuses
and ceiling.
"""

from __future__ import annotations

import random

from gateway import backoff as shared
from gateway.backoff import retry_after as retry_after

RETRY_STATUSES = frozenset({409, 423, 429, 460, 500, 502, 503, 504})
MAX_DELAY = 60.0


def retryable(status: int) -> bool:
    """5xx, lock/offset conflicts, rate limits and a checksum mismatch in transit."""
    return status in RETRY_STATUSES or status >= 500


def backoff(attempt: int, base: float = 0.5, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in [c/2, c], c = min(60 s, base * 2**attempt)."""
    return shared.backoff(attempt, base, MAX_DELAY, rng)
