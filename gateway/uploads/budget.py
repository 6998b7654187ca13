"""The memory budget for part buffers.

One budget per process. An upload asks for a buffer before it reads the next
part from the socket; when the budget is spent it waits, and while it waits it
does not read, so TCP backpressure slows the client instead of memory growing.
Peak buffer memory is the budget, whatever the file sizes or upload count.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class BufferBudget:
    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._on_change = on_change

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.in_use)

    async def acquire(self, size: int) -> bytearray:
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
        return bytearray(size)

    def release(self, size: int) -> None:
        self.in_use -= size
        if self.in_use < 0:
            raise AssertionError("budget released more than acquired")
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
