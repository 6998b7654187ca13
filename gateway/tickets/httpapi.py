"""What every HTTP ticket client does alike: failures translated, bodies streamed exactly.

The clients (Zendesk, Jira, Freshdesk, ServiceNow) do not loop retrying. Every failure
becomes a :class:`~gateway.tickets.base.TicketError` that says whether trying
later can help and what the server's ``Retry-After`` asked for; the delivery
outbox owns backoff. 401 and 403 are configuration errors (never retryable),
429 and 503 carry the server's wait, other 5xx, 408 and 409 are transient,
and every other 4xx is a refusal. Messages name the system, the call and the
server's own error text, never credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from gateway.backoff import retry_after
from gateway.tickets.base import AttachmentSource, TicketError

MAX_DETAIL = 300


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
