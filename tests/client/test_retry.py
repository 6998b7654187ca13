"""The upload client's retry rules: which statuses, and its ceiling on backoff."""

from __future__ import annotations

import random

from gateway.client import retry


def test_retryable_statuses() -> None:
    for status in (409, 423, 429, 460, 500, 502, 503, 504, 599):
        assert retry.retryable(status)
    for status in (200, 204, 400, 403, 404, 410, 412, 413, 415):
        assert not retry.retryable(status)


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    rng = random.Random(1)
    delays = [retry.backoff(n, base=0.5, rng=rng) for n in range(12)]
    for n, delay in enumerate(delays):
        ceiling = min(retry.MAX_DELAY, 0.5 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays)
    assert retry.backoff(10_000) <= retry.MAX_DELAY
