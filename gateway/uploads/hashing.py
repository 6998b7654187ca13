"""SHA-256 of a file that may arrive over many requests.

hashlib cannot save its state, so a running hash lives in process memory,
keyed by upload and offset, as a cache: when the next request of an upload
reaches the same process at the same offset the hash simply continues; when
it does not (another replica, a restart), the finished file is read back from
the store once to hash it. Nothing is lost either way, only time.

Hashing runs in a worker thread, one buffer at a time and in order:
hashlib releases the GIL on large buffers, so the event loop keeps receiving.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from typing import Any

_CACHE_SIZE = 4096


class HashCache:
    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._entries: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._size = size

    def take(self, upload_id: str, offset: int) -> Any | None:
        """The running hash of ``upload_id`` if it covers exactly ``offset`` bytes."""
        entry = self._entries.pop(upload_id, None)
        if entry is None:
            return hashlib.sha256() if offset == 0 else None
        at, state = entry
        if at == offset:
            return state
        return hashlib.sha256() if offset == 0 else None

    def put(self, upload_id: str, offset: int, state: Any) -> None:
        self._entries[upload_id] = (offset, state)
        self._entries.move_to_end(upload_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def drop(self, upload_id: str) -> None:
        self._entries.pop(upload_id, None)


class OrderedHasher:
    """Feeds buffers to one hash object in a worker thread, strictly in order."""

    def __init__(self, state: Any | None) -> None:
        self.state = state
        self._last: asyncio.Future[None] | None = None

    def feed(self, data: memoryview) -> asyncio.Future[None]:
        """Schedule ``data`` (which must not change until the future is done)."""
        previous = self._last
        state = self.state

        async def run() -> None:
            if previous is not None:
                await previous
            if state is not None and len(data):
                await asyncio.to_thread(state.update, data)

        task: asyncio.Future[None] = asyncio.ensure_future(run())
        self._last = task
        return task

    async def drain(self) -> None:
        if self._last is not None:
            await self._last

    def hexdigest(self) -> str | None:
        return None if self.state is None else str(self.state.hexdigest())
