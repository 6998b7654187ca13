"""Raw HTTP/1.1 over a socket, for clients that lie, trickle or hang up mid-body.

httpx and curl are well-behaved; these helpers send exactly the bytes a test
asks for and read back whatever the gateway answers (or notice it hung up).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_head(method: str, url: str, headers: list[tuple[str, str]]) -> bytes:
    parts = urlsplit(url)
    lines = [f"{method} {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_response(sock: socket.socket, timeout: float = 10.0) -> RawResponse | None:
    """The response the server sent, or None if it closed without one."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return None
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    response = RawResponse(status, headers, rest)
    length = response.header("content-length")
    if length is not None:
        with contextlib.suppress(OSError):
            while len(response.body) < int(length):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                response.body += chunk
    return response


def send_and_close(
    url: str, method: str, headers: list[tuple[str, str]], body: bytes, *, linger: float = 0.2
) -> None:
    """Send a request head and (part of) a body, then hang up without reading."""
    with connect(url) as sock:
        sock.sendall(request_head(method, url, headers) + body)
        time.sleep(linger)


def exchange(
    url: str,
    method: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    timeout: float = 10.0,
    *,
    half_close: bool = False,
) -> RawResponse | None:
    """Send exactly these bytes and read one response (None if the server hung up).

    With ``half_close`` the client then shuts its sending side, as a client
    whose body ended early would.
    """
    with connect(url, timeout) as sock:
        try:
            sock.sendall(request_head(method, url, headers) + body)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return read_response(sock, timeout)
        except TimeoutError:
            raise AssertionError(f"no answer and no hang-up within {timeout} s") from None


def metric(base_url: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus series from ``/metrics`` (0 when absent), filtered by labels."""
    import httpx

    total = 0.0
    for line in httpx.get(f"{base_url}/metrics").text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric_name, _, label_text = series.partition("{")
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.1) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
