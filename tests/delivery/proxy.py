"""An HTTP proxy in front of a ticket-system emulator that can swallow one answer.

To show exactly-once delivery across a crash *between posting and recording*,
the ticket system must have recorded the comment while the gateway has not
yet learnt so. :class:`HoldingProxy` makes that window as wide as the test
wants: once armed with :meth:`arm_when`, it forwards each write upstream, and
the first after whose answer ``predicate()`` holds (say, the comment now shows
on the ticket) is held: :attr:`held` is signalled and the gateway kept waiting
until the test has killed it. Naming the request by its effect rather than
its path is how one test serves every helpdesk. Everything else is forwarded
unchanged, and every request that passes is listed in :attr:`seen`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


class HoldingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.held = threading.Event()
        self._release = threading.Event()
        self._predicate: Callable[[], bool] | None = None
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.forward(self)

            def do_POST(self) -> None:
                proxy.forward(self)

            def do_PUT(self) -> None:
                proxy.forward(self)

            def do_PATCH(self) -> None:
                proxy.forward(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HoldingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def arm_when(self, predicate: Callable[[], bool]) -> None:
        """Swallow the answer to the first write after which ``predicate()`` is true."""
        with self._lock:
            self._predicate = predicate
            self.held.clear()
            self._release.clear()

    def _effect(self, method: str) -> bool:
        with self._lock:
            predicate = self._predicate
        if predicate is None or method == "GET" or not predicate():
            return False
        with self._lock:
            taken, self._predicate = self._predicate is predicate, None
        return taken

    def release(self) -> None:
        """Let the held connection close (without an answer)."""
        self._release.set()

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        body = _read_body(handler)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        with self._lock:
            self.seen.append((handler.command, handler.path))
        with httpx.Client(timeout=60.0) as client:
            response = client.request(
                handler.command, self.upstream + handler.path, headers=headers, content=body
            )
        if self._effect(handler.command):
            self.held.set()
            self._release.wait(60.0)
            handler.close_connection = True
            return
        handler.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(response.content)))
        handler.end_headers()
        handler.wfile.write(response.content)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    length = handler.headers.get("Content-Length")
    if length is not None:
        return handler.rfile.read(int(length))
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()
    return b""
