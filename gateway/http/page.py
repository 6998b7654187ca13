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
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gateway.errors import Code, GatewayError
from gateway.http import assets
from gateway.http.context import services_of
from gateway.http.html import error_page, problem_page, result_page, upload_page
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


def _html(body: str, status: int = 200) -> HTMLResponse:
    """An HTML response under the page's CSP; never cached (the URL carries a token)."""
    return HTMLResponse(
        body,
        status_code=status,
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"},
    )


def chunk_size(raw: str | None) -> int:
    """The client's PATCH size: ``?chunk=BYTES`` within sane bounds, else 16 MiB (a part).

    Only the partner's own browser is affected, so the knob is harmless; tests
    use it to make mid-upload states observable on a fast loopback.
    """
    if raw is None or not raw.isdigit():
        return DEFAULT_CHUNK
    return min(max(int(raw), MIN_CHUNK), MAX_CHUNK)


def _link_error(exc: GatewayError) -> HTMLResponse:
    expired = exc.code is Code.LINK_EXPIRED
    return _html(error_page(expired=expired, asset_url=assets.url_for), status=exc.status)


async def upload_page_route(request: Request) -> Response:
    token: str = request.path_params["token"]
    services = services_of(request)
    try:
        link = services.links.check_upload(token)
    except GatewayError as exc:
        if exc.code in (Code.LINK_EXPIRED, Code.LINK_INVALID):
            return _link_error(exc)
        raise
    # The page states, and its script checks, what the gateway really takes through this link.
    link = dataclasses.replace(link, max_size=services.size_limit.cap(link.max_size))
    body = upload_page(
        token=token,
        link=link,
        now=time.time(),
        chunk=chunk_size(request.query_params.get("chunk")),
        asset_url=assets.url_for,
        link_concurrency=services_of(request).settings.link_concurrency,
    )
    return _html(body)


def form_error(exc: GatewayError) -> Response:
    """What a browser sees when the no-JavaScript form post fails."""
    if exc.code in (Code.LINK_EXPIRED, Code.LINK_INVALID):
        return _link_error(exc)
    page = problem_page(message=exc.message, asset_url=assets.url_for)
    response = _html(page, status=exc.status)
    response.headers.update(exc.headers)
    return response


def form_result(request: Request, link: UploadLink, receipts: list[dict[str, Any]]) -> Response:
    """What a browser sees after the no-JavaScript form post: one row per received file."""
    token: str = request.path_params["token"]
    return _html(result_page(token=token, link=link, receipts=receipts, asset_url=assets.url_for),
                 status=201)  # fmt: skip


routes = [
    Route("/u/{token}", upload_page_route, methods=["GET"]),
    *assets.routes,
]
