"""Reading request bodies: idle timeouts, a minimum data rate and byte counting, for every edge."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.requests import Request

from gateway.errors import Code, GatewayError
from gateway.settings import Settings


@dataclass(frozen=True)
class BodyLimits:
    """How long a body may go silent, and the slowest it may arrive (``min_rate`` 0: any)."""

    idle_timeout: float
    min_rate: int = 0  # bytes per second, averaged over ``period``
    period: float = 10.0  # seconds of waiting for the client
    grace: float | None = None  # first judgement after this long (default: ``period``)

    @classmethod
    def of(cls, settings: Settings, queued: float = 0.0) -> BodyLimits:
        """The configured limits for a request that waited ``queued`` seconds for its slot.

        Its client kept sending meanwhile (into the server's buffer), so it gets that
        much less grace, down to a quarter of the period: a slow body that queued
        behind slow bodies frees its slot soon, and a fast one is not slowed at all.
        """
        period = settings.min_body_rate_period
        grace = max(period - queued, period / 4)
        return cls(settings.idle_timeout, settings.min_body_rate, period, grace)


class RateWindow:
    """Whether a body arrives slower than ``min_rate`` over its last ``period`` seconds.

    Pure bookkeeping: the caller passes the time spent waiting for the client
    so far (time spent waiting for storage does not count) and the bytes
    received so far. A body is judged only once ``grace`` seconds of waiting
    have passed (by default ``period``), then over a sliding window of at most
    ``period`` seconds.
    """

    def __init__(self, min_rate: int, period: float, grace: float | None = None) -> None:
        self.min_rate = min_rate
        self.period = period
        self.grace = period if grace is None else min(grace, period)
        self._samples: deque[tuple[float, int]] = deque([(0.0, 0)])

    def too_slow(self, waited: float, received: int) -> bool:
        self._samples.append((waited, received))
        # Keep the newest sample that is at least a period old as the window's start.
        while len(self._samples) > 1 and self._samples[1][0] <= waited - self.period:
            self._samples.popleft()
        start, base = self._samples[0]
        span = waited - start
        return span >= self.grace and received - base < self.min_rate * span


class _Watchdog:
    """Cancels the reading task when its client is silent or too slow for too long.

    It looks a few times per period, so the per-chunk cost is a few
    assignments rather than a timer per chunk. Only time spent waiting for the
    client counts: between :meth:`waiting` and :meth:`arrived`.
    """

    def __init__(self, limits: BodyLimits, task: asyncio.Task[object]) -> None:
        self.limits = limits
        self.task = task
        self.loop = asyncio.get_running_loop()
        self.window = None
        if limits.min_rate > 0:
            self.window = RateWindow(limits.min_rate, limits.period, limits.grace)
        self.waiting_since: float | None = None
        self.waited = 0.0  # seconds spent waiting for the client in completed waits
        self.received = 0
        self.fired: str | None = None  # why the task was cancelled
        tick = limits.idle_timeout / 4
        if self.window is not None:
            tick = min(tick, self.window.grace / 4)
        self.tick = max(tick, 0.05)
        self._handle = self.loop.call_later(self.tick, self._look)

    def waiting(self) -> None:
        self.waiting_since = self.loop.time()

    def arrived(self, size: int) -> None:
        assert self.waiting_since is not None
        self.waited += self.loop.time() - self.waiting_since
        self.waiting_since = None
        self.received += size

    def stop(self) -> None:
        self._handle.cancel()

    def _look(self) -> None:
        self.fired = self._verdict()
        if self.fired is not None:
            self.task.cancel()
            return
        self._handle = self.loop.call_later(self.tick, self._look)

    def _verdict(self) -> str | None:
        # Only a request waiting for its client is cut, never one waiting for storage.
        if self.waiting_since is None:
            return None
        now = self.loop.time()
        if now - self.waiting_since >= self.limits.idle_timeout:
            return f"No data arrived for {self.limits.idle_timeout:.0f} seconds."
        if self.window is not None and self.window.too_slow(
            self.waited + now - self.waiting_since, self.received
        ):
            return (
                f"The body arrived slower than {self.limits.min_rate} bytes a second; "
                "what arrived is kept, resume from there."
            )
        return None


async def body_chunks(
    request: Request,
    limits: BodyLimits,
    on_bytes: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """The request body, failing with 408 when the client is silent or too slow for too long.

    A client that stalls, or trickles a byte now and then, cannot pin a part
    buffer, a link's upload slot or an upload's lease: what it sent is kept
    (the upload stays resumable) and its request ends. Only time spent waiting
    for the client counts: time the consumer spends waiting for storage
    (backpressure) does not.
    """
    task = asyncio.current_task()
    assert task is not None
    watchdog = _Watchdog(limits, task)
    stream = request.stream().__aiter__()
    try:
        while True:
            watchdog.waiting()
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if watchdog.fired is not None and task.uncancel() == 0:
                    raise GatewayError(Code.TIMEOUT, watchdog.fired) from None
                raise
            watchdog.arrived(len(chunk))
            if chunk:
                if on_bytes is not None:
                    on_bytes(len(chunk))
                yield chunk
    finally:
        watchdog.stop()
