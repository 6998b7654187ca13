"""Rendering errors to HTTP, in one place."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import Code, GatewayError

log = logging.getLogger("gateway.http")

_BY_STATUS = {
    404: Code.NOT_FOUND,
    405: Code.BAD_REQUEST,
    400: Code.BAD_REQUEST,
    413: Code.TOO_LARGE,
    429: Code.TOO_MANY_REQUESTS,
}


def error_response(exc: GatewayError) -> Response:
    body = {"error": {"code": exc.code.slug, "message": exc.message}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    hook = request.scope.get("gateway.error_headers")
    response = error_response(exc)
    if callable(hook):
        response.headers.update(hook())
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _BY_STATUS.get(exc.status_code, Code.BAD_REQUEST)
    message = "Not found." if exc.status_code == 404 else str(exc.detail)
    if exc.status_code == 405:
        message = "Method not allowed."
    return error_response(
        GatewayError(code, message, status=exc.status_code, headers=exc.headers or {})
    )


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(GatewayError(Code.INTERNAL))


HANDLERS = {
    GatewayError: gateway_error,
    HTTPException: http_error,
    Exception: internal_error,
}
