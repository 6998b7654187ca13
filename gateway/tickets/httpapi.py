"""What every HTTP ticket client does alike: sending, translating failures, exact bodies.

The clients (Zendesk, Jira, Freshdesk, ServiceNow) do not loop retrying. Every failure
becomes a :class:`~gateway.tickets.base.TicketError` that says whether trying
later can help and what the server's ``Retry-After`` asked for; the delivery
outbox owns backoff. 401 and 403 are configuration errors (never retryable),
429 and 503 carry the server's wait, other 5xx, 408 and 409 are transient,
and every other 4xx is a refusal. Messages name the system, the call and the
server's own error text, never credentials.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import httpx

from gateway.backoff import retry_after
from gateway.tickets.base import AttachmentSource, TicketError

MAX_DETAIL = 300

# For a client made without an injected one (the application injects its own pool).
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=30.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=4, keepalive_expiry=30)


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP Basic auth (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def default_client() -> httpx.AsyncClient:
    """A pool with sane timeouts and limits, that never follows a redirect (credentials)."""
    return httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, limits=DEFAULT_LIMITS, follow_redirects=False)


async def send(
    http: httpx.AsyncClient,
    system: str,
    what: str,
    method: str,
    url: str,
    *,
    authorization: str,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    json: Any = None,
    content: AsyncIterator[bytes] | None = None,
) -> httpx.Response:
    """One request asking for JSON with our credentials; a network failure is a TicketError.

    The status is the caller's to judge (each system words its refusals).
    """
    request_headers = {"Accept": "application/json", **(headers or {})}
    request_headers["Authorization"] = authorization
    try:
        return await http.request(
            method, url, params=params, headers=request_headers, json=json, content=content
        )
    except httpx.TransportError as exc:
        raise network_error(system, what, exc) from exc


def describe(response: httpx.Response, parts: Callable[[dict[str, Any]], list[str]]) -> str:
    """The server's own error text, short: ``parts`` picks it out of a JSON object body;
    any other body is shown as it came."""
    try:
        data = response.json()
    except ValueError:
        return short_text(response)
    if not isinstance(data, dict):
        return str(data)[:MAX_DETAIL]
    return "; ".join(parts(data))[:MAX_DETAIL]


def short_text(response: httpx.Response) -> str:
    """The response body as one short line (for bodies that are not JSON)."""
    return response.text.strip().replace("\n", " ")[:MAX_DETAIL]


def status_error(
    system: str,
    what: str,
    response: httpx.Response,
    detail: str,
    *,
    not_found: str | None = None,
    credentials: str | None = None,
    refusals: Mapping[int, str] | None = None,
) -> TicketError:
    """Translate a failed response of ``system`` into a TicketError.

    ``detail`` is the server's own error text, already extracted; ``not_found``
    replaces the generic wording of a 404 (a deleted ticket deserves to be named);
    ``credentials`` names what to check after a 401/403 (the system's
    variables); ``refusals`` are further statuses this system means as final,
    each with the words that explain it (empty: none).
    """
    status = response.status_code
    message = f"{system} {what} failed: HTTP {status}" + (f" ({detail})" if detail else "")
    if status in (401, 403):
        return TicketError(
            f"{message}: unauthorized, check {credentials or f'the {system} credentials'}",
            retryable=False,
            status=status,
        )
    if status in (429, 503):
        return TicketError(
            message,
            retryable=True,
            status=status,
            retry_after=retry_after(response.headers.get("retry-after")),
        )
    explained = {**(refusals or {}), **({404: not_found} if not_found else {})}
    if status in explained:
        words = explained[status]
        return TicketError(
            f"{message}: {words}" if words else message, retryable=False, status=status
        )
    # 409: concurrent updates of one ticket (Zendesk answers so); 408: a slow hop.
    retryable = status >= 500 or status in (408, 409)
    return TicketError(message, retryable=retryable, status=status)


def network_error(system: str, what: str, exc: httpx.TransportError) -> TicketError:
    reason = str(exc) or type(exc).__name__
    return TicketError(
        f"{system} {what} failed: {type(exc).__name__}: {reason}"[: MAX_DETAIL + 80],
        retryable=True,
    )


def json_body(response: httpx.Response, system: str, what: str) -> Any:
    """The decoded JSON body; a body that is not JSON is a transient failure."""
    try:
        return response.json()
    except ValueError:
        raise TicketError(
            f"{system} {what}: HTTP {response.status_code} with a body that is not JSON",
            retryable=True,
            status=response.status_code,
        ) from None


def json_object(response: httpx.Response, system: str, what: str) -> dict[str, Any]:
    """The decoded body, which must be a JSON object; anything else is a transient failure."""
    data = json_body(response, system, what)
    if not isinstance(data, dict):
        raise TicketError(
            f"{system} {what}: HTTP {response.status_code} with a body that is not a JSON object",
            retryable=True,
            status=response.status_code,
        )
    return data


def same_origin(base: str, url: str, system: str, what: str) -> str:
    """Follow a link from a response only to our own server (credentials go with it)."""
    target, here = httpx.URL(url), httpx.URL(base)
    if (target.scheme, target.host, target.port) != (here.scheme, here.host, here.port):
        raise TicketError(f"{system} {what}: the next page points to another host", retryable=False)
    return url


def next_link(response: httpx.Response) -> str | None:
    """The ``rel="next"`` target of an RFC 8288 ``Link`` header, if any."""
    link = response.links.get("next")
    url = link.get("url") if link else None
    return url or None


class SizeMismatch(Exception):
    """The store gave more or fewer bytes than the file's recorded size."""


async def exactly(attachment: AttachmentSource) -> AsyncIterator[bytes]:
    """Stream the attachment, failing loudly if the store gives more or fewer bytes."""
    sent = 0
    async for chunk in attachment.open():
        sent += len(chunk)
        if sent > attachment.size:
            raise SizeMismatch(f"{attachment.filename!r} is longer than {attachment.size} bytes")
        yield chunk
    if sent != attachment.size:
        raise SizeMismatch(f"{attachment.filename!r} ended after {sent} of {attachment.size} bytes")


def _quote_name(name: str) -> str:
    """A file name for a multipart header, escaped as HTML forms escape it."""
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class StreamedForm:
    """A ``multipart/form-data`` body whose length is known in advance.

    Text ``fields`` first, then each file as a part named ``file_field``,
    streamed from the store through :func:`exactly`.
    """

    def __init__(
        self, fields: dict[str, str], files: Sequence[AttachmentSource], *, file_field: str
    ) -> None:
        self.boundary = "gateway-" + secrets.token_hex(16)
        self._fields = fields
        self._files = files
        self._file_field = file_field

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _field_head(self, name: str) -> bytes:
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        ).encode()

    def _file_head(self, file: AttachmentSource) -> bytes:
        content_type = file.content_type or "application/octet-stream"
        return (
            f"--{self.boundary}\r\nContent-Disposition: form-data; "
            f'name="{self._file_field}"; filename="{_quote_name(file.filename)}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()

    def _tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def __len__(self) -> int:
        size = len(self._tail())
        for name, value in self._fields.items():
            size += len(self._field_head(name)) + len(value.encode()) + 2
        for file in self._files:
            size += len(self._file_head(file)) + file.size + 2
        return size

    async def stream(self) -> AsyncIterator[bytes]:
        for name, value in self._fields.items():
            yield self._field_head(name) + value.encode() + b"\r\n"
        for file in self._files:
            yield self._file_head(file)
            async for chunk in exactly(file):
                yield chunk
            yield b"\r\n"
        yield self._tail()
