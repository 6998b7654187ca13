"""The shared backoff and Retry-After arithmetic (gateway/backoff.py)."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from gateway.backoff import backoff, retry_after


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 30.0),  # no zone: read as UTC
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
    ],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    now = 1445412450.0  # 30 s before 07:28:00 GMT that day
    assert retry_after(header, now=now) == expected


def test_retry_after_dates_count_from_now() -> None:
    assert retry_after(formatdate(1000, usegmt=True), now=990) == 10.0


@pytest.mark.parametrize(("base", "cap"), [(0.5, 60.0), (2.0, 300.0)])
def test_backoff_doubles_with_jitter_up_to_the_cap(base: float, cap: float) -> None:
    rng = random.Random(7)
    for attempt in range(40):
        ceiling = min(cap, base * 2**attempt)
        delay = backoff(attempt, base, cap, rng)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff(10**9, base, cap) <= cap
    assert backoff(-1, base, cap) <= base
