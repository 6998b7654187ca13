"""Running the app under uvicorn, with graceful shutdown.

uvicorn's httptools parser and uvloop are installed with the package (the
``standard`` extra) and chosen explicitly: they are the fastest pair for
large request bodies.

On SIGTERM the process stops listening, marks itself draining (``/readyz``
turns red, new uploads on open connections get 503 with Retry-After so the
client moves to another replica), lets running requests finish within the
grace period and then closes the rest; an upload cut off that way keeps
every byte it stored and resumes on any replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import json
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.app import create_app
from gateway.logs import configure_logging, uvicorn_log_config
from gateway.settings import Settings

log = logging.getLogger("gateway.server")

M_ARENA_MAX = -8  # mallopt parameter number (malloc.h)


# After the grace period, cut-off requests get this long to save what they
# received (their last part and resume state) before the process gives up.
SETTLE_SECONDS = 30.0


class GatewayServer(uvicorn.Server):
    """uvicorn's server with the grace period kept by us, not by uvicorn.

    uvicorn's own ``timeout_graceful_shutdown`` cancels the running requests
    and at once runs the lifespan shutdown, which closes the store while the
    cancelled uploads are still saving their last bytes: those bytes were
    lost. Here the running requests are cancelled when the grace period ends,
    and the app shuts down only after they have finished saving.
    """

    def __init__(self, config: uvicorn.Config, app: Starlette, grace: float = 110.0) -> None:
        super().__init__(config)
        self.app = app
        self.grace = grace

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = getattr(self.app.state, "services", None)
        if services is not None and not services.draining:
            services.draining = True
            # A signal handler runs inside whatever task it interrupted: log
            # from an empty context so the line carries no request's id.
            contextvars.Context().run(
                log.info, "shutting down: draining running uploads (signal %s)", sig
            )
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            # uvicorn re-raises the signal once it has shut down, so the process
            # would end "killed by SIGTERM" (status 143), which orchestrators
            # report as a failure. A drained shutdown asked for by SIGTERM is a
            # clean exit: status 0. (Ctrl-C keeps uvicorn's behaviour.)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list) and sig in captured:
                captured.remove(sig)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        timers = [
            loop.call_later(self.grace, self._cut_off),
            loop.call_later(self.grace + SETTLE_SECONDS, self._give_up),
        ]
        try:
            await super().shutdown(sockets)
        finally:
            for timer in timers:
                timer.cancel()

    def _cut_off(self) -> None:
        tasks = list(self.server_state.tasks)
        if tasks:
            log.warning(
                "grace period of %gs over: cutting off %d running request(s); "
                "their uploads keep what was stored and can resume",
                self.grace,
                len(tasks),
            )
        for task in tasks:
            task.cancel()

    def _give_up(self) -> None:
        log.error("requests still running %gs after the cut-off: exiting", SETTLE_SECONDS)
        self.force_exit = True


class BodyChunks:
    """A request body's pending chunks, kept as received rather than copied together.

    uvicorn's httptools protocol appends every chunk the parser hands it to a
    bytearray (``cycle.body += chunk``) and gives the app ``bytes(cycle.body)``:
    two copies of every byte of an upload, a tenth of the intake's CPU. This
    object takes the bytearray's place: ``+=`` keeps a reference and
    ``bytes()`` returns the one chunk uncopied (chunks are joined only when
    several arrived before the app asked). ``len()`` is what uvicorn's flow
    control reads to pause the socket, so backpressure is unchanged.
    """

    __slots__ = ("_chunks", "_size")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def __iadd__(self, chunk: bytes) -> BodyChunks:
        self._chunks.append(chunk)
        self._size += len(chunk)
        return self

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        if len(self._chunks) == 1:
            return self._chunks[0]
        return b"".join(self._chunks)


class _UncopiedBody(HttpToolsProtocol):
    """httptools protocol whose request bodies reach the app without uvicorn's copies.

    Only where the cycle holds its body the way this was written against (an
    empty bytearray between messages): any other layout is left to uvicorn.
    """

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is not None and type(cycle.body) is bytearray and not cycle.body:
            cycle.body = BodyChunks()  # type: ignore[assignment]
        super().on_body(body)


class _HeaderDeadline(HttpToolsProtocol):
    """httptools protocol with a deadline for request headers.

    uvicorn times out idle keep-alive connections, but not a client that
    opens a connection and trickles (or never finishes) its request headers:
    such a client could pin connections forever. Each request's headers must
    now be complete within ``header_timeout`` seconds of its first byte (or
    of the connection opening).
    """

    header_timeout = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()


class _JsonBadRequest(HttpToolsProtocol):
    """A request the HTTP parser refuses (two Content-Length headers, say) gets the
    gateway's JSON error, like every other bad request, rather than uvicorn's plain text."""

    MESSAGE = (
        "The request is not valid HTTP/1.1 (a malformed or repeated Content-Length or "
        "Transfer-Encoding header, say)."
    )

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": {"code": "bad_request", "message": self.MESSAGE}}).encode()
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-content-type-options: nosniff\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def http_protocol(header_timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the gateway's header deadline, uncopied bodies and
    JSON answers to unparseable requests."""
    return type(
        "HttpProtocol",
        (_HeaderDeadline, _JsonBadRequest, _UncopiedBody),
        {"header_timeout": header_timeout},
    )


def _tame_the_allocator() -> None:
    """Cap glibc's malloc arenas at two.

    glibc gives busy threads arenas of their own (up to 8 per core) and keeps
    what they free for reuse; with boto3's worker threads each holding freed
    response and body buffers, that grew RSS by a few MiB per concurrent
    upload. Two arenas keep RSS near the buffer budget plus a fixed base.
    An explicit MALLOC_ARENA_MAX in the environment wins over this.
    """
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, 2)


def run(settings: Settings, *, host: str, port: int, grace: float = 110.0) -> None:
    if not settings.malloc_arena_max_set:
        _tame_the_allocator()
    configure_logging(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=http_protocol(settings.idle_timeout),
        server_header=False,
        lifespan="on",
        proxy_headers=True,
        timeout_keep_alive=30,
        # None: uvicorn waits for every request; GatewayServer enforces the grace.
        timeout_graceful_shutdown=None,
        log_config=uvicorn_log_config(settings),
        access_log=True,
    )
    GatewayServer(config, app, grace=grace).run()
