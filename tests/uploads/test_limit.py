"""The largest file: one number from the settings and the store, and the part plan agrees."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.uploads.limit import size_limit, size_text, store_limit
from gateway.uploads.partsize import (
    DEFAULT_PART,
    MAX_PART,
    MAX_PARTS,
    MIN_PART,
    MiB,
    TooLargeForParts,
    largest_part,
    max_part_for_budget,
    plan_parts,
)

TiB = 1024**4
budgets = st.integers(min_value=1, max_value=256 * 1024 * MiB)
sizes = st.integers(min_value=1, max_value=60 * TiB)


def test_defaults_take_5_tib_whatever_the_budget() -> None:
    for budget in (10 * MiB, 256 * MiB, 4096 * MiB):
        limit = size_limit(max_upload=5 * TiB, buffer_memory=budget)
        assert limit.largest == 5 * TiB
        assert limit.reason == "GATEWAY_MAX_UPLOAD=5.0 TiB"
    limit = size_limit(max_upload=5 * TiB, buffer_memory=256 * MiB)
    line = limit.describe()
    assert "5,497,558,138,880 bytes (5.0 TiB)" in line
    assert f"{limit.streamed:,} bytes" in line  # a body of unknown length holds less
    assert limit.streamed < limit.largest


def test_the_parts_decide_past_48_tib_or_with_fewer_parts() -> None:
    limit = size_limit(max_upload=100 * TiB, buffer_memory=256 * MiB)
    assert limit.largest == MAX_PART * MAX_PARTS
    assert "10,000 parts of at most 5.0 GiB (S3's limits)" in limit.reason
    assert "GATEWAY_MAX_UPLOAD=100.0 TiB is more" in limit.reason
    few = size_limit(max_upload=5 * TiB, buffer_memory=64 * MiB, max_parts=16)
    assert few.parts == 16
    assert few.largest == 16 * 16 * 32 * MiB  # 16 parts of 16 sub-parts of a 32 MiB buffer
    assert "GATEWAY_S3_MAX_PARTS=16" in few.reason and "GATEWAY_BUFFER_MEMORY" in few.reason
    assert few.streamed == 16 * DEFAULT_PART


def test_a_lower_setting_decides_and_nothing_else_is_said() -> None:
    limit = size_limit(max_upload=2 * 1024**3, buffer_memory=256 * MiB)
    assert limit.largest == limit.streamed == 2 * 1024**3
    assert limit.reason == "GATEWAY_MAX_UPLOAD=2.0 GiB"
    assert limit.describe() == (
        "largest file accepted: 2,147,483,648 bytes (2.0 GiB), set by GATEWAY_MAX_UPLOAD=2.0 GiB"
    )


def test_a_store_limit_decides_when_lowest() -> None:
    limit = size_limit(max_upload=5 * TiB, buffer_memory=256 * MiB, store_max=10**12)
    assert limit.largest == 10**12
    assert limit.reason.startswith("the store's largest object")


part_limits = st.sampled_from([MAX_PARTS, 16]) | st.integers(min_value=2, max_value=MAX_PARTS)


@given(sizes, budgets, st.none() | sizes, part_limits)
def test_the_limit_is_the_least_bound(
    max_upload: int, budget: int, store_max: int | None, parts: int
) -> None:
    limit = size_limit(
        max_upload=max_upload, buffer_memory=budget, store_max=store_max, max_parts=parts
    )
    bounds = [max_upload, min(MAX_PART, max_part_for_budget(budget) * parts) * parts]
    if store_max is not None:
        bounds.append(store_max)
    assert limit.largest == min(bounds)
    assert 0 < limit.streamed <= limit.largest
    assert limit.cap(limit.largest + 1) == limit.largest
    assert limit.cap(1) == 1


@given(sizes, budgets, part_limits)
def test_the_largest_file_has_a_plan_and_a_byte_more_may_not(
    max_upload: int, budget: int, parts: int
) -> None:
    limit = size_limit(max_upload=max_upload, buffer_memory=budget, max_parts=parts)
    plan = plan_parts(limit.largest, budget, parts=parts)
    assert MIN_PART <= plan.base <= MAX_PART
    assert -(-limit.largest // plan.base) <= parts
    assert plan.capacity(parts) >= limit.largest
    assert plan.sub <= max_part_for_budget(budget)  # every buffer fits the budget
    if limit.largest < max_upload:  # the parts decide: one byte more has no plan
        with pytest.raises(TooLargeForParts):
            plan_parts(limit.largest + 1, budget, parts=parts)
    assert limit.largest == min(max_upload, largest_part(budget, parts) * parts)


@given(sizes, budgets, part_limits)
def test_a_body_of_unknown_length_fits_its_growing_parts(
    max_upload: int, budget: int, parts: int
) -> None:
    limit = size_limit(max_upload=max_upload, buffer_memory=budget, max_parts=parts)
    plan = plan_parts(None, budget, parts=parts)
    assert limit.streamed <= plan.capacity(parts)
    assert limit.streamed == min(limit.largest, plan.capacity(parts))


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


@pytest.mark.parametrize("bad", [{"max_upload": 0}, {"buffer_memory": -1}, {"max_parts": 0}])
def test_sizes_must_be_positive(bad: dict[str, int]) -> None:
    kwargs = {"max_upload": 1, "buffer_memory": 1, **bad}
    with pytest.raises(ValueError):
        size_limit(**kwargs)
