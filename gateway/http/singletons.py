"""Headers that may appear once: a request carrying one twice is refused, on every route.

Two ``Upload-Offset`` headers (``0`` and ``5``) leave it to chance which one a
handler reads, and a proxy in front may have read the other. Such a request is
answered ``400`` before any handler sees it. tus requests get the tus headers
on that answer too, so a browser can read it.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import Code, GatewayError
from gateway.http.errors import error_response
from gateway.http.tus_reply import BASE_HEADERS as TUS_HEADERS

SINGLETONS = (
    "content-length",
    "content-range",
    "range",
    "tus-resumable",
    "upload-checksum",
    "upload-concat",
    "upload-length",
    "upload-metadata",
    "upload-offset",
)
_NAMES = {name.encode("latin-1"): name for name in SINGLETONS}
_CANONICAL = {name: "-".join(p.capitalize() for p in name.split("-")) for name in SINGLETONS}


def repeated(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The first singleton header that occurs more than once (canonical case), or None."""
    seen: set[str] = set()
    for raw, _ in headers:
        name = _NAMES.get(raw.lower())
        if name is None:
            continue
        if name in seen:
            return _CANONICAL[name]
        seen.add(name)
    return None


def _is_tus(path: str) -> bool:
    parts = path.split("/")
    return len(parts) >= 4 and parts[1] == "u" and parts[3] == "tus"


class SingletonHeaders:
    """Answers 400 to a request that repeats a singleton header (a plain ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = repeated(scope.get("headers", [])) if scope["type"] == "http" else None
        if name is None:
            await self.app(scope, receive, send)
            return
        response = error_response(
            GatewayError(Code.BAD_REQUEST, f"The request carries more than one {name} header.")
        )
        response.headers["Connection"] = "close"
        if _is_tus(scope.get("path", "")):
            response.headers.update(TUS_HEADERS)
        await response(scope, receive, send)
