"""When and how long the upload and download client waits before trying again (pure).

The arithmetic (backoff, parsing ``Retry-After``) is :mod:`gateway.backoff`,
shared with the delivery outbox and the ticket clients; here are the client's
own statuses, ceiling and bounds on the server's hint.
"""

from __future__ import annotations

import random

from gateway import backoff as shared
from gateway.backoff import retry_after as retry_after

RETRY_STATUSES = frozenset({409, 423, 429, 460, 500, 502, 503, 504})
MAX_DELAY = 60.0
#: The longest wait a server's ``Retry-After`` can ask of the client.
MAX_HINT = MAX_DELAY * 5
#: Polling a final upload that is being joined: without a hint, and the longest wait.
POLL_INTERVAL = 1.0
MAX_POLL_INTERVAL = 10.0


def retryable(status: int) -> bool:
    """5xx, lock/offset conflicts, rate limits and a checksum mismatch in transit."""
    return status in RETRY_STATUSES or status >= 500


def backoff(attempt: int, base: float = 0.5, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in [c/2, c], c = min(60 s, base * 2**attempt)."""
    return shared.backoff(attempt, base, MAX_DELAY, rng)


def delay(attempt: int, header: str | None, now: float, rng: random.Random | None = None) -> float:
    """The wait before retry ``attempt``: the server's ``Retry-After`` (``header``) if it
    gave a usable one, bounded to [0.1 s, :data:`MAX_HINT`], else :func:`backoff`."""
    hinted = retry_after(header, now)
    if hinted is None:
        return backoff(attempt, rng=rng)
    return min(max(hinted, 0.1), MAX_HINT)


def poll_delay(header: str | None, now: float) -> float:
    """The wait before asking again about a final upload being joined: the server's
    ``Retry-After`` or :data:`POLL_INTERVAL`, within [0.2 s, :data:`MAX_POLL_INTERVAL`]."""
    hinted = retry_after(header, now)
    return min(max(POLL_INTERVAL if hinted is None else hinted, 0.2), MAX_POLL_INTERVAL)
