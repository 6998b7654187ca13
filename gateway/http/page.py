"""The partner's browser page: ``GET /u/{token}``, its static assets, and the no-JS result page.

The page is plain server-rendered HTML that works without JavaScript (a
multipart form posting to ``POST /u/{token}``); ``/static/.../upload.js``
upgrades it into a resumable tus client. Everything the script needs comes
from ``data-`` attributes, so the page runs under a strict Content-Security-
Policy with no inline script or style and no third-party origin.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import Code, GatewayError
from gateway.http import assets, html
from gateway.http.context import services_of
from gateway.signing import UploadLink
from gateway.uploads.partsize import DEFAULT_PART

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; worker-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
MIN_CHUNK = 64 * 1024
MAX_CHUNK = 64 * 1024 * 1024
# One chunk per PATCH is a whole part of the upload engine's default plan: a PATCH
# that ends mid-part leaves a tail the gateway must store and read back, which
# with 8 MiB chunks tripled the storage traffic.
DEFAULT_CHUNK = DEFAULT_PART


def _html(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """A page under the page's CSP; never cached (the URL carries a token)."""
    headers = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"}
    return html.page(request, name, context, status=status, headers=headers)


def chunk_size(raw: str | None) -> int:
    """The client's PATCH size: ``?chunk=BYTES`` within sane bounds, else 16 MiB (a part).

    Only the partner's own browser is affected, so the knob is harmless; tests
    use it to make mid-upload states observable on a fast loopback.
    """
    if raw is None or not raw.isdigit():
        return DEFAULT_CHUNK
    return min(max(int(raw), MIN_CHUNK), MAX_CHUNK)


def _link_error(request: Request, exc: GatewayError) -> Response:
    """A friendly page for an expired or invalid link (naming no ticket)."""
    if exc.code is Code.LINK_EXPIRED:
        heading = "This upload link has expired"
        text = (
            "Upload links only work for a limited time. Reply to your support "
            "conversation and ask for a new link; files you already sent are safe."
        )
    else:
        heading = "This upload link is not valid"
        text = "Check that the whole link was copied, or ask your support contact for a new one."
    return _html(request, "notice.html", {"heading": heading, "text": text}, status=exc.status)


async def upload_page_route(request: Request) -> Response:
    token: str = request.path_params["token"]
    services = services_of(request)
    try:
        link = services.links.check_upload(token)
    except GatewayError as exc:
        if exc.code in (Code.LINK_EXPIRED, Code.LINK_INVALID):
            return _link_error(request, exc)
        raise
    # The page states, and its script checks, what the gateway really takes through this link.
    link = dataclasses.replace(link, max_size=services.size_limit.cap(link.max_size))
    # link_concurrency: how many uploads the gateway takes at once through one link;
    # the script never runs more PATCHes at once than that.
    context = {
        "token": token,
        "link": link,
        "now": time.time(),
        "chunk": chunk_size(request.query_params.get("chunk")),
        "link_concurrency": services.settings.link_concurrency,
    }
    return _html(request, "upload.html", context)


def form_error(request: Request, exc: GatewayError) -> Response:
    """What a browser sees when the no-JavaScript form post fails."""
    if exc.code in (Code.LINK_EXPIRED, Code.LINK_INVALID):
        return _link_error(request, exc)
    context = {
        "heading": "The upload did not go through",
        "text": f"{exc.message} Go back and try again; files already received are safe.",
    }
    response = _html(request, "notice.html", context, status=exc.status)
    response.headers.update(exc.headers)
    return response


def form_result(request: Request, link: UploadLink, receipts: list[dict[str, Any]]) -> Response:
    """What a browser sees after the no-JavaScript form post: one row per received file."""
    context = {"token": request.path_params["token"], "link": link, "receipts": receipts}
    return _html(request, "result.html", context, status=201)


routes = [
    Route("/u/{token}", upload_page_route, methods=["GET"]),
    *assets.routes,
]
