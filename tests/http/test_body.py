"""The minimum body rate's bookkeeping (pure): a grace period, then a sliding window."""

from __future__ import annotations

from gateway.http.body import BodyLimits, RateWindow
from gateway.settings import Settings


def test_nothing_is_judged_before_the_grace_period() -> None:
    window = RateWindow(1024, 10.0)
    assert not window.too_slow(5.0, 0)
    assert not window.too_slow(9.9, 1)


def test_a_body_under_the_rate_over_the_period_is_too_slow() -> None:
    window = RateWindow(1024, 10.0)
    for second in range(1, 10):
        assert not window.too_slow(float(second), second)  # one byte a second
    assert window.too_slow(10.0, 10)


def test_the_rate_is_an_average_over_the_period() -> None:
    window = RateWindow(1024, 10.0)
    assert not window.too_slow(1.0, 20 * 1024)  # a burst, then silence
    for second in range(2, 11):
        assert not window.too_slow(float(second), 20 * 1024)
    assert not window.too_slow(10.5, 20 * 1024)  # the burst is still inside the window
    assert window.too_slow(11.5, 20 * 1024)  # ... and now it is not


def test_exactly_the_minimum_passes() -> None:
    window = RateWindow(1000, 10.0)
    for second in range(1, 31):
        assert not window.too_slow(float(second), 1000 * second)


def test_a_fast_start_does_not_excuse_a_slow_finish() -> None:
    window = RateWindow(1024, 4.0)
    assert not window.too_slow(1.0, 100 * 1024 * 1024)
    slow = [window.too_slow(1.0 + t, 100 * 1024 * 1024 + t) for t in range(1, 8)]
    assert slow[:2] == [False, False] and slow[-1] is True


def test_a_shorter_grace_judges_sooner_over_what_arrived_so_far() -> None:
    window = RateWindow(1024, 10.0, grace=2.5)
    assert not window.too_slow(1.0, 600)
    assert window.too_slow(2.5, 601)  # 601 bytes in 2.5 s
    fast = RateWindow(1024, 10.0, grace=2.5)
    assert not fast.too_slow(1.0, 64 * 1024)  # what the client sent while queued...
    assert not fast.too_slow(2.5, 5 * 1024 * 1024)  # ... and a fast body after it


def test_a_queued_request_gets_less_grace_down_to_a_quarter_period() -> None:
    settings = Settings(min_body_rate=1024, min_body_rate_period=10.0)
    assert BodyLimits.of(settings).grace == 10.0
    assert BodyLimits.of(settings, queued=4.0).grace == 6.0
    assert BodyLimits.of(settings, queued=25.0).grace == 2.5
