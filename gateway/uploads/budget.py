"""The memory budget for part buffers.

One budget per process. An upload asks for a buffer before it reads the next
part from the socket; when the budget is spent it waits, and while it waits it
does not read, so TCP backpressure slows the client instead of memory growing.
Peak buffer memory is the budget, whatever the file sizes or upload count.

Buffers are private anonymous memory maps, not bytearrays: the kernel hands
out zeroed pages without a userspace memset, a dropped map goes straight
back to the system instead of staying in the allocator's heap, and large
ones are backed by transparent huge pages where the kernel offers them (one
fault per 2 MiB instead of one per 4 KiB). Released buffers are kept for
reuse (allocating and faulting in 16 MiB per part was a tenth of the
intake's CPU, and a tus client sending one PATCH after another would pay it
on every request) and dropped once nothing has been in use for
``idle_trim`` seconds, so an idle process returns to its base memory.
"""

from __future__ import annotations

import asyncio
import mmap
from collections import deque
from collections.abc import Callable

Buffer = mmap.mmap

HUGE_PAGE = 2 * 1024 * 1024
IDLE_TRIM = 2.0  # seconds with nothing in use before pooled buffers are unmapped


def new_buffer(size: int) -> Buffer:
    """A zeroed private anonymous map of ``size`` bytes, huge-page backed when large."""
    flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0x20)
    buffer = mmap.mmap(-1, max(size, 1), flags=flags)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None and size >= HUGE_PAGE:
        try:
            buffer.madvise(advice)
        except OSError:  # a kernel without transparent huge pages: small pages it is
            pass
    return buffer


class BufferBudget:
    def __init__(
        self,
        limit: int,
        on_change: Callable[[int], None] | None = None,
        *,
        idle_trim: float = IDLE_TRIM,
    ) -> None:
        self.limit = limit
        self.idle_trim = idle_trim
        self._trim_timer: asyncio.TimerHandle | None = None
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
        self._cancel_trim()
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
            buffer = spare.pop()
            if not spare:  # no empty lists in the pool: _evict takes the first one
                del self._pool[size]
            return buffer
        # Mapped memory (in use plus pooled) stays within the limit: spare buffers of
        # other sizes make room for the new one.
        self._evict(self.limit - self.in_use)
        return new_buffer(size)

    def _evict(self, room: int) -> None:
        while self.pooled > room:
            size, spares = next(iter(self._pool.items()))
            spares.pop()
            self.pooled -= size
            if not spares:
                del self._pool[size]

    def release(self, size: int, buffer: Buffer | None = None) -> None:
        """Give back ``size`` bytes; ``buffer`` (no longer used by anyone) may be reused."""
        self.in_use -= size
        if self.in_use < 0:
            raise AssertionError("budget released more than acquired")
        if buffer is not None and self.in_use + self.pooled + len(buffer) <= self.limit:
            self._pool.setdefault(len(buffer), []).append(buffer)
            self.pooled += len(buffer)
        self._wake()
        if self.in_use == 0:
            self._schedule_trim()
        self._changed()

    def trim(self) -> None:
        """Unmap every pooled buffer (pooled memory goes back to the system)."""
        self._cancel_trim()
        self._pool.clear()
        self.pooled = 0

    def _schedule_trim(self) -> None:
        if not self.pooled or self._trim_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # released outside any event loop: nothing to wait for
            self.trim()
            return
        self._trim_timer = loop.call_later(self.idle_trim, self._idle)

    def _idle(self) -> None:
        self._trim_timer = None
        if self.in_use == 0:
            self.trim()

    def _cancel_trim(self) -> None:
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None

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
