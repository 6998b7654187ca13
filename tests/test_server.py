"""The gateway's uvicorn protocol: request bodies arrive uncopied and whole.

A real uvicorn server (uvloop, httptools, our protocol class) runs in a
thread on a free loopback port; a real socket sends the bodies.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.server import BodyChunks, http_protocol


def test_body_chunks_hand_out_a_single_chunk_uncopied() -> None:
    body = BodyChunks()
    assert len(body) == 0 and bytes(body) == b""
    chunk = os.urandom(1000)
    body += chunk
    assert len(body) == 1000
    assert bytes(body) is chunk
    body += b"abc"
    assert len(body) == 1003
    assert bytes(body) == chunk + b"abc"


class _Recorder:
    """An ASGI app that drains the body (slowly when asked) and answers its SHA-256."""

    def __init__(self) -> None:
        self.messages = 0
        self.slow = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        digest = hashlib.sha256()
        while True:
            message = await receive()
            assert isinstance(message.get("body", b""), bytes)
            digest.update(message.get("body", b""))
            self.messages += 1
            if self.slow:
                await asyncio.sleep(0.002)  # let several chunks pile up between reads
            if not message.get("more_body"):
                break
        body = digest.hexdigest().encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served() -> Iterator[tuple[str, _Recorder]]:
    app = _Recorder()
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="uvloop", http=http_protocol(30.0),
        lifespan="off", log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/", app
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("slow", [False, True])
def test_bodies_arrive_whole_through_the_uncopied_path(
    served: tuple[str, _Recorder], monkeypatch: pytest.MonkeyPatch, slow: bool
) -> None:
    url, app = served
    app.slow = slow
    handed: list[int] = []
    original = BodyChunks.__bytes__

    def counting(self: BodyChunks) -> bytes:
        handed.append(len(self))
        return original(self)

    monkeypatch.setattr(BodyChunks, "__bytes__", counting)
    data = os.urandom(24 * 1024 * 1024 + 17)
    with httpx.Client(timeout=60) as client:
        response = client.put(url, content=data)
    assert response.status_code == 200
    assert response.text == hashlib.sha256(data).hexdigest()
    # The installed uvicorn took the uncopied path for this body, message by message.
    assert sum(handed) == len(data)
    assert app.messages >= len(handed) > 1


def test_chunks_that_pile_up_are_joined_in_order(
    served: tuple[str, _Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client trickling small writes while the app is busy: several chunks per message."""
    url, app = served
    app.slow = True
    joined: list[int] = []
    original = BodyChunks.__bytes__

    def counting(self: BodyChunks) -> bytes:
        joined.append(len(self._chunks))
        return original(self)

    monkeypatch.setattr(BodyChunks, "__bytes__", counting)
    pieces = [os.urandom(1024) for _ in range(300)]
    data = b"".join(pieces)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(
            b"PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
        )
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.0005)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    assert b"\r\n" + hashlib.sha256(data).hexdigest().encode() + b"\r\n" in reply
    assert max(joined) > 1  # some messages carried several chunks, joined
