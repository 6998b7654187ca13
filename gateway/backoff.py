"""When to try again: jittered exponential backoff and the server's ``Retry-After`` (pure).

One module for every caller that waits before a new attempt: the upload and
download client (:mod:`gateway.client.retry`), the delivery outbox and the
ticket-system clients (:mod:`gateway.tickets.httpapi`). Each caller keeps its
own base, ceiling and bounds on the server's hint; the arithmetic is here.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from datetime import UTC


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    ``None`` when there is no usable hint; a date in the past is 0. A date
    without a zone is read as UTC, as HTTP dates are.
    """
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def backoff(
    attempt: int, base: float = 0.5, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with jitter: uniform in [c/2, c], c = min(cap, base * 2**attempt)."""
    ceiling = min(cap, base * (2 ** min(max(attempt, 0), 30)))
    return (rng or random).uniform(ceiling / 2, ceiling)
