"""The buffer budget: first come first served, cancellation gives back, never over the limit."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.uploads.budget import BufferBudget


async def _spin(times: int = 5) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


def test_acquire_gives_a_buffer_of_the_size_and_release_returns_it() -> None:
    async def main() -> None:
        seen: list[int] = []
        budget = BufferBudget(100, on_change=seen.append)
        buffer = await budget.acquire(60)
        assert len(buffer) == 60
        memoryview(buffer)[:] = b"x" * 60  # writable
        assert budget.in_use == 60
        budget.release(60)
        assert budget.in_use == 0
        assert seen == [60, 0]

    asyncio.run(main())


def test_a_buffer_larger_than_the_budget_is_refused() -> None:
    async def main() -> None:
        with pytest.raises(ValueError):
            await BufferBudget(10).acquire(11)

    asyncio.run(main())


def test_waiters_are_served_in_order() -> None:
    async def main() -> None:
        budget = BufferBudget(10)
        await budget.acquire(10)
        order: list[str] = []

        async def want(name: str, size: int) -> None:
            await budget.acquire(size)
            order.append(name)

        big = asyncio.create_task(want("big", 8))
        await _spin()
        small = asyncio.create_task(want("small", 1))
        await _spin()
        budget.release(2)  # 1 byte would fit, but the big one asked first
        await _spin()
        assert order == [] and not small.done()
        budget.release(8)
        await asyncio.gather(big, small)
        assert order == ["big", "small"]
        assert budget.in_use == 9

    asyncio.run(main())


def test_cancelled_waiter_leaves_the_queue_and_wakes_the_next() -> None:
    async def main() -> None:
        budget = BufferBudget(10)
        await budget.acquire(6)
        big = asyncio.create_task(budget.acquire(8))
        await _spin()
        small = asyncio.create_task(budget.acquire(4))
        await _spin()
        assert not small.done()  # blocked behind the big one
        big.cancel()
        await _spin()
        assert small.done() and budget.in_use == 10
        with pytest.raises(asyncio.CancelledError):
            await big

    asyncio.run(main())


def test_cancelled_just_after_being_granted_gives_the_bytes_back() -> None:
    async def main() -> None:
        budget = BufferBudget(10)
        await budget.acquire(10)
        waiter = asyncio.create_task(budget.acquire(7))
        await _spin()
        budget.release(10)  # grants the waiter synchronously...
        assert budget.in_use == 7
        waiter.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert budget.in_use == 0

    asyncio.run(main())


def test_releasing_more_than_acquired_is_an_error() -> None:
    with pytest.raises(AssertionError):
        BufferBudget(10).release(1)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=64),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=2**32),
)
def test_never_exceeds_the_limit_under_random_load(limit: int, sizes: list[int], seed: int) -> None:
    rng = random.Random(seed)
    peak = 0

    def watch(in_use: int) -> None:
        nonlocal peak
        assert 0 <= in_use <= limit
        peak = max(peak, in_use)

    async def worker(budget: BufferBudget, size: int) -> None:
        buffer = await budget.acquire(size)
        try:
            await _spin(rng.randrange(4))
        finally:
            # Half the time the buffer goes back to the pool for reuse.
            budget.release(len(buffer), buffer if rng.random() < 0.5 else None)

    async def main() -> None:
        budget = BufferBudget(limit, on_change=watch)
        tasks = [asyncio.create_task(worker(budget, min(s, limit))) for s in sizes]
        await _spin(rng.randrange(3))
        for task in tasks:
            if rng.random() < 0.25:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert budget.in_use == 0
        assert not budget._waiters

    asyncio.run(main())
    assert peak <= limit


def test_reusing_the_last_pooled_buffer_of_a_size_leaves_eviction_working() -> None:
    """Pool {16: [], 32: [b]} once made a 64-byte acquire fail popping the empty list."""

    async def main() -> None:
        budget = BufferBudget(96)
        small, medium = await budget.acquire(16), await budget.acquire(32)
        budget.release(16, small)
        budget.release(32, medium)
        assert budget.pooled == 48
        again = await budget.acquire(16)  # the pool's only 16-byte buffer
        assert again is small
        large = await budget.acquire(64)  # needs the 32-byte spare evicted
        assert len(large) == 64
        assert budget.in_use == 80 and budget.pooled == 0
        budget.release(64, large)
        budget.release(16, again)
        assert budget.in_use == 0 and budget.in_use + budget.pooled <= 96

    asyncio.run(main())


def test_a_released_buffer_is_reused_until_the_process_has_been_idle() -> None:
    async def main() -> None:
        budget = BufferBudget(100, idle_trim=0.05)
        first = await budget.acquire(40)
        budget.release(40, first)  # nothing in use now, but the next request comes soon
        assert budget.pooled == 40
        again = await budget.acquire(40)
        assert again is first
        budget.release(40, again)
        await asyncio.sleep(0.2)  # idle for longer than idle_trim
        assert budget.pooled == 0
        fresh = await budget.acquire(40)
        assert fresh is not first
        budget.release(40, fresh)
        budget.trim()
        assert budget.pooled == 0

    asyncio.run(main())


def test_a_buffer_released_outside_an_event_loop_is_not_kept() -> None:
    budget = BufferBudget(100)
    buffer = asyncio.run(budget.acquire(30))
    budget.release(30, buffer)
    assert budget.pooled == 0 and budget.in_use == 0


def test_large_buffers_are_zeroed_and_writable() -> None:
    async def main() -> None:
        budget = BufferBudget(8 * 1024 * 1024)
        buffer = await budget.acquire(4 * 1024 * 1024)
        view = memoryview(buffer)
        assert view.nbytes == 4 * 1024 * 1024 and not any(view[::4096])
        view[-3:] = b"end"
        assert bytes(view[-3:]) == b"end"
        del view
        budget.release(len(buffer), buffer)
        budget.trim()

    asyncio.run(main())


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=8, max_value=64),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=2**32),
)
def test_pooled_and_used_buffers_together_stay_within_the_limit(
    limit: int, sizes: list[int], seed: int
) -> None:
    rng = random.Random(seed)

    async def worker(budget: BufferBudget, size: int) -> None:
        buffer = await budget.acquire(size)
        try:
            assert budget.in_use + budget.pooled <= limit
            await _spin(rng.randrange(4))
        finally:
            budget.release(len(buffer), buffer)

    async def main() -> None:
        budget = BufferBudget(limit, idle_trim=60)
        tasks = [asyncio.create_task(worker(budget, min(s, limit))) for s in sizes]
        await asyncio.gather(*tasks, return_exceptions=True)
        assert budget.in_use == 0 and budget.pooled <= limit
        for task in tasks:
            assert task.exception() is None
        budget.trim()

    asyncio.run(main())
