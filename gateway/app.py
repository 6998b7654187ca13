"""The Starlette application: routes, error rendering, security headers, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http import (
    downloads,
    health,
    page,
    signin,
    staff,
    ticket_files,
    tus,
    uploads,
    webhook,
)
from gateway.http.errors import HANDLERS, Unexpected
from gateway.http.singletons import SingletonHeaders
from gateway.logs import RequestId
from gateway.services import Services, build_services
from gateway.settings import Settings

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
DEFAULT_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


class SecurityHeaders:
    """Adds security headers to every response (a plain ASGI middleware: no body buffering)."""

    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS:
                    if name not in present:
                        headers.append((name, value))
                if b"content-security-policy" not in present:
                    headers.append(DEFAULT_CSP)
                if self.https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _routes() -> list[BaseRoute]:
    # Order matters where paths overlap: the tus and page routes under /u/{token}
    # come before the raw PUT's /u/{token}/{filename:path}.
    return [
        *health.routes,
        *staff.routes,
        *signin.routes,
        *ticket_files.routes,
        *downloads.routes,
        *tus.routes,
        *webhook.routes,
        *page.routes,
        *uploads.routes,
    ]


def create_app(
    settings: Settings,
    *,
    services: Services | None = None,
    **overrides: Any,
) -> Starlette:
    """Build the app. ``services`` (or overrides for build_services) let tests inject parts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal services
        if services is None:
            services = build_services(settings, **overrides)
        app.state.services = services
        await services.fit_attachment_max()
        services.outbox.start()
        services.engine.start_keeper()
        checking = asyncio.create_task(services.check_tickets(), name="tickets-check")
        try:
            yield
        finally:
            checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checking
            await services.close()

    app = Starlette(
        routes=_routes(),
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.add_middleware(Unexpected)  # innermost: its 500s get the headers below
    app.add_middleware(SingletonHeaders)
    app.add_middleware(SecurityHeaders, https=settings.public_url.startswith("https"))
    app.add_middleware(RequestId)
    return app
