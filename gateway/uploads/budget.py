"""The memory budget for part buffers.

One budget per process. An upload asks for a buffer before it reads the next
part from the socket; when the budget is spent it waits, and while it waits it
does not read, so TCP backpressure slows the client instead of memory growing.
Peak buffer memory is the budget, whatever the file sizes or upload count.

Buffers are anonymous memory maps, not bytearrays: the kernel hands out
zeroed pages without a userspace memset, and a dropped map goes straight
back to the system instead of staying in the allocator's heap. Released
buffers are kept for reuse while other uploads are running (allocating and
faulting in 16 MiB per part was a tenth of the intake's CPU) and dropped once
nothing is in use, so an idle process returns to its base memory.
"""

from __future__ import annotations

import asyncio
import mmap
from collections import deque
from collections.abc import Callable

Buffer = mmap.mmap


class BufferBudget:
    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._on_change = on_change
        self._pool: dict[int, list[Buffer]] = {}
        self.pooled = 0

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.in_use)

    async def acquire(self, size: int) -> Buffer:
        """Wait until ``size`` bytes fit, then return a buffer of that size (in arrival order)."""
        if size > self.limit:
            raise ValueError(f"a buffer of {size} bytes exceeds the budget of {self.limit}")
        if not self._waiters and self.in_use + size <= self.limit:
            self.in_use += size
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (size, future)
            self._waiters.append(entry)
            try:
                await future
            except BaseException:
                if future.done() and not future.cancelled():
                    self.release(size)  # granted just as we were cancelled
                else:
                    self._waiters.remove(entry)
                    self._wake()
                raise
        self._changed()
        return self._take(size)

    def _take(self, size: int) -> Buffer:
        spare = self._pool.get(size)
        if spare:
            self.pooled -= size
            return spare.pop()
        return mmap.mmap(-1, max(size, 1))

    def release(self, size: int, buffer: Buffer | None = None) -> None:
        """Give back ``size`` bytes; ``buffer`` (no longer used by anyone) may be reused."""
        self.in_use -= size
        if self.in_use < 0:
            raise AssertionError("budget released more than acquired")
        if self.in_use == 0:
            self._pool.clear()
            self.pooled = 0
        elif buffer is not None and self.in_use + self.pooled + len(buffer) <= self.limit:
            self._pool.setdefault(len(buffer), []).append(buffer)
            self.pooled += len(buffer)
        self._wake()
        self._changed()

    def _wake(self) -> None:
        while self._waiters:
            size, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self.in_use + size > self.limit:
                return
            self._waiters.popleft()
            self.in_use += size
            future.set_result(None)
