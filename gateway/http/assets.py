"""The page's static assets, served from ``gateway/static`` at ``/static/{hash}/{name}``.

A handful of small files read once and kept in memory. The URL carries a
hash of the content, so a response for the current hash can be cached for a
year (``immutable``) and a new release is picked up at once. Only names in
the package's static folder are served: no directory listing, no paths.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import Code, GatewayError

TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "public, max-age=0, must-revalidate"


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    content_type: str
    digest: str

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


@functools.cache
def catalogue() -> dict[str, Asset]:
    """Every servable file in ``gateway/static``, by name."""
    found: dict[str, Asset] = {}
    folder = resources.files("gateway") / "static"
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if not entry.is_file() or suffix not in TYPES or entry.name.startswith("."):
            continue
        body = entry.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:16]
        found[entry.name] = Asset(entry.name, body, TYPES[suffix], digest)
    return found


def url_for(name: str) -> str:
    """The versioned URL of a static asset (its content hash in the path)."""
    asset = catalogue().get(name)
    if asset is None:
        raise KeyError(f"no static asset named {name!r}")
    return f"/static/{asset.digest}/{name}"


def _serve(request: Request, name: str, cache_control: str) -> Response:
    asset = catalogue().get(name)
    if asset is None:
        raise GatewayError(Code.NOT_FOUND)
    headers = {"Cache-Control": cache_control, "ETag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


async def versioned(request: Request) -> Response:
    asset = catalogue().get(request.path_params["name"])
    fresh = asset is not None and asset.digest == request.path_params["version"]
    # An old hash (a page rendered before a deploy) still gets the current file, uncached.
    return _serve(request, request.path_params["name"], IMMUTABLE if fresh else REVALIDATE)


async def unversioned(request: Request) -> Response:
    return _serve(request, request.path_params["name"], REVALIDATE)


routes = [
    Route("/static/{version}/{name}", versioned, methods=["GET"]),
    Route("/static/{name}", unversioned, methods=["GET"]),
]
