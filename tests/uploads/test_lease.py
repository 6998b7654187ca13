"""Leases in the store: one writer per upload, across processes sharing a store.

Run on the file store and on S3 (SeaweedFS), with a settable clock standing
in for time passing and for a replica whose clock runs ahead.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.errors import Code, GatewayError
from gateway.store.base import ObjectStore
from gateway.uploads.lease import Lease, hold
from tests.uploads.conftest import StoreFactory

KEY = "uploads/u1/lock"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _owner(store: ObjectStore) -> str | None:
    raw = await store.get(KEY)
    return None if raw is None else str(json.loads(raw)["owner"])


def test_second_writer_gets_a_conflict_until_release(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = new_store()
        first = Lease(store, KEY)
        await first.acquire()
        assert await _owner(store) == first.owner
        with pytest.raises(GatewayError) as caught:
            await Lease(new_store(), KEY).acquire()
        assert caught.value.code is Code.CONFLICT
        assert caught.value.headers.get("Retry-After") == "1"
        await first.release()
        assert await store.get(KEY) is None
        second = Lease(new_store(), KEY)
        await second.acquire()
        assert await _owner(store) == second.owner
        await second.release()
        await store.close()

    asyncio.run(scenario())


def test_a_dead_holders_lease_is_broken_after_its_ttl(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        clock = Clock()
        store = new_store()
        dead = Lease(store, KEY, ttl=10, clock=clock)
        await dead.acquire()
        assert dead._renewer is not None
        dead._renewer.cancel()  # the holder died: nobody renews
        clock.now += 9
        with pytest.raises(GatewayError):
            await Lease(store, KEY, ttl=10, clock=clock).acquire()
        clock.now += 2
        taker = Lease(store, KEY, ttl=10, clock=clock)
        await taker.acquire()
        assert await _owner(store) == taker.owner
        await taker.release()
        await store.close()

    asyncio.run(scenario())


def test_release_after_expiry_leaves_another_holders_lease(new_store: StoreFactory) -> None:
    """A holder whose lease ran out (and was taken over) must not delete the new lease."""

    async def scenario() -> None:
        clock = Clock()
        store = new_store()
        slow = Lease(store, KEY, ttl=10, clock=clock)
        await slow.acquire()
        assert slow._renewer is not None
        slow._renewer.cancel()  # stalled: its renewals did not happen
        clock.now += 11
        taker = Lease(store, KEY, ttl=10, clock=clock)
        await taker.acquire()
        await slow.release()
        assert await _owner(store) == taker.owner
        await taker.release()
        assert await store.get(KEY) is None
        await store.close()

    asyncio.run(scenario())


def test_fresh_lease_is_released_without_reading_it_back(new_store: StoreFactory) -> None:
    """A lease renewed within ttl/2 is ours for certain: release is one delete, no get."""

    async def scenario() -> None:
        store = new_store()
        gets: list[str] = []
        real_get = store.get

        async def counting_get(key: str) -> bytes | None:
            gets.append(key)
            return await real_get(key)

        store.get = counting_get  # type: ignore[method-assign]
        clock = Clock()
        lease = Lease(store, KEY, ttl=10, clock=clock)
        await lease.acquire()
        clock.now += 4  # well inside the lease
        await lease.release()
        assert gets == []
        assert await real_get(KEY) is None

        old = Lease(store, KEY, ttl=10, clock=clock)
        await old.acquire()
        assert old._renewer is not None
        old._renewer.cancel()
        clock.now += 6  # past ttl/2 since the last write: read back before deleting
        await old.release()
        assert gets == [KEY]
        assert await real_get(KEY) is None
        await store.close()

    asyncio.run(scenario())


def test_hold_releases_on_error(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = new_store()
        with pytest.raises(RuntimeError):
            async with hold(store, KEY):
                assert await store.get(KEY) is not None
                raise RuntimeError("the request failed")
        assert await store.get(KEY) is None
        await store.close()

    asyncio.run(scenario())


def test_a_waiting_writer_gets_the_lease_when_the_holder_releases(
    new_store: StoreFactory,
) -> None:
    async def scenario() -> None:
        store = new_store()
        first = Lease(store, KEY)
        await first.acquire()
        second = Lease(new_store(), KEY)
        waiting = asyncio.create_task(second.acquire(wait=30))
        for _ in range(5):
            await asyncio.sleep(0.1)
            assert not waiting.done()
            assert await _owner(store) == first.owner
        await first.release()
        await asyncio.wait_for(waiting, 30)
        assert await _owner(store) == second.owner
        await second.release()
        await store.close()

    asyncio.run(scenario())


def test_a_waiting_writer_takes_over_a_dead_holders_lease(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = new_store()
        dead = Lease(store, KEY, ttl=1.0)
        await dead.acquire()
        assert dead._renewer is not None
        dead._renewer.cancel()  # the holder died: nobody renews
        taker = Lease(new_store(), KEY, ttl=1.0)
        await taker.acquire(wait=30)
        assert await _owner(store) == taker.owner
        await taker.release()
        await store.close()

    asyncio.run(scenario())


def test_a_live_holder_renews_past_its_ttl_and_a_waiter_gives_up(
    new_store: StoreFactory,
) -> None:
    """Two live writers never both hold it: renewals keep a short lease alive while held."""

    async def scenario() -> None:
        store = new_store()
        holder = Lease(store, KEY, ttl=2.0)
        await holder.acquire()
        waiter = Lease(new_store(), KEY, ttl=2.0)
        with pytest.raises(GatewayError) as caught:
            await waiter.acquire(wait=5.0)  # well past the ttl
        assert caught.value.code is Code.CONFLICT
        assert await _owner(store) == holder.owner
        await holder.release()
        await store.close()

    asyncio.run(scenario())
