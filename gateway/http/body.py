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
    (backpressure) does not. A watchdog timer looks a few times per period, so
    the per-chunk cost is a few assignments rather than a timer per chunk.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    idle_timeout = limits.idle_timeout
    window = None
    if limits.min_rate > 0:
        window = RateWindow(limits.min_rate, limits.period, limits.grace)
    waiting_since: float | None = None
    waited = 0.0  # seconds spent waiting for the client in completed waits
    received = 0
    fired: str | None = None
    handle: asyncio.TimerHandle | None = None
    tick = idle_timeout / 4
    if window is not None:
        tick = min(tick, window.grace / 4)
    tick = max(tick, 0.05)

    def watchdog() -> None:
        nonlocal fired, handle
        now = loop.time()
        # Only a request waiting for its client is cut, never one waiting for storage.
        if waiting_since is not None and now - waiting_since >= idle_timeout:
            fired = f"No data arrived for {idle_timeout:.0f} seconds."
        elif window is not None and waiting_since is not None:
            if window.too_slow(waited + now - waiting_since, received):
                fired = (
                    f"The body arrived slower than {limits.min_rate} bytes a second; "
                    "what arrived is kept, resume from there."
                )
        if fired is not None:
            task.cancel()
            return
        handle = loop.call_later(tick, watchdog)

    handle = loop.call_later(tick, watchdog)
    stream = request.stream().__aiter__()
    try:
        while True:
            waiting_since = loop.time()
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if fired is not None and task.uncancel() == 0:
                    raise GatewayError(Code.TIMEOUT, fired) from None
                raise
            waited += loop.time() - waiting_since
            waiting_since = None
            if chunk:
                received += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
                yield chunk
    finally:
        if handle is not None:
            handle.cancel()
