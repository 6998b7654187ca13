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


def test_delay_takes_the_servers_hint_within_bounds() -> None:
    now = 1_000_000.0
    assert retry.delay(0, "7", now) == 7.0
    assert retry.delay(5, "0", now) == 0.1  # asked to retry at once: a short pause
    assert retry.delay(0, "86400", now) == retry.MAX_HINT
    assert retry.delay(0, "Thu, 01 Jan 1970 00:00:00 GMT", 30.0) == 0.1  # in the past
    when = "Mon, 12 Jan 1970 13:46:50 GMT"  # 1_000_010 s after the epoch
    assert retry.delay(0, when, now) == 10.0


def test_delay_without_a_usable_hint_backs_off() -> None:
    for header in (None, "", "soon", "nan"):
        for attempt in range(8):
            ceiling = min(retry.MAX_DELAY, 0.5 * 2**attempt)
            got = retry.delay(attempt, header, 0.0, rng=random.Random(attempt))
            assert ceiling / 2 <= got <= ceiling


def test_poll_delay() -> None:
    assert retry.poll_delay(None, 0.0) == retry.POLL_INTERVAL
    assert retry.poll_delay("3", 0.0) == 3.0
    assert retry.poll_delay("0", 0.0) == 0.2
    assert retry.poll_delay("3600", 0.0) == retry.MAX_POLL_INTERVAL
