"""When and how long the upload client waits before trying again (pure functions)."""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({409, 423, 429, 460, 500, 502, 503, 504})
MAX_DELAY = 60.0


def retryable(status: int) -> bool:
    """5xx, lock/offset conflicts, rate limits and a checksum mismatch in transit."""
    return status in RETRY_STATUSES or status >= 500


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - now)


def backoff(attempt: int, base: float = 0.5, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in [c/2, c], c = min(60 s, base * 2**attempt)."""
    ceiling = min(MAX_DELAY, base * (2 ** min(attempt, 30)))
    return (rng or random).uniform(ceiling / 2, ceiling)
