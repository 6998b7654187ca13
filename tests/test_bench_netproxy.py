"""The network proxy of ``bench/netproxy.py``: bytes intact, delay, bandwidth, stalls.

Each case runs a real proxy in front of a real echo server on loopback and
asserts on the bytes and on the proxy's own accounting (when each chunk was
read and written, on its loop's clock): a delay or a rate shows as a lower
bound the proxy kept, never as how fast the machine was.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bench.netproxy import Connection, NetProxy, ProxyThread, TokenBucket

KiB = 1024
MiB = 1024 * KiB


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(64 * KiB):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except ConnectionError:
        pass
    finally:
        writer.close()


@asynccontextmanager
async def echo_through_proxy(**options: object) -> AsyncIterator[NetProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    proxy = NetProxy(server.sockets[0].getsockname()[1], **options)  # type: ignore[arg-type]
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
        server.close()
        await server.wait_closed()


async def round_trip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        for i in range(0, len(payload), 256 * KiB):
            writer.write(payload[i : i + 256 * KiB])
            await writer.drain()
        writer.write_eof()

    sending = asyncio.ensure_future(send())
    echoed = await reader.read()  # to EOF
    await sending
    writer.close()
    return echoed


def test_bytes_arrive_intact_both_ways() -> None:
    payload = os.urandom(3 * MiB + 17)

    async def scenario() -> None:
        async with echo_through_proxy(delay_ms=5) as proxy:
            assert await round_trip(proxy.port, payload) == payload
            (conn,) = proxy.connections
            assert conn.up.read == conn.up.written == len(payload)
            assert conn.down.written == len(payload)
            assert conn.up.eof and conn.down.eof

    asyncio.run(scenario())


def test_every_chunk_waits_the_delay_each_way() -> None:
    payload = os.urandom(512 * KiB)

    async def scenario() -> None:
        async with echo_through_proxy(delay_ms=40) as proxy:
            assert await round_trip(proxy.port, payload) == payload
            (conn,) = proxy.connections
            for flow in (conn.up, conn.down):
                assert flow.chunks
                assert all(written - read >= 0.040 for read, written, _ in flow.chunks)
                assert sum(size for _, _, size in flow.chunks) == len(payload)
            # The echo's first byte left the server after the first upstream chunk was written.
            assert conn.down.chunks[0][1] - conn.up.chunks[0][0] >= 0.080

    asyncio.run(scenario())


def test_no_window_carries_more_than_the_rate_allows() -> None:
    payload = os.urandom(384 * KiB)
    rate = 8.0  # Mbit/s: 1 MB/s
    burst = 32 * KiB

    async def scenario() -> None:
        async with echo_through_proxy(rate_mbit=rate, burst=burst) as proxy:
            assert await round_trip(proxy.port, payload) == payload
            (conn,) = proxy.connections
            per_second = rate * 1_000_000 / 8
            for flow in (conn.up, conn.down):
                total = 0
                for _, written, size in flow.chunks:
                    total += size
                    allowed = burst + per_second * (written - flow.opened_at) + 1
                    assert total <= allowed, (flow.name, total, allowed)
                    assert size <= burst
                assert total == len(payload)

    asyncio.run(scenario())


def test_token_bucket_spends_its_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=1000.0, burst=100, now=0.0)
    assert bucket.reserve(100, now=0.0) == 0.0
    assert bucket.reserve(50, now=0.0) == pytest.approx(0.05)
    assert bucket.reserve(10, now=1.0) == 0.0  # refilled, capped at the burst
    assert bucket.tokens == 90
    with pytest.raises(ValueError):
        bucket.reserve(101, now=2.0)


def test_a_stalled_connection_forwards_nothing_until_released() -> None:
    payload = os.urandom(256 * KiB)

    async def scenario() -> None:
        async with echo_through_proxy() as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            (conn,) = proxy.stall()
            assert conn.stalled and conn.stalls == 1
            before = conn.up.written
            writer.write(payload)
            await asyncio.sleep(0.3)
            assert conn.up.written == before  # held in the proxy, not forwarded
            assert conn.down.written == 4
            proxy.release()
            assert await reader.readexactly(len(payload)) == payload
            assert not conn.stalled
            writer.close()

    asyncio.run(scenario())


def test_a_timed_stall_releases_itself_and_new_connections_flow() -> None:
    async def scenario() -> None:
        async with echo_through_proxy() as proxy:
            r1, w1 = await asyncio.open_connection("127.0.0.1", proxy.port)
            w1.write(b"a")
            assert await r1.readexactly(1) == b"a"
            (first,) = proxy.stall(seconds=0.2)
            r2, w2 = await asyncio.open_connection("127.0.0.1", proxy.port)
            w2.write(b"fresh")
            assert await r2.readexactly(5) == b"fresh"  # a later connection is not stalled
            w1.write(b"late")
            assert await asyncio.wait_for(r1.readexactly(4), timeout=30) == b"late"
            assert not first.stalled
            w1.close()
            w2.close()

    asyncio.run(scenario())


def test_proxy_thread_serves_synchronous_callers() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(
        asyncio.start_server(_echo, "127.0.0.1", 0), loop
    ).result(timeout=10)
    try:
        with ProxyThread(server.sockets[0].getsockname()[1], delay_ms=1) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
                sock.sendall(b"hello")
                got = b""
                while len(got) < 5:
                    got += sock.recv(5)
                assert got == b"hello"
                stalled: list[Connection] = proxy.stall()
                assert [c.stalled for c in stalled] == [True]
                proxy.release()
                assert not stalled[0].stalled
            assert proxy.totals() == (5, 5)
    finally:
        server.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_command_line_proxy_forwards_and_answers_stats() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        target = server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.netproxy", "--target", str(target),
            "--delay-ms", "2", "--rate-mbit", "100",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin and proc.stdout
        try:
            banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert "2 ms each way, 100 Mbit/s" in banner, banner
            port = int(banner.split()[1].rsplit(":", 1)[1])
            assert await round_trip(port, b"x" * 100_000) == b"x" * 100_000
            proc.stdin.write(b"stats\n")
            await proc.stdin.drain()
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert "connections 1" in line and "up 100000 down 100000" in line, line
        finally:
            proc.terminate()
            await proc.wait()
            server.close()

    asyncio.run(scenario())
