"""The page's static assets, served from ``gateway/static`` at ``/static/{release}/{name}``.

A handful of small files read once and kept in memory. The URL carries a
hash of all of them together (the release), so a response for the current
release can be cached for a year (``immutable``), a new release is picked up
at once, and the page's ES modules can import each other (and start their
worker) by relative URL within one release. Only files in the package's
static folder (and its ``vendor/`` subfolders) are served: no directory
listing, no other paths.

Scripts carry their own Content-Security-Policy, which is the one a Web
Worker runs under: the hash worker may compile WebAssembly
(``'wasm-unsafe-eval'``) and import same-origin scripts, nothing else.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

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
SCRIPT_CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'"
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


def _walk(folder: Traversable, prefix: str, found: dict[str, Asset]) -> None:
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            _walk(entry, f"{prefix}{entry.name}/", found)
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if not entry.is_file() or suffix not in TYPES:
            continue
        body = entry.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:16]
        name = prefix + entry.name
        found[name] = Asset(name, body, TYPES[suffix], digest)


@functools.cache
def catalogue() -> dict[str, Asset]:
    """Every servable file in ``gateway/static`` and its subfolders, by relative name."""
    found: dict[str, Asset] = {}
    folder = resources.files("gateway") / "static"
    if folder.is_dir():
        _walk(folder, "", found)
    return found


@functools.cache
def release() -> str:
    """One hash of every asset's name and content: the version in every asset URL."""
    digest = hashlib.sha256()
    for name, asset in sorted(catalogue().items()):
        digest.update(f"{name}\0{asset.digest}\n".encode())
    return digest.hexdigest()[:16]


def url_for(name: str) -> str:
    """The versioned URL of a static asset (the release's hash in the path)."""
    if name not in catalogue():
        raise KeyError(f"no static asset named {name!r}")
    return f"/static/{release()}/{name}"


def _serve(request: Request, name: str, cache_control: str) -> Response:
    asset = catalogue().get(name)
    if asset is None:
        raise GatewayError(Code.NOT_FOUND)
    headers = {"Cache-Control": cache_control, "ETag": asset.etag}
    if asset.content_type.startswith("text/javascript"):
        headers["Content-Security-Policy"] = SCRIPT_CSP
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


async def versioned(request: Request) -> Response:
    fresh = request.path_params["version"] == release()
    # An old release (a page rendered before a deploy) still gets the current file, uncached.
    return _serve(request, request.path_params["name"], IMMUTABLE if fresh else REVALIDATE)


async def unversioned(request: Request) -> Response:
    return _serve(request, request.path_params["name"], REVALIDATE)


routes = [
    Route("/static/{version}/{name:path}", versioned, methods=["GET"]),
    Route("/static/{name}", unversioned, methods=["GET"]),
]
