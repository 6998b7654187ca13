"""PATCH requests whose body is a range of a file, copied by the kernel (``sendfile``).

httpx sends a body from Python buffers: every byte is read from the file into
Python, then copied into the socket. A streamed PATCH of a whole range is most
of what ``gateway upload`` does, so it goes on a connection of its own (one
per stream, kept alive between its requests) through :mod:`http.client`, and
the kernel moves the file's pages straight into the socket
(:meth:`socket.socket.sendfile`; a TLS connection falls back to reading and
sending). When the environment names a proxy for the URL, :func:`direct`
says no and the sender keeps to httpx, which honours it.
"""

from __future__ import annotations

import http.client
import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

from gateway.client.outcome import Failed

#: Bytes handed to one ``sendfile`` call: how often progress and ``stop`` are looked at.
SENDFILE_SLICE = 8 * 1024 * 1024
#: Seconds a socket operation (connect, a send, the wait for the answer) may take.
TIMEOUT = 300.0


def direct(url: str) -> bool:
    """Whether ``url`` is reached without a proxy from the environment (``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY``, minus ``NO_PROXY``)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname or ""))


class FileConnection:
    """One keep-alive HTTP/1.1 connection to the host of the URLs it is given."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.origin = ("", "", 0)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> FileConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        if self.conn is None or self.origin != (scheme, host, port):
            self.close()
            kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            self.conn = kind(host, port, timeout=self.timeout)
            self.origin = (scheme, host, port)
        return self.conn

    def patch(
        self,
        url: str,
        headers: Mapping[str, str],
        body: BinaryIO,
        offset: int,
        count: int,
        sent: Callable[[int], None],
        stop: threading.Event,
    ) -> httpx.Response:
        """PATCH ``count`` bytes of ``body`` from ``offset``; ``sent`` is told the bytes
        sent so far. Network failures raise :class:`httpx.TransportError` (the
        connection is dropped); a server that answers before the whole body is sent
        (a refusal) gives that answer."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        conn = self._open(parts.scheme, parts.hostname or "", port)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.putrequest("PATCH", target, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            try:
                self._body(conn, body, offset, count, sent, stop)
            except OSError:
                return self._answer(conn)  # refused mid-body: the server's answer, if any
            return self._answer(conn)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise httpx.NetworkError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _body(
        self,
        conn: http.client.HTTPConnection,
        body: BinaryIO,
        offset: int,
        count: int,
        sent: Callable[[int], None],
        stop: threading.Event,
    ) -> None:
        sock = conn.sock
        if sock is None:
            raise http.client.NotConnected("no socket after the request line")
        done = 0
        while done < count:
            if stop.is_set():
                raise Failed("stopped")
            moved = sock.sendfile(body, offset + done, min(SENDFILE_SLICE, count - done))
            if moved == 0:
                raise Failed("file-changed", "the file shrank while uploading")
            done += moved
            sent(done)

    def _answer(self, conn: http.client.HTTPConnection) -> httpx.Response:
        answer = conn.getresponse()
        content = answer.read()
        if answer.will_close:
            self.close()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=content)
