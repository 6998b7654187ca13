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
    """
    stream = request.stream().__aiter__()
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise GatewayError(
                Code.TIMEOUT, f"No data arrived for {idle_timeout:.0f} seconds."
            ) from None
        if chunk:
            if on_bytes is not None:
                on_bytes(len(chunk))
            yield chunk
