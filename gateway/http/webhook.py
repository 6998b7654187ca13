"""``POST /api/zendesk/webhook``: a Zendesk trigger asks for an upload link.

A trigger (for example one that fires when a macro adds the tag
``upload_link_requested``) notifies a Zendesk webhook whose request body is
custom JSON built from placeholders::

    {"ticket_id": "{{ticket.id}}", "requester_email": "{{ticket.requester.email}}"}

Only ``ticket_id`` (a string or a number) is required; ``requester_email`` is
accepted for the audit trail's sake and never used to address anything, since
the link goes to the requester as a public comment on the ticket itself.

The endpoint exists only when ``GATEWAY_ZENDESK_WEBHOOK_SECRET`` is set (404
otherwise). Each request is checked in this order, each step cheaper than
the next and none trusting the previous one's input:

1. the body is read once, at most :data:`MAX_BODY` bytes;
2. Zendesk's signature over timestamp + body, and the timestamp's freshness
   (:func:`gateway.tickets.webhook.verify_webhook`): 401 if either fails;
3. the signature is remembered in the store with a create-only write
   (``records.replays``); a second use of it is a replay: 409;
4. the link is minted and posted. If the ticket system fails, the replay
   marker is dropped again so that Zendesk's own retry can succeed.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import Code, GatewayError
from gateway.http.context import services_of
from gateway.links import MintedLink
from gateway.services import Services
from gateway.tickets.base import NewComment, TicketError
from gateway.tickets.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookError,
    verify_webhook,
)
from gateway.units import format_size

log = logging.getLogger("gateway.webhook")

MAX_BODY = 64 * 1024
# Zendesk sends the request within seconds of signing it; five minutes
# tolerates clock skew and bounds how long a replay marker matters.
MAX_SKEW = 300


def webhook_secret(services: Services) -> str | None:
    return services.settings.zendesk_webhook_secret


async def read_bounded(request: Request, limit: int = MAX_BODY) -> bytes:
    """The whole body, refusing (413) anything longer than ``limit`` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(Code.TOO_LARGE, f"A webhook body is at most {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise GatewayError(Code.TOO_LARGE, f"A webhook body is at most {limit} bytes.")
    return bytes(body)


def ticket_from(body: bytes) -> tuple[str, dict[str, Any]]:
    """The ticket id from the webhook's JSON body (400 with a clear message if absent)."""
    try:
        data = json.loads(body)
    except ValueError:
        raise GatewayError(Code.BAD_REQUEST, "The webhook body must be JSON.") from None
    if not isinstance(data, dict):
        raise GatewayError(Code.BAD_REQUEST, "The webhook body must be a JSON object.")
    ticket = data.get("ticket_id")
    if isinstance(ticket, int) and not isinstance(ticket, bool):
        ticket = str(ticket)
    if not isinstance(ticket, str) or not ticket.strip():
        raise GatewayError(
            Code.BAD_REQUEST,
            "The webhook body needs 'ticket_id' (use the placeholder {{ticket.id}}).",
        )
    return ticket.strip(), data


def link_comment(url: str, expires_at: int, max_size: int) -> str:
    """What the requester reads on the ticket."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires_at))
    return (
        "Please upload your files for this request through this secure link:\n"
        f"{url}\n\n"
        "Open it in a browser and drop the files on the page, or upload from a terminal "
        f"with: curl -T FILE {url}/\n"
        f"The link works until {when} and accepts files of up to {format_size(max_size)} each. "
        "Large uploads can be resumed if the connection breaks."
    )


async def zendesk_webhook(request: Request) -> Response:
    services = services_of(request)
    secret = webhook_secret(services)
    if not secret:
        raise GatewayError(Code.NOT_FOUND, "Not found.")
    body = await read_bounded(request)
    signature = _verified(request, services, body, secret)
    ticket, data = ticket_from(body)
    if not await services.records.replays.claim(signature):
        services.event("webhook_refused", {"reason": "replay"})
        raise GatewayError(
            Code.CONFLICT, "Webhook refused: this signed request was already processed."
        )
    try:
        minted = services.links.mint(ticket)
        await _post_link(services, ticket, minted)
    except GatewayError:
        # Nothing reached the ticket: Zendesk's own retry of this request may succeed.
        await services.records.replays.release(signature)
        raise
    services.metrics.links_minted.labels("webhook").inc()
    services.event(
        "link_minted",
        {"ticket": ticket, "link_id": minted.link.link_id, "via": "webhook",
         "expires_at": minted.link.expires_at,
         "requester_email_given": isinstance(data.get("requester_email"), str)},
    )  # fmt: skip
    return JSONResponse(
        {
            "status": "posted",
            "ticket": ticket,
            "link_id": minted.link.link_id,
            "expires_at": minted.link.expires_at,
        },
        status_code=200,
    )


def _verified(request: Request, services: Services, body: bytes, secret: str) -> str:
    """The request's signature, once it and its timestamp are checked (else 401)."""
    signature = request.headers.get(SIGNATURE_HEADER)
    try:
        verify_webhook(
            body,
            signature,
            request.headers.get(TIMESTAMP_HEADER),
            secret,
            now=time.time(),
            max_skew=MAX_SKEW,
        )
    except WebhookError as exc:
        services.event("webhook_refused", {"reason": exc.reason})
        raise GatewayError(Code.UNAUTHORIZED, f"Webhook refused: {exc.message}.") from None
    assert signature is not None  # verify_webhook refuses a missing one
    return signature


async def _post_link(services: Services, ticket: str, minted: MintedLink) -> None:
    """Post the link to the requester; a ticket-system failure as the error to answer."""
    comment = NewComment(
        body=link_comment(minted.url, minted.link.expires_at, minted.link.max_size),
        public=True,
    )
    try:
        await services.tickets.post_comment(ticket, comment)
    except TicketError as exc:
        log.warning("could not post an upload link to ticket %s: %s", ticket, exc.message)
        services.event(
            "webhook_failed", {"ticket": ticket, "reason": exc.message, "retryable": exc.retryable}
        )
        if exc.retryable:
            wait = str(max(1, round(exc.retry_after))) if exc.retry_after is not None else "30"
            raise GatewayError(
                Code.TICKETS_UNAVAILABLE,
                f"The upload link could not be posted; retry later ({exc.message}).",
                headers={"Retry-After": wait},
            ) from None
        raise GatewayError(
            Code.TICKETS_REFUSED,
            f"The ticket system refused the upload-link comment: {exc.message}",
        ) from None


routes = [Route("/api/zendesk/webhook", zendesk_webhook, methods=["POST"])]
