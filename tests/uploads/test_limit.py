"""The largest file: one number from the settings and the store, and the part plan agrees."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.uploads.limit import budget_for, size_limit, size_text, store_limit
from gateway.uploads.partsize import (
    MAX_PART,
    MAX_PARTS,
    MIN_PART,
    MiB,
    TooLargeForBudget,
    max_part_for_budget,
    plan_parts,
)

TiB = 1024**4
budgets = st.integers(min_value=1, max_value=256 * 1024 * MiB)
sizes = st.integers(min_value=1, max_value=60 * TiB)


def test_defaults_give_one_number_and_say_why() -> None:
    limit = size_limit(max_upload=5 * TiB, buffer_memory=256 * MiB)
    assert limit.largest == 128 * MiB * MAX_PARTS == 1_342_177_280_000
    assert "GATEWAY_BUFFER_MEMORY=256.0 MiB" in limit.reason
    assert "GATEWAY_MAX_UPLOAD=5.0 TiB is more and needs GATEWAY_BUFFER_MEMORY=1050MiB" in (
        limit.reason
    )
    line = limit.describe()
    assert "1,342,177,280,000 bytes (1.2 TiB)" in line
    assert f"{limit.streamed:,} bytes" in line  # a body of unknown length holds less
    assert limit.streamed < limit.largest


def test_a_lower_setting_decides_and_nothing_else_is_said() -> None:
    limit = size_limit(max_upload=2 * 1024**3, buffer_memory=256 * MiB)
    assert limit.largest == limit.streamed == 2 * 1024**3
    assert limit.reason == "GATEWAY_MAX_UPLOAD=2.0 GiB"
    assert limit.describe() == (
        "largest file accepted: 2,147,483,648 bytes (2.0 GiB), set by GATEWAY_MAX_UPLOAD=2.0 GiB"
    )


def test_a_budget_past_10_gib_is_bounded_by_s3_part_limits() -> None:
    limit = size_limit(max_upload=100 * TiB, buffer_memory=64 * 1024**3)
    assert limit.largest == MAX_PART * MAX_PARTS
    assert "S3's limits" in limit.reason


def test_a_store_limit_decides_when_lowest() -> None:
    limit = size_limit(max_upload=5 * TiB, buffer_memory=256 * MiB, store_max=10**12)
    assert limit.largest == 10**12
    assert limit.reason.startswith("the store's largest object")


@given(sizes, budgets, st.none() | sizes)
def test_the_limit_is_the_least_bound(max_upload: int, budget: int, store_max: int | None) -> None:
    limit = size_limit(max_upload=max_upload, buffer_memory=budget, store_max=store_max)
    bounds = [max_upload, max_part_for_budget(budget) * MAX_PARTS]
    if store_max is not None:
        bounds.append(store_max)
    assert limit.largest == min(bounds)
    assert 0 < limit.streamed <= limit.largest
    assert limit.cap(limit.largest + 1) == limit.largest
    assert limit.cap(1) == 1


@given(sizes, budgets)
def test_the_largest_file_has_a_plan_and_a_byte_more_may_not(max_upload: int, budget: int) -> None:
    limit = size_limit(max_upload=max_upload, buffer_memory=budget)
    plan = plan_parts(limit.largest, budget)
    assert MIN_PART <= plan.base <= min(MAX_PART, max(MIN_PART, budget // 2))
    assert -(-limit.largest // plan.base) <= MAX_PARTS
    assert plan.capacity() >= limit.largest
    if limit.largest < max_upload:  # the parts decide: one byte more has no plan
        with pytest.raises(TooLargeForBudget):
            plan_parts(limit.largest + 1, budget)


@given(sizes, budgets)
def test_a_body_of_unknown_length_fits_its_growing_parts(max_upload: int, budget: int) -> None:
    limit = size_limit(max_upload=max_upload, buffer_memory=budget)
    plan = plan_parts(None, budget)
    assert limit.streamed <= plan.capacity()
    assert limit.streamed == min(limit.largest, plan.capacity())


@given(st.integers(min_value=1, max_value=MAX_PART * MAX_PARTS), st.data())
def test_the_budget_named_is_the_least_that_takes_the_file(
    length: int, data: st.DataObject
) -> None:
    budget = budget_for(length)
    assert budget is not None and budget % MiB == 0
    assert size_limit(max_upload=length, buffer_memory=budget).largest == length
    smaller = data.draw(st.integers(min_value=1, max_value=budget - MiB))
    if budget > 2 * MIN_PART:  # below that every budget gets 5 MiB parts
        assert size_limit(max_upload=length, buffer_memory=smaller).largest < length


def test_no_budget_takes_more_than_s3_allows() -> None:
    assert budget_for(MAX_PART * MAX_PARTS + 1) is None
    assert budget_for(5 * TiB) == 1050 * MiB


@given(st.integers(min_value=0, max_value=10**15))
def test_size_text_is_exact_and_readable(n: int) -> None:
    text = size_text(n)
    assert text.startswith(f"{n:,} bytes (")
    assert int(text.split(" bytes", 1)[0].replace(",", "")) == n


@dataclass
class _Limited:
    max_object_size: int


@dataclass
class _Wrapper:
    inner: object


def test_store_limit_is_read_through_wrappers() -> None:
    assert store_limit(_Wrapper(_Wrapper(_Limited(123)))) == 123
    assert store_limit(_Wrapper(object())) is None


@pytest.mark.parametrize("bad", [{"max_upload": 0}, {"buffer_memory": -1}])
def test_sizes_must_be_positive(bad: dict[str, int]) -> None:
    kwargs = {"max_upload": 1, "buffer_memory": 1, **bad}
    with pytest.raises(ValueError):
        size_limit(**kwargs)
