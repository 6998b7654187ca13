"""A small round-robin TCP load balancer on loopback, for multi-replica tests.

Each new client connection goes to the next backend in turn and stays there
(HTTP keep-alive connections therefore stick to one replica, as behind most
layer-4 balancers). A backend that refuses the connection is skipped, so a
replica whose listener closed on SIGTERM simply drops out of the rotation and
comes back when it listens again. Backends can be replaced at run time.

``rate`` throttles what each connection forwards from the client to the
backend (bytes per second), which keeps uploads in flight long enough for a
test to act in the middle of them without sleeping blindly.

The proxy runs its own event loop in a background thread, so synchronous
tests (httpx, requests, subprocesses) can use it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

__all__ = ["RoundRobinBalancer"]

Backend = tuple[str, int]
CHUNK = 64 * 1024


class RoundRobinBalancer:
    def __init__(self, backends: Iterable[int | Backend] = (), *, rate: int | None = None) -> None:
        self._backends: list[Backend] = [_backend(b) for b in backends]
        self._next = 0
        self.rate = rate
        self.port = 0
        # Connections handed to each backend, and connections no backend took.
        self.connections: Counter[Backend] = Counter()
        # Connections open right now, per backend.
        self.active: Counter[Backend] = Counter()
        self.refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backends(self) -> list[Backend]:
        with self._lock:
            return list(self._backends)

    def set_backends(self, backends: Iterable[int | Backend]) -> None:
        with self._lock:
            self._backends = [_backend(b) for b in backends]

    def add(self, backend: int | Backend) -> None:
        with self._lock:
            self._backends.append(_backend(backend))

    def remove(self, backend: int | Backend) -> None:
        with self._lock:
            self._backends.remove(_backend(backend))

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> RoundRobinBalancer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, "127.0.0.1", 0)
                )
                self.port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="round-robin-lb", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError(f"load balancer did not start: {failure[0]!r}")
        if not self.port:
            raise RuntimeError("load balancer did not start in time")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(10)

    def __enter__(self) -> RoundRobinBalancer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- proxying --------------------------------------------------------------------

    def _rotation(self) -> list[Backend]:
        """Every backend once, starting with the next in turn."""
        with self._lock:
            backends = list(self._backends)
            if not backends:
                return []
            start = self._next % len(backends)
            self._next = start + 1
        return backends[start:] + backends[:start]

    async def _connect(
        self,
    ) -> tuple[Backend, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for backend in self._rotation():
            try:
                reader, writer = await asyncio.open_connection(*backend)
            except OSError:
                continue  # refused (draining or down): the next one
            return backend, reader, writer
        return None

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            connected = await self._connect()
            if connected is None:
                self.refused += 1
                return
            backend, backend_r, backend_w = connected
            self.connections[backend] += 1
            self.active[backend] += 1
            upstream = asyncio.create_task(_pipe(client_r, backend_w, self.rate))
            try:
                # The backend's answer decides: once it closes, the exchange is over.
                await _pipe(backend_r, client_w, None)
            finally:
                upstream.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await upstream
                _close(backend_w)
                self.active[backend] -= 1
        finally:
            _close(client_w)
            self._tasks.discard(task)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: int | None
) -> None:
    """Copy until EOF, then half-close the other side; throttle to ``rate`` bytes/s."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
            if rate:
                await asyncio.sleep(len(data) / rate)
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass  # either side went away: the connection is over


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        writer.close()


def _backend(value: int | Backend) -> Backend:
    return ("127.0.0.1", value) if isinstance(value, int) else (value[0], int(value[1]))
