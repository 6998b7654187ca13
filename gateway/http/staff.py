"""Staff surface: the link-minting API and the local tickets view.

Staff authenticate with ``Authorization: Bearer {GATEWAY_STAFF_TOKEN}`` or a
session cookie from ``/login``. With no staff token configured, the local
tickets view is served to loopback clients only and the API is off.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.errors import Code, GatewayError
from gateway.filenames import content_disposition
from gateway.http import html
from gateway.http.context import services_of
from gateway.http.webhook import link_comment
from gateway.services import Services
from gateway.signing import UploadLink
from gateway.tickets.base import NewComment, TicketError
from gateway.units import parse_size

COOKIE = "gateway_staff"


# The staff page's own stylesheet and nothing else: no scripts, no inline styles.
STAFF_CSP = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'"


def _cookie_value(services: Services) -> str:
    token = services.settings.staff_token or ""
    return hmac.new(
        services.settings.secret, b"staff:" + token.encode(), hashlib.sha256
    ).hexdigest()


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_staff(request: Request, *, allow_loopback: bool) -> bool:
    services = services_of(request)
    token = services.settings.staff_token
    if not token:
        return allow_loopback and _is_loopback(request)
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie, _cookie_value(services))


def require_staff(request: Request, *, allow_loopback: bool = True) -> None:
    if not is_staff(request, allow_loopback=allow_loopback):
        if not services_of(request).settings.staff_token and not allow_loopback:
            raise GatewayError(Code.FORBIDDEN, "The staff API is off: set GATEWAY_STAFF_TOKEN.")
        raise GatewayError(
            Code.UNAUTHORIZED,
            "Staff authentication required.",
            headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
        )


async def create_link(request: Request) -> Response:
    services = services_of(request)
    require_staff(request, allow_loopback=False)
    try:
        body: Any = json.loads(await request.body() or b"{}")
    except ValueError:
        raise GatewayError(Code.BAD_REQUEST, "The body must be JSON.") from None
    if not isinstance(body, dict):
        raise GatewayError(Code.BAD_REQUEST, "The body must be a JSON object.")
    ticket = body.get("ticket")
    if isinstance(ticket, int) and not isinstance(ticket, bool):
        ticket = str(ticket)
    if not isinstance(ticket, str):
        raise GatewayError(Code.BAD_REQUEST, "'ticket' is required (a string or a number).")
    expires_in = body.get("expires_in")
    if expires_in is not None and (not isinstance(expires_in, int) or isinstance(expires_in, bool)):
        raise GatewayError(Code.BAD_REQUEST, "'expires_in' must be whole seconds.")
    max_size = body.get("max_size")
    if isinstance(max_size, str):
        try:
            max_size = parse_size(max_size)
        except ValueError as exc:
            raise GatewayError(Code.BAD_REQUEST, str(exc)) from None
    if max_size is not None and (not isinstance(max_size, int) or isinstance(max_size, bool)):
        raise GatewayError(Code.BAD_REQUEST, "'max_size' must be bytes or a size like '2GiB'.")
    post = body.get("comment")
    if post not in (None, "public", "private"):
        raise GatewayError(Code.BAD_REQUEST, '\'comment\' must be "public" or "private".')
    minted = services.links.mint(ticket, expires_in=expires_in, max_size=max_size)
    if post is not None:
        await _post_link(services, ticket, minted.url, minted.link, public=post == "public")
    services.metrics.links_minted.labels("api").inc()
    services.event(
        "link_minted",
        {"ticket": ticket, "link_id": minted.link.link_id, "via": "api",
         "expires_at": minted.link.expires_at,
         "from": request.client.host if request.client else None},
    )  # fmt: skip
    answer: dict[str, Any] = {
        "url": minted.url,
        "expires_at": minted.link.expires_at,
        "ticket": ticket,
        "max_size": minted.link.max_size,
    }
    if post is not None:
        answer["comment"] = post
    return JSONResponse(answer, status_code=201)


async def _post_link(
    services: Services, ticket: str, url: str, link: UploadLink, *, public: bool
) -> None:
    """Post a freshly minted link on the ticket (``"comment"`` in the request).

    A helpdesk automation that can call a URL but not use its answer
    (a Freshdesk "Trigger webhook" action, say) gets the link to the
    requester this way. Failures answer as the Zendesk webhook does: 503
    with ``Retry-After`` when trying later can help, 502 otherwise.
    """
    comment = NewComment(body=link_comment(url, link.expires_at, link.max_size), public=public)
    try:
        await services.tickets.post_comment(ticket, comment)
    except TicketError as exc:
        services.event(
            "link_comment_failed",
            {"ticket": ticket, "reason": exc.message, "retryable": exc.retryable},
        )
        if exc.retryable:
            wait = str(max(1, round(exc.retry_after))) if exc.retry_after is not None else "30"
            raise GatewayError(
                Code.TICKETS_UNAVAILABLE,
                f"The link was not posted on the ticket; retry later ({exc.message}).",
                headers={"Retry-After": wait},
            ) from None
        raise GatewayError(
            Code.TICKETS_REFUSED, f"The ticket system refused the link comment: {exc.message}"
        ) from None


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept.split(",")[0]


async def show_ticket(request: Request) -> Response:
    services = services_of(request)
    require_staff(request)
    tickets = services.local_tickets
    if tickets is None:
        raise GatewayError(Code.NOT_FOUND, "Tickets are kept in the ticket system, not here.")
    ticket_id = request.path_params["ticket"]
    from gateway.tickets.local import valid_ticket

    if not valid_ticket(ticket_id):
        raise GatewayError(Code.NOT_FOUND, "No such ticket.")
    data = await tickets.ticket(ticket_id)
    base = services.settings.public_url
    comments = []
    for comment in data["comments"]:
        comments.append(
            {
                "id": comment["id"],
                "body": comment["body"],
                "public": comment["public"],
                "created_at": comment["created_at"],
                "attachments": [
                    {
                        "file_name": a["file_name"],
                        "size": a["size"],
                        "content_type": a.get("content_type", "application/octet-stream"),
                        "content_url": f"{base}/tickets/{ticket_id}/attachments/{a['id']}",
                    }
                    for a in comment["attachments"]
                ],
            }
        )
    if _wants_json(request):
        return JSONResponse({"ticket": ticket_id, "comments": comments})
    context = {"ticket": ticket_id, "comments": comments}
    return html.page(
        request, "ticket.html", context, headers={"Content-Security-Policy": STAFF_CSP}
    )


async def ticket_attachment(request: Request) -> Response:
    services = services_of(request)
    require_staff(request)
    tickets = services.local_tickets
    if tickets is None:
        raise GatewayError(Code.NOT_FOUND)
    ticket_id = request.path_params["ticket"]
    attachment_id = request.path_params["attachment"]
    data = await tickets.ticket(ticket_id)
    for comment in data["comments"]:
        for a in comment["attachments"]:
            if a["id"] == attachment_id:
                path = tickets.attachment_path(attachment_id)
                if path is None:
                    break
                return FileResponse(
                    path,
                    media_type=a.get("content_type", "application/octet-stream"),
                    headers={"Content-Disposition": content_disposition(a["file_name"])},
                )
    raise GatewayError(Code.NOT_FOUND, "No such attachment.")


async def login(request: Request) -> Response:
    services = services_of(request)
    token = services.settings.staff_token
    if request.method == "POST":
        form = await request.form(max_files=0, max_fields=4)
        given = str(form.get("token", ""))
        if token and hmac.compare_digest(given.encode(), token.encode()):
            target = str(request.query_params.get("next", "/"))
            if not target.startswith("/") or target.startswith("//"):
                target = "/"
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                COOKIE,
                _cookie_value(services),
                httponly=True,
                samesite="strict",
                secure=services.settings.public_url.startswith("https"),
                max_age=12 * 3600,
            )
            return response
        raise GatewayError(Code.UNAUTHORIZED, "Wrong staff token.")
    return html.page(request, "login.html", {})


routes = [
    Route("/api/links", create_link, methods=["POST"]),
    Route("/tickets/{ticket}", show_ticket, methods=["GET"]),
    Route("/tickets/{ticket}/attachments/{attachment}", ticket_attachment, methods=["GET"]),
    Route("/login", login, methods=["GET", "POST"]),
]
