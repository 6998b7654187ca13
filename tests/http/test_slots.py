"""A link's upload slots: a limit, a first-come-first-served queue, a bounded wait."""

from __future__ import annotations

import asyncio

from gateway.http.slots import LinkSlots


def test_slots_up_to_the_limit_then_no_wait_means_no() -> None:
    async def scenario() -> None:
        slots = LinkSlots(2)
        assert await slots.acquire("a", 0) and await slots.acquire("a", 0)
        assert not await slots.acquire("a", 0)
        assert await slots.acquire("b", 0)  # another link is not affected
        slots.release("a")
        assert await slots.acquire("a", 0)
        for link in ("a", "a", "b"):
            slots.release(link)
        assert slots.active("a") == slots.active("b") == 0
        assert not slots._active and not slots._queues

    asyncio.run(scenario())


def test_waiters_get_freed_slots_in_arrival_order() -> None:
    async def scenario() -> None:
        slots = LinkSlots(1)
        assert await slots.acquire("a", 0)
        order: list[int] = []

        async def wait(n: int) -> None:
            assert await slots.acquire("a", 30)
            order.append(n)

        waiters = []
        for n in range(3):
            waiters.append(asyncio.create_task(wait(n)))
            await asyncio.sleep(0)
        assert not await slots.acquire("a", 0)  # no jumping the queue
        for expected in range(3):
            slots.release("a")
            await asyncio.sleep(0.01)
            assert order == list(range(expected + 1))
            assert slots.active("a") == 1
        slots.release("a")
        await asyncio.gather(*waiters)
        assert not slots._active and not slots._queues

    asyncio.run(scenario())


def test_a_wait_is_bounded_and_leaves_the_queue() -> None:
    async def scenario() -> None:
        slots = LinkSlots(1)
        assert await slots.acquire("a", 0)
        assert not await slots.acquire("a", 0.05)
        assert not slots._queues
        slots.release("a")
        assert not slots._active

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_up_its_place() -> None:
    async def scenario() -> None:
        slots = LinkSlots(1)
        assert await slots.acquire("a", 0)
        first = asyncio.create_task(slots.acquire("a", 30))
        second = asyncio.create_task(slots.acquire("a", 30))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        slots.release("a")
        assert await second
        assert first.cancelled()
        slots.release("a")
        assert not slots._active and not slots._queues

    asyncio.run(scenario())
