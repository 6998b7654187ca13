"""Rendering errors to HTTP, in one place.

An endpoint whose clients expect other statuses or headers on errors (tus)
names its dialect with :func:`speak`: a function that turns the catalogue
error into the one its clients expect, applied here to every error of its
requests, storage failures and unexpected ones included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import Code, GatewayError
from gateway.store.base import StorageError

log = logging.getLogger("gateway.http")

_BY_STATUS = {
    404: Code.NOT_FOUND,
    405: Code.BAD_REQUEST,
    400: Code.BAD_REQUEST,
    413: Code.TOO_LARGE,
    429: Code.TOO_MANY_REQUESTS,
}


Dialect = Callable[[GatewayError], GatewayError]
_DIALECT = "gateway.error_dialect"


def speak(request: Request, dialect: Dialect) -> None:
    """Render every error of ``request`` through ``dialect``."""
    request.scope[_DIALECT] = dialect


def error_response(exc: GatewayError) -> Response:
    body = {"error": {"code": exc.code.slug, "message": exc.message}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def _render(request: Request, exc: GatewayError) -> Response:
    dialect = request.scope.get(_DIALECT)
    return error_response(dialect(exc) if dialect is not None else exc)


async def gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _render(request, exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _BY_STATUS.get(exc.status_code, Code.BAD_REQUEST)
    message = "Not found." if exc.status_code == 404 else str(exc.detail)
    if exc.status_code == 405:
        message = "Method not allowed."
    return _render(
        request, GatewayError(code, message, status=exc.status_code, headers=exc.headers or {})
    )


def storage_unavailable(request: Request, exc: Exception) -> GatewayError:
    """A storage failure (after the store's own retries) as the retryable error clients get."""
    log.warning("storage failed on %s %s: %s", request.method, request.url.path, exc)
    return GatewayError(Code.STORAGE_UNAVAILABLE, headers={"Retry-After": "5"})


async def storage_error(request: Request, exc: Exception) -> Response:
    """Storage failed after the store's own retries: a retryable 503, not a 500.

    Whatever was stored before the failure stays, so the client can retry or
    resume; the cause goes to the log, not to the client.
    """
    return _render(request, storage_unavailable(request, exc))


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _render(request, GatewayError(Code.INTERNAL))


class Unexpected:
    """An unexpected exception becomes the catalogue's 500 inside the middleware stack.

    Starlette's last-resort handler for ``Exception`` runs outside every
    middleware, so its answer would lack the security headers and the
    request id. This one sits innermost and answers first; an exception
    after the response has started can only end the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:
                raise
            response = await internal_error(Request(scope), exc)
            await response(scope, receive, send)


HANDLERS = {
    GatewayError: gateway_error,
    HTTPException: http_error,
    StorageError: storage_error,
    Exception: internal_error,
}
