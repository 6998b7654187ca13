"""A TCP proxy that makes loopback look like a network: delay, bandwidth, stalls.

Every connection accepted on ``127.0.0.1:listen`` is forwarded to
``127.0.0.1:target``. Each direction of each connection gets

- a fixed one-way **delay**: a chunk read at ``t`` is written no earlier than
  ``t + delay`` (a pipe, not stop-and-wait: many chunks can be in flight);
- a **bandwidth** cap: a token bucket of ``rate`` bytes per second with a
  small burst, so a connection never sends more than ``rate * window + burst``
  bytes in any window;
- a **stall** switch: a stalled connection forwards nothing either way (and
  reads nothing more than its small queue, so the sender's socket fills up and
  its upload progress stops), for some seconds or until released.

The proxy keeps its own accounting per direction (bytes read and written, and
for each chunk when it was read and when it was written), which is what tests
assert on. It runs in-process (:class:`NetProxy` on the caller's loop, or
:class:`ProxyThread` with a loop of its own for synchronous callers such as
pytest fixtures and the benchmark) or as a command::

    python -m bench.netproxy --listen 9000 --target 8000 --delay-ms 25 --rate-mbit 200

whose standard input takes ``stall [SECONDS]``, ``release`` and ``stats``.
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

READ_SIZE = 64 * 1024
QUEUE_CHUNKS = 32  # at most 2 MiB read ahead per direction; beyond that the sender waits
DEFAULT_BURST = 128 * 1024
HOST = "127.0.0.1"


class TokenBucket:
    """``rate`` bytes per second, at most ``burst`` saved up; pure, the clock is passed in."""

    def __init__(self, rate: float, burst: int = DEFAULT_BURST, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def reserve(self, n: int, now: float) -> float:
        """Take ``n`` tokens (``n <= burst``); the seconds to wait before sending them."""
        if n > self.burst:
            raise ValueError(f"{n} bytes is more than the burst of {self.burst}")
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class Flow:
    """One direction of one connection, as the proxy saw it."""

    name: str
    opened_at: float = 0.0  # when its token bucket started (full), on the proxy loop's clock
    read: int = 0
    written: int = 0
    eof: bool = False
    # (read_at, written_at, size) for every chunk written, on the proxy loop's clock.
    chunks: list[tuple[float, float, int]] = field(default_factory=list)


@dataclass
class Connection:
    """One proxied connection: ``up`` is client to target, ``down`` target to client."""

    number: int
    up: Flow
    down: Flow
    flowing: asyncio.Event
    closed: bool = False
    stalls: int = 0
    _release: asyncio.TimerHandle | None = None

    @property
    def stalled(self) -> bool:
        return not self.flowing.is_set()


class NetProxy:
    """The proxy on the running asyncio loop: ``await start()``, ``await stop()``."""

    def __init__(
        self,
        target: int,
        *,
        listen: int = 0,
        delay_ms: float = 0.0,
        rate_mbit: float | None = None,
        burst: int = DEFAULT_BURST,
        record: bool = True,
    ) -> None:
        self.target = target
        self.listen = listen
        self.delay = delay_ms / 1000.0
        self.rate = None if rate_mbit is None else rate_mbit * 1_000_000 / 8
        self.burst = burst
        self.record = record
        self.connections: list[Connection] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> NetProxy:
        self._server = await asyncio.start_server(self._accept, HOST, self.listen)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- control ------------------------------------------------------------------

    def open_connections(self) -> list[Connection]:
        return [c for c in self.connections if not c.closed]

    def stall(
        self, conn: Connection | None = None, seconds: float | None = None
    ) -> list[Connection]:
        """Stop forwarding on ``conn`` (default: every open connection); None: until released."""
        chosen = [conn] if conn is not None else self.open_connections()
        loop = asyncio.get_running_loop()
        for c in chosen:
            c.flowing.clear()
            c.stalls += 1
            if c._release is not None:
                c._release.cancel()
            c._release = None if seconds is None else loop.call_later(seconds, c.flowing.set)
        return chosen

    def release(self, conn: Connection | None = None) -> None:
        """Let ``conn`` (default: every connection) forward again."""
        for c in [conn] if conn is not None else self.connections:
            if c._release is not None:
                c._release.cancel()
                c._release = None
            c.flowing.set()

    def totals(self) -> tuple[int, int]:
        """Bytes written upstream (client to target) and downstream, over all connections."""
        return (
            sum(c.up.written for c in self.connections),
            sum(c.down.written for c in self.connections),
        )

    # -- the pipe -----------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self._writers.add(c_writer)
        try:
            t_reader, t_writer = await asyncio.open_connection(HOST, self.target)
        except OSError:
            c_writer.transport.abort()
            self._writers.discard(c_writer)
            return
        self._writers.add(t_writer)
        number = len(self.connections)
        conn = Connection(number, Flow(f"{number}:up"), Flow(f"{number}:down"), asyncio.Event())
        conn.flowing.set()
        self.connections.append(conn)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.gather(
                self._direction(conn, conn.up, c_reader, t_writer),
                self._direction(conn, conn.down, t_reader, c_writer),
            )
        except (ConnectionError, OSError):
            pass
        finally:
            conn.closed = True
            for w in (c_writer, t_writer):
                w.transport.abort()
                self._writers.discard(w)

    async def _direction(
        self,
        conn: Connection,
        flow: Flow,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        loop = asyncio.get_running_loop()
        flow.opened_at = loop.time()
        bucket = None if self.rate is None else TokenBucket(self.rate, self.burst, flow.opened_at)

        async def receive() -> None:
            while True:
                await conn.flowing.wait()
                try:
                    data = await reader.read(READ_SIZE)
                except (ConnectionError, OSError):
                    data = b""  # a reset ends this direction like an orderly close
                flow.read += len(data)
                await queue.put((loop.time(), data))
                if not data:
                    return

        async def send() -> None:
            while True:
                read_at, data = await queue.get()
                if not data:
                    flow.eof = True
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                wait = read_at + self.delay - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                view = memoryview(data)
                while view:
                    await conn.flowing.wait()
                    piece = view[: self.burst]
                    view = view[self.burst :]
                    if bucket is not None:
                        wait = bucket.reserve(len(piece), loop.time())
                        if wait > 0:
                            await asyncio.sleep(wait)
                        await conn.flowing.wait()
                    writer.write(piece)
                    await writer.drain()
                    flow.written += len(piece)
                    if self.record:
                        flow.chunks.append((read_at, loop.time(), len(piece)))

        receiving = asyncio.ensure_future(receive())
        try:
            await send()
            await receiving
        finally:
            receiving.cancel()


class ProxyThread:
    """A :class:`NetProxy` on an event loop in a daemon thread, for synchronous callers.

    ``with ProxyThread(target=8000, delay_ms=25, rate_mbit=200) as proxy:`` gives
    ``proxy.port``; :meth:`stall` and :meth:`release` act at once, from any thread.
    """

    def __init__(self, target: int, **options: Any) -> None:
        self._options = options
        self._target = target
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.proxy: NetProxy | None = None

    @property
    def port(self) -> int:
        return self._proxy.port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def _proxy(self) -> NetProxy:
        if self.proxy is None:
            raise RuntimeError("the proxy is not started")
        return self.proxy

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def start(self) -> ProxyThread:
        self._thread.start()
        proxy = NetProxy(self._target, **self._options)
        asyncio.run_coroutine_threadsafe(proxy.start(), self._loop).result(timeout=10)
        self.proxy = proxy
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(timeout=10)
            self.proxy = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connections(self) -> list[Connection]:
        return list(self._proxy.connections)

    def stall(
        self, conn: Connection | None = None, seconds: float | None = None
    ) -> list[Connection]:
        proxy = self._proxy
        chosen: list[Connection] = self._call(lambda: proxy.stall(conn, seconds))
        return chosen

    def release(self, conn: Connection | None = None) -> None:
        proxy = self._proxy
        self._call(lambda: proxy.release(conn))

    def totals(self) -> tuple[int, int]:
        return self._proxy.totals()


def stats_line(proxy: NetProxy) -> str:
    up, down = proxy.totals()
    open_now = proxy.open_connections()
    stalled = sum(1 for c in open_now if c.stalled)
    return (
        f"connections {len(proxy.connections)} open {len(open_now)} stalled {stalled} "
        f"up {up} down {down}"
    )


async def _commands(proxy: NetProxy) -> None:
    """``stall [SECONDS]``, ``release``, ``stats`` on standard input, one a line."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return  # no input (or it closed): keep proxying
        words = line.split()
        if not words:
            continue
        if words[0] == "stall":
            seconds = float(words[1]) if len(words) > 1 else None
            print(f"stalled {len(proxy.stall(seconds=seconds))}", flush=True)
        elif words[0] == "release":
            proxy.release()
            print("released", flush=True)
        elif words[0] == "stats":
            print(stats_line(proxy), flush=True)
        else:
            print(f"unknown command {words[0]!r}: stall [SECONDS], release, stats", flush=True)


async def _main(args: argparse.Namespace) -> None:
    proxy = NetProxy(
        args.target,
        listen=args.listen,
        delay_ms=args.delay_ms,
        rate_mbit=args.rate_mbit,
        record=False,
    )
    await proxy.start()
    rate = f"{args.rate_mbit:g} Mbit/s" if args.rate_mbit else "unlimited"
    print(
        f"proxy {HOST}:{proxy.port} -> {HOST}:{args.target}, "
        f"{args.delay_ms:g} ms each way, {rate} per connection and direction",
        flush=True,
    )
    commands = asyncio.ensure_future(_commands(proxy))
    try:
        await asyncio.Event().wait()
    finally:
        commands.cancel()
        await proxy.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.netproxy",
        description="Forward 127.0.0.1:LISTEN to 127.0.0.1:TARGET with a delay each way, "
        "a per-connection bandwidth cap and stalls on command (stdin: stall [S], release, stats).",
    )
    parser.add_argument("--listen", type=int, default=0, help="port to listen on (0: any)")
    parser.add_argument("--target", type=int, required=True, help="port to forward to")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay (ms)")
    parser.add_argument(
        "--rate-mbit", type=float, default=200.0,
        help="per connection and direction, Mbit/s (0: unlimited)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rate_mbit == 0:
        args.rate_mbit = None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
