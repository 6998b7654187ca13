"""Part plans stay within S3's limits for every length the memory budget can take."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.uploads.partsize import (
    DEFAULT_PART,
    GROWTH_EVERY,
    LARGE_PART,
    MAX_PART,
    MAX_PARTS,
    MIN_PART,
    MiB,
    PartPlan,
    TooLargeForBudget,
    max_part_for_budget,
    offset_of_part,
    part_for_request,
    plan_parts,
)

budgets = st.integers(min_value=10 * MiB, max_value=64 * 1024 * MiB)


@given(budgets, st.data())
def test_known_length_plan_is_within_s3_limits(budget: int, data: st.DataObject) -> None:
    cap = max_part_for_budget(budget)
    capacity = cap * MAX_PARTS
    length = data.draw(st.integers(min_value=0, max_value=capacity))
    plan = plan_parts(length, budget)
    assert plan.fixed
    assert MIN_PART <= plan.base <= MAX_PART
    assert plan.base <= cap <= max(MIN_PART, budget // 2)
    assert plan.base % MiB == 0
    assert -(-length // plan.base) <= MAX_PARTS
    assert plan.capacity() >= length
    assert plan.size_of(1) == plan.size_of(MAX_PARTS) == plan.base


@given(budgets, st.integers(min_value=1, max_value=10**15))
def test_lengths_past_the_budgets_capacity_are_refused(budget: int, extra: int) -> None:
    capacity = max_part_for_budget(budget) * MAX_PARTS
    with pytest.raises(TooLargeForBudget):
        plan_parts(capacity + extra, budget)


def test_small_files_use_the_preferred_part() -> None:
    assert plan_parts(0, 256 * MiB).base == DEFAULT_PART
    assert plan_parts(1, 256 * MiB).base == DEFAULT_PART
    assert plan_parts(1, 10 * MiB).base == MIN_PART  # the budget caps it
    assert plan_parts(10, 256 * MiB, preferred=1).base == MIN_PART  # never below S3's minimum


def test_five_tib_fits_a_budget_that_allows_big_parts() -> None:
    plan = plan_parts(5 * 1024**4, 2 * 1024 * MiB)
    assert plan.base * MAX_PARTS >= 5 * 1024**4
    assert plan.base <= MAX_PART


def test_negative_length_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_parts(-1, 256 * MiB)


def test_part_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        plan_parts(None, 256 * MiB).size_of(0)


@given(budgets)
def test_unknown_length_grows_and_ten_thousand_parts_cover_it(budget: int) -> None:
    plan = plan_parts(None, budget)
    assert not plan.fixed
    sizes = [plan.size_of(n) for n in range(1, MAX_PARTS + 1)]
    assert sizes == sorted(sizes)
    assert all(MIN_PART <= s <= min(plan.cap, MAX_PART) for s in sizes)
    assert sizes[0] == plan.base
    assert plan.capacity() == sum(sizes)
    if plan.cap > plan.base:
        assert sizes[-1] > sizes[0]  # it grew
        assert plan.capacity() > plan.base * MAX_PARTS
    # parts change size only at block boundaries, so a resume can tell what part n holds
    for n in range(1, MAX_PARTS, GROWTH_EVERY):
        assert len(set(sizes[n - 1 : n - 1 + GROWTH_EVERY])) == 1


def test_unknown_length_with_the_default_budget_covers_hundreds_of_gib() -> None:
    plan = plan_parts(None, 256 * MiB)
    assert plan.base == DEFAULT_PART
    assert plan.capacity() >= 900 * 1024**3
    assert plan.size_of(1) == 16 * MiB
    assert plan.size_of(GROWTH_EVERY + 1) == 32 * MiB


@given(budgets, st.booleans(), st.integers(min_value=1, max_value=MAX_PARTS))
def test_offsets_add_up(budget: int, known: bool, number: int) -> None:
    plan = plan_parts(10**9 if known else None, budget)
    assert offset_of_part(plan, 1) == 0
    assert offset_of_part(plan, number + 1) - offset_of_part(plan, number) == plan.size_of(number)


@given(budgets, st.integers(min_value=0, max_value=10**12) | st.none())
def test_plan_survives_json(budget: int, length: int | None) -> None:
    try:
        plan = plan_parts(length, budget)
    except TooLargeForBudget:
        return
    assert PartPlan.from_json(plan.to_json()) == plan


def test_a_request_of_two_large_parts_or_more_prefers_large_parts() -> None:
    assert part_for_request(None) == DEFAULT_PART
    assert part_for_request(0) == DEFAULT_PART
    assert part_for_request(DEFAULT_PART) == DEFAULT_PART
    assert part_for_request(2 * LARGE_PART - 1) == DEFAULT_PART
    assert part_for_request(2 * LARGE_PART) == LARGE_PART
    assert part_for_request(5 * 1024 * MiB) == LARGE_PART
    # The budget still caps the part: a small budget keeps parts small.
    assert plan_parts(1 << 30, 10 * MiB, part_for_request(1 << 30)).base == 5 * MiB
    assert plan_parts(1 << 30, 256 * MiB, part_for_request(1 << 30)).base == LARGE_PART
