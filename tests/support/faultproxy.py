"""A fault-injecting HTTP proxy in front of an S3 server, for the fault tests.

The gateway's ``AWS_ENDPOINT_URL_S3`` points at the proxy; the proxy forwards
every request unchanged (the ``Host`` header too, so SigV4 signatures stay
valid) to the real server, one upstream connection per request with
``Connection: close`` added, so each response ends where the upstream closes
and the proxy never has to frame responses it passes through untouched.

On command it misbehaves instead, for the next N matching requests or for a
time window, optionally only for requests whose method and target (path and
query) match:

- ``error``: answer with an S3 XML error (``503 SlowDown`` or ``500
  InternalError`` ...) without contacting the server;
- ``reset``: read the request head and close the socket with an RST, as a
  server crashing mid-request;
- ``stall``: hold the request for some seconds before forwarding it;
- ``truncate``: forward it, then send the response's head (with its
  ``Content-Length``) and only half of its body before closing;
- ``down``: refuse everything at once (an RST right after accepting), as a
  server that is not there.

Every injected fault is counted (:attr:`FaultProxy.injected`), and every
request seen is remembered (:attr:`FaultProxy.seen`), so tests can show
that the fault really happened. The proxy runs an asyncio loop in a daemon
thread and listens on loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

KINDS = ("error", "reset", "stall", "truncate", "down")
HEAD_LIMIT = 64 * 1024
IO_TIMEOUT = 30.0
_REASONS = {500: "Internal Server Error", 503: "Slow Down", 502: "Bad Gateway"}
_CODES = {500: "InternalError", 503: "SlowDown", 502: "BadGateway"}


@dataclass
class Rule:
    """One armed fault. ``remaining`` None means until ``until`` (or until cleared)."""

    kind: str
    method: str | None
    match: str | None
    remaining: int | None
    until: float | None
    status: int = 503
    code: str = "SlowDown"
    seconds: float = 0.0

    def matches(self, method: str, target: str, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.match is None or self.match in target


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    head: bytes


def error_body(code: str, message: str, resource: str) -> bytes:
    """An S3 error document, as S3 sends it."""
    request_id = uuid.uuid4().hex[:16].upper()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0) rather than an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _parse_head(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method=method.upper(), target=target, headers=headers, head=head)


def _with_close(head: bytes) -> bytes:
    """The request head with any Connection header replaced by ``Connection: close``."""
    lines = head[:-4].split(b"\r\n")
    kept = [lines[0]] + [line for line in lines[1:] if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n"


async def _drain_body(reader: asyncio.StreamReader, request: Request) -> None:
    """Read (and drop) the request body, so an early answer is not a broken pipe."""
    if request.headers.get("expect", "").lower() == "100-continue":
        return  # the client waits for our answer before sending the body
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                return
            await reader.readexactly(size + 2)
    length = int(request.headers.get("content-length", "0") or 0)
    while length > 0:
        chunk = await reader.read(min(length, 1 << 20))
        if not chunk:
            return
        length -= len(chunk)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(1 << 18):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass


class FaultProxy:
    """See the module docstring. ``start()`` it, arm faults, ``stop()`` it."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://HOST:PORT, got {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.injected: Counter[str] = Counter()
        self.seen: list[tuple[str, str]] = []
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # -- control API (called from the test's thread) ------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(
        self,
        kind: str,
        *,
        count: int | None = 1,
        seconds: float | None = None,
        method: str | None = None,
        match: str | None = None,
        status: int = 503,
        code: str | None = None,
        stall: float = 0.0,
    ) -> Rule:
        """Arm a fault for the next ``count`` matching requests (None: unlimited).

        ``seconds`` limits the rule to a time window from now. ``status`` and
        ``code`` shape an ``error`` (503 SlowDown by default, or 500
        InternalError ...); ``stall`` is how long a ``stall`` holds a request.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
        rule = Rule(
            kind=kind,
            method=method.upper() if method else None,
            match=match,
            remaining=count,
            until=None if seconds is None else time.monotonic() + seconds,
            status=status,
            code=code or _CODES.get(status, "InternalError"),
            seconds=stall,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Disarm every fault; the proxy forwards everything again."""
        with self._lock:
            self._rules.clear()

    def armed(self) -> int:
        """Faults still armed (rules with count left and time left)."""
        now = time.monotonic()
        with self._lock:
            return sum(
                1
                for r in self._rules
                if (r.remaining is None or r.remaining > 0) and (r.until is None or r.until > now)
            )

    def count(self, method: str, match: str = "") -> int:
        """How many requests with ``method`` whose target contains ``match`` were seen."""
        with self._lock:
            return sum(1 for m, t in self.seen if m == method.upper() and match in t)

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    def _take(self, method: str, target: str) -> Rule | None:
        now = time.monotonic()
        with self._lock:
            self.seen.append((method, target))
            for rule in self._rules:
                if rule.matches(method, target, now):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    self.injected[rule.kind] += 1
                    return rule
        return None

    def _take_down(self) -> bool:
        now = time.monotonic()
        with self._lock:
            for rule in self._rules:
                if rule.kind == "down" and rule.matches("", "", now):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    self.injected["down"] += 1
                    return True
        return False

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0, limit=HEAD_LIMIT)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
            loop.close()

    # -- one client connection ----------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.LimitOverrunError:
            _rst(writer)
        except asyncio.CancelledError:
            # Stopping: end quietly (a cancelled connection task makes asyncio log an error).
            writer.transport.abort()
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._take_down():
            _rst(writer)
            return
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
        except asyncio.IncompleteReadError:
            return  # the client closed an idle connection
        request = _parse_head(head)
        rule = self._take(request.method, request.target)
        kind = rule.kind if rule else None
        if rule is not None and kind == "error":
            await asyncio.wait_for(_drain_body(reader, request), IO_TIMEOUT)
            body = error_body(rule.code, "Injected fault", urlsplit(request.target).path)
            reason = _REASONS.get(rule.status, "Error")
            response = (
                f"HTTP/1.1 {rule.status} {reason}\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(response if request.method == "HEAD" else response + body)
            await writer.drain()
            return
        if kind == "reset":
            _rst(writer)
            return
        if rule is not None and kind == "stall":
            await asyncio.sleep(rule.seconds)
        await self._forward(reader, writer, request, truncate=kind == "truncate")

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: Request,
        *,
        truncate: bool,
    ) -> None:
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(self.upstream_host, self.upstream_port, limit=HEAD_LIMIT),
            IO_TIMEOUT,
        )
        try:
            up_writer.write(_with_close(request.head))
            await up_writer.drain()
            upload = asyncio.create_task(_pump(reader, up_writer))
            try:
                if truncate:
                    await self._truncated(up_reader, writer)
                else:
                    await _pump(up_reader, writer)
            finally:
                upload.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await upload
        finally:
            up_writer.close()

    async def _truncated(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Relay the response head and half of its body, then hang up."""
        head = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        writer.write(head)
        half = length // 2
        while half > 0:
            chunk = await up_reader.read(min(half, 1 << 18))
            if not chunk:
                break
            writer.write(chunk)
            half -= len(chunk)
        # An orderly close after the bytes are out: the client sees the body end early.
        writer.close()
        await writer.wait_closed()
