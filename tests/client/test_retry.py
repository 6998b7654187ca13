"""Backoff and Retry-After parsing for the upload client (pure functions)."""

from __future__ import annotations

import random
from email.utils import formatdate

from gateway.client import retry


def test_retryable_statuses() -> None:
    for status in (409, 423, 429, 460, 500, 502, 503, 504, 599):
        assert retry.retryable(status)
    for status in (200, 204, 400, 403, 404, 410, 412, 413, 415):
        assert not retry.retryable(status)


def test_retry_after() -> None:
    assert retry.retry_after("7", now=0) == 7.0
    assert retry.retry_after(None, now=0) is None
    assert retry.retry_after("soon", now=0) is None
    assert retry.retry_after(formatdate(1000, usegmt=True), now=990) == 10.0
    assert retry.retry_after(formatdate(1000, usegmt=True), now=2000) == 0.0


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    rng = random.Random(1)
    delays = [retry.backoff(n, base=0.5, rng=rng) for n in range(12)]
    for n, delay in enumerate(delays):
        ceiling = min(retry.MAX_DELAY, 0.5 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays)
    assert retry.backoff(10_000) <= retry.MAX_DELAY
