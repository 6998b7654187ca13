"""Part plans stay within S3's limits for every length up to 10,000 parts of 5 GiB."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
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
    TooLargeForParts,
    largest_part,
    max_part_for_budget,
    offset_of_part,
    part_for_request,
    plan_parts,
)

budgets = st.integers(min_value=10 * MiB, max_value=64 * 1024 * MiB)


TiB = 1024**4
part_limits = st.sampled_from([MAX_PARTS, 1000, 16, 2]) | st.integers(2, MAX_PARTS)
preferences = st.sampled_from([DEFAULT_PART, LARGE_PART, 1])


def _subs(plan: PartPlan, number: int, length: int) -> list[int]:
    """What is buffered for part ``number`` of a file of ``length`` bytes."""
    if plan.segmented(number, length):
        count = plan.sub_count(number, length)
        return [plan.sub_length(number, m, length) for m in range(1, count + 1)]
    return [plan.part_length(number, length)]


@settings(deadline=None)
@given(budgets, part_limits, preferences, st.data())
def test_known_length_plan_is_within_s3_limits(
    budget: int, limit: int, preferred: int, data: st.DataObject
) -> None:
    cap = max_part_for_budget(budget)
    capacity = largest_part(budget, limit) * limit
    length = data.draw(
        st.integers(min_value=0, max_value=capacity)
        | st.sampled_from([capacity, capacity - 1, capacity // 2 + 1, 1])
    )
    plan = plan_parts(length, budget, preferred, limit)
    assert plan.fixed
    assert MIN_PART <= plan.base <= MAX_PART
    assert plan.base % MiB == 0
    assert plan.capacity(limit) >= length
    assert plan.size_of(1) == plan.size_of(limit) == plan.base
    if plan.base <= cap:
        assert plan.sub == 0  # fits a buffer: shipped whole, as always
    else:
        assert MIN_PART <= plan.sub <= cap and plan.sub % MiB == 0
    count = max(1, -(-length // plan.base))
    assert count <= limit
    assert plan.part_length(count + 1, length) == 0
    # All parts but the last are alike: check the first, the one before the last, the last.
    assert (count - 1) * plan.base + plan.part_length(count, length) == length
    for number in sorted({1, max(1, count - 1), count}):
        subs = _subs(plan, number, length)
        last = number == count
        assert sum(subs) == plan.part_length(number, length) <= MAX_PART
        assert last or sum(subs) >= MIN_PART
        assert len(subs) <= limit
        assert all(0 < size <= cap for size in subs) or length == 0  # buffers fit the budget
        assert all(size >= MIN_PART for size in subs[:-1])


@pytest.mark.parametrize("budget", [10 * MiB, 64 * MiB, 256 * MiB, 2048 * MiB])
@pytest.mark.parametrize("length", [5 * TiB, MAX_PART * MAX_PARTS, 2 * TiB + 1, 1000**4])
def test_files_up_to_ten_thousand_parts_of_5_gib_have_a_plan_whatever_the_budget(
    budget: int, length: int
) -> None:
    plan = plan_parts(length, budget)
    assert -(-length // plan.base) <= MAX_PARTS and plan.base <= MAX_PART
    if plan.base > max_part_for_budget(budget):
        assert plan.segmented(1, length)
        assert plan.sub <= max_part_for_budget(budget)
        assert plan.sub_count(1, length) <= MAX_PARTS


def test_a_2_gib_file_in_16_parts_with_a_64_mib_budget_takes_segments_of_32_mib_sub_parts() -> None:
    plan = plan_parts(2 * 1024 * MiB, 64 * MiB, LARGE_PART, parts=16)
    assert (plan.base, plan.sub) == (128 * MiB, 32 * MiB)
    assert plan.sub_count(1, 2 * 1024 * MiB) == 4
    assert plan.segmented(16, 2 * 1024 * MiB)
    short = 2 * 1024 * MiB - 100 * MiB  # the last part holds 28 MiB: one buffer, no segment
    assert not plan.segmented(16, short) and plan.part_length(16, short) == 28 * MiB
    assert plan.sub_length(15, 4, short - 100) == 32 * MiB
    assert PartPlan.from_json(plan.to_json()) == plan


def test_a_plan_without_segments_is_stored_as_before() -> None:
    assert plan_parts(10**9, 256 * MiB).to_json() == {
        "base": DEFAULT_PART,
        "cap": DEFAULT_PART,
        "fixed": True,
    }
    assert PartPlan.from_json({"base": 1, "cap": 1, "fixed": True}).sub == 0


@given(budgets, part_limits, st.integers(min_value=1, max_value=10**15))
def test_lengths_past_the_parts_are_refused(budget: int, limit: int, extra: int) -> None:
    capacity = largest_part(budget, limit) * limit
    with pytest.raises(TooLargeForParts):
        plan_parts(capacity + extra, budget, parts=limit)


def test_small_files_use_the_preferred_part() -> None:
    assert plan_parts(0, 256 * MiB).base == DEFAULT_PART
    assert plan_parts(1, 256 * MiB).base == DEFAULT_PART
    assert plan_parts(1, 10 * MiB).base == MIN_PART  # the budget caps it
    assert plan_parts(10, 256 * MiB, preferred=1).base == MIN_PART  # never below S3's minimum


def test_five_tib_fits_the_default_budget_in_segments() -> None:
    plan = plan_parts(5 * TiB, 256 * MiB)
    assert plan.base * MAX_PARTS >= 5 * TiB
    assert plan.base == 525 * MiB and plan.sub == DEFAULT_PART
    big = plan_parts(5 * TiB, 2 * 1024 * MiB)  # a budget that holds such parts: no segments
    assert big.base == 525 * MiB and big.sub == 0


def test_negative_length_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_parts(-1, 256 * MiB)


def test_part_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        plan_parts(None, 256 * MiB).size_of(0)


@given(budgets, part_limits)
def test_unknown_length_capacity_counts_the_parts_allowed(budget: int, limit: int) -> None:
    plan = plan_parts(None, budget, parts=limit)
    assert plan.capacity(limit) == sum(plan.size_of(n) for n in range(1, limit + 1))


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
    plan = plan_parts(length, budget)
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
