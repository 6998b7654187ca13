"""Short leases in the store, so two replicas never write one upload at once.

A lease is a small object created only if absent. Its holder renews it while
working (every ``ttl/3`` seconds, so ``ttl`` can be short); a holder that
died stops renewing, and after ``ttl`` seconds another request may break the
lease. A request that finds the lease held may wait for it; one that still
finds it held when its wait is over gets ``GatewayError(Code.CONFLICT)`` and
the client retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable

from gateway.errors import Code, GatewayError
from gateway.store.base import ObjectStore, PreconditionFailed

DEFAULT_TTL = 10.0


class Lease:
    def __init__(
        self,
        store: ObjectStore,
        key: str,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.key = key
        self.ttl = ttl
        self.clock = clock
        self.owner = secrets.token_hex(8)
        self._renewer: asyncio.Task[None] | None = None
        self._expires = 0.0  # when the lease we last wrote runs out, by our clock

    async def _write(self, *, if_absent: bool = False) -> None:
        expires = self.clock() + self.ttl
        body = json.dumps({"owner": self.owner, "expires": expires}).encode()
        await self.store.put(self.key, body, if_absent=if_absent)
        self._expires = expires

    async def acquire(self, wait: float = 0.0) -> None:
        """Take the lease, waiting up to ``wait`` seconds while someone else holds it.

        A live holder releases it when done; a dead one's lapses ``ttl`` seconds
        after its last renewal and is broken then. Only one request ever holds it:
        taking it is a create-if-absent in the store.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        pause = 0.1
        broken = 0
        while True:
            try:
                await self._write(if_absent=True)
                break
            except PreconditionFailed:
                if broken < 3 and await self._break_if_stale():
                    broken += 1
                    continue
            left = deadline - loop.time()
            if left <= 0:
                raise GatewayError(Code.CONFLICT, headers={"Retry-After": "1"})
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)
        self._renewer = asyncio.create_task(self._renew())

    async def _break_if_stale(self) -> bool:
        raw = await self.store.get(self.key)
        if raw is None:
            return True
        try:
            expires = float(json.loads(raw)["expires"])
        except (ValueError, KeyError, TypeError):
            expires = 0.0
        if expires > self.clock():
            return False
        await self.store.delete(self.key)
        return True

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            with contextlib.suppress(Exception):
                await self._write()

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
            self._renewer = None
            if self._expires - self.clock() > self.ttl / 2:
                # Renewed recently: no one can have broken it, unless a replica's clock is
                # ttl/2 ahead of ours. Delete it without reading it back first.
                await self.store.delete(self.key)
                return
            raw = await self.store.get(self.key)
            if raw is not None and self.owner.encode() in raw:
                await self.store.delete(self.key)


@contextlib.asynccontextmanager
async def hold(
    store: ObjectStore, key: str, ttl: float = DEFAULT_TTL, wait: float = 0.0
) -> AsyncIterator[Lease]:
    """Hold the lease for the block; ``wait`` is how long to wait for it (then CONFLICT)."""
    lease = Lease(store, key, ttl=ttl)
    await lease.acquire(wait)
    try:
        yield lease
    finally:
        await asyncio.shield(lease.release())
