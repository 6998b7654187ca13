"""The part sender's pure sizing: how many parts of one upload are in flight at once.

Its buffering, sending, segments and commits run under the writer's tests
(tests/uploads/test_writer.py, test_segments.py) on both stores.
"""

from __future__ import annotations

import pytest

from gateway.uploads.sender import MAX_PARTS_IN_FLIGHT, parts_in_flight

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("budget", "part", "expected"),
    [(10 * MiB, 5 * MiB, 2), (256 * MiB, 16 * MiB, 8), (1024 * MiB, 16 * MiB, 8),
     (64 * MiB, 8 * MiB, 4)],
)  # fmt: skip
def test_parts_in_flight_keep_the_store_busy_within_the_budget(
    budget: int, part: int, expected: int
) -> None:
    assert parts_in_flight(budget, part) == expected


def test_parts_in_flight_never_drop_below_two_nor_pass_the_cap() -> None:
    assert parts_in_flight(10 * MiB, 5 * 1024 * MiB) == 2  # a part larger than the budget
    assert parts_in_flight(1 << 40, MiB) == MAX_PARTS_IN_FLIGHT
    assert parts_in_flight(64 * MiB, 0) == MAX_PARTS_IN_FLIGHT  # never divides by zero
