"""Reading request bodies: idle timeouts and byte counting, for every edge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request

from gateway.errors import Code, GatewayError


async def body_chunks(
    request: Request,
    idle_timeout: float,
    on_bytes: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """The request body, failing with 408 when the client sends nothing for too long.

    A client that stalls cannot pin a part buffer or a connection forever.
    Only time spent waiting for the client counts: time the consumer spends
    waiting for storage (backpressure) does not. A watchdog timer looks a few
    times per timeout period, so the per-chunk cost is two assignments rather
    than a timer per chunk.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    waiting_since: float | None = None
    fired = False
    handle: asyncio.TimerHandle | None = None

    def watchdog() -> None:
        nonlocal fired, handle
        if waiting_since is not None and loop.time() - waiting_since >= idle_timeout:
            fired = True
            task.cancel()
            return
        handle = loop.call_later(max(idle_timeout / 4, 0.05), watchdog)

    handle = loop.call_later(max(idle_timeout / 4, 0.05), watchdog)
    stream = request.stream().__aiter__()
    try:
        while True:
            waiting_since = loop.time()
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if fired and task.uncancel() == 0:
                    raise GatewayError(
                        Code.TIMEOUT, f"No data arrived for {idle_timeout:.0f} seconds."
                    ) from None
                raise
            waiting_since = None
            if chunk:
                if on_bytes is not None:
                    on_bytes(len(chunk))
                yield chunk
    finally:
        if handle is not None:
            handle.cancel()
