"""Upload slots per link: at most ``limit`` uploads at once, and a fair queue for the rest.

A request that finds its link's slots taken waits, first come first served,
for up to ``wait`` seconds: slow bodies are cut after the minimum-rate grace
period, so a normal upload beside them goes through once they are. Only a
request still waiting after that gets ``429``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class LinkSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active: dict[str, int] = {}
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}

    def active(self, link_id: str) -> int:
        return self._active.get(link_id, 0)

    async def acquire(self, link_id: str, wait: float) -> bool:
        """Take a slot, waiting up to ``wait`` seconds; False when none came free."""
        queue = self._queues.get(link_id)
        if self.active(link_id) < self.limit and not queue:
            self._active[link_id] = self.active(link_id) + 1
            return True
        if wait <= 0:
            return False
        if queue is None:
            queue = self._queues[link_id] = deque()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), wait)
            return True
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as the wait ended: pass it on.
                self.release(link_id)
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
                if not queue and self._queues.get(link_id) is queue:
                    del self._queues[link_id]
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False

    def release(self, link_id: str) -> None:
        """Give the slot to the longest waiter, or free it."""
        queue = self._queues.get(link_id)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; the count stays
                if not queue:
                    del self._queues[link_id]
                return
        self._queues.pop(link_id, None)
        self._active[link_id] -= 1
        if not self._active[link_id]:
            del self._active[link_id]
