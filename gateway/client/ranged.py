"""Ranged ``GET``s for ``gateway download``'s pieces, on :mod:`http.client`.

httpx hands a body over 64 KiB at a time, each parsed in Python (h11);
:meth:`http.client.HTTPResponse.readinto` fills the caller's buffer (1 MiB)
from the socket in C. For the pieces, which are nearly all of a download's
bytes, that halves the client's CPU per byte received (0.6 to 0.27
CPU-seconds per GiB on loopback). The ``HEAD`` and the staff API stay on
httpx.

One :class:`Connections` belongs to one worker thread: one kept-alive
connection per origin. Redirects are followed (a presigned storage URL in
redirect mode) and ``Authorization`` is dropped when one leads to another
origin, as httpx does. TLS uses httpx's own default context, so certificates
are checked the same way. Proxies are httpx's business: :func:`usable` says
whether the environment names none, and the caller fetches through httpx
otherwise.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.request
from urllib.parse import urljoin, urlsplit

import httpx

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 20  # httpx's default
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 120.0

Origin = tuple[str, str, int]


class NetworkError(Exception):
    """The request or its body failed on the network (retryable); the message says how."""


def usable() -> bool:
    """Whether pieces may go over plain http.client: no proxy named in the environment."""
    return not any(scheme != "no" for scheme in urllib.request.getproxies_environment())


def _origin(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise NetworkError(f"cannot fetch {url!r}: not an http(s) URL")
    return scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80)


class Connections:
    """Kept-alive connections of one worker thread, one per origin."""

    def __init__(self) -> None:
        self._open: dict[Origin, http.client.HTTPConnection] = {}
        self._tls: ssl.SSLContext | None = None

    def get(self, url: str, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, str]:
        """``GET url``, following redirects: the final response (its body unread) and URL."""
        for _ in range(MAX_REDIRECTS + 1):
            response = self._request(url, headers)
            location = response.getheader("location")
            if response.status not in REDIRECTS or not location:
                return response, url
            self.finish(response, url)
            target = urljoin(url, location)
            if _origin(target) != _origin(url):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = target
        raise NetworkError(f"more than {MAX_REDIRECTS} redirects")

    def finish(self, response: http.client.HTTPResponse, url: str) -> None:
        """Read what is left of a small body (a redirect, an error) so the connection stays."""
        try:
            response.read()
        except (http.client.HTTPException, OSError):
            self.drop(url)

    def drop(self, url: str) -> None:
        """Close the connection to ``url``'s origin (a body left half read cannot be reused)."""
        connection = self._open.pop(_origin(url), None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        for connection in self._open.values():
            connection.close()
        self._open.clear()

    def _request(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        origin = _origin(url)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reused = origin in self._open
        for attempt in (1, 2):
            connection = self._connection(origin)
            try:
                connection.request("GET", target, headers=headers)
                return connection.getresponse()
            except (http.client.HTTPException, OSError) as exc:
                self.drop(url)
                if not reused or attempt == 2:
                    raise NetworkError(f"{type(exc).__name__}: {exc}") from exc
                reused = False  # the server closed a kept-alive connection: once more, afresh
        raise AssertionError("unreachable")

    def _connection(self, origin: Origin) -> http.client.HTTPConnection:
        connection = self._open.get(origin)
        if connection is not None:
            return connection
        scheme, host, port = origin
        if scheme == "https":
            if self._tls is None:
                self._tls = httpx.create_ssl_context()
            connection = http.client.HTTPSConnection(
                host, port, timeout=CONNECT_TIMEOUT, context=self._tls
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
        try:
            connection.connect()
        except OSError as exc:
            raise NetworkError(f"cannot connect to {host}:{port}: {exc}") from exc
        if connection.sock is not None:
            connection.sock.settimeout(READ_TIMEOUT)
        self._open[origin] = connection
        return connection


def read_into(response: http.client.HTTPResponse, view: memoryview) -> int:
    """Fill ``view`` from the body (fewer bytes only at its end); network failures raise
    :class:`NetworkError`."""
    try:
        return response.readinto(view)
    except (http.client.HTTPException, OSError) as exc:
        raise NetworkError(f"{type(exc).__name__}: {exc}") from exc


def read_some(response: http.client.HTTPResponse, limit: int = 64 * 1024) -> bytes:
    """Up to ``limit`` bytes of the body (an error's message, a check for more)."""
    try:
        return response.read(limit)
    except (http.client.HTTPException, OSError) as exc:
        raise NetworkError(f"{type(exc).__name__}: {exc}") from exc


def error_message(body: bytes, fallback: str) -> str:
    """The message of the gateway's JSON error body, else ``fallback`` (the reason phrase)."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return fallback
