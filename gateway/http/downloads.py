"""Downloads for support engineers, from the signed link in the ticket comment.

The gateway signs these links itself, so they can outlive S3's seven-day
presign limit. Bytes stream from the store; one ``Range`` is honoured
(206/416), ``If-Range`` guards it with the strong ETag (the SHA-256).
The file name after the token is optional, but when present it must be the
file's own: a link with an edited name is 404.

With ``GATEWAY_DOWNLOAD_REDIRECT=true`` (S3 storage only) a ``GET`` is
checked and audited the same way and then answered with a 302 to a
presigned S3 URL that lives :data:`REDIRECT_TTL` seconds and makes S3 send
the same ``Content-Disposition`` and ``Content-Type``: the bytes go from
storage to the engineer, not through the gateway. ``HEAD`` is still answered
here, with the ETag (the SHA-256) that verifying clients need.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.errors import Code, GatewayError
from gateway.filenames import content_disposition
from gateway.http import headers, signin
from gateway.http.context import services_of
from gateway.uploads.records import FileRecord, is_id

REDIRECT_TTL = 300  # seconds a presigned URL lives: long enough to start, too short to share


async def _file(request: Request) -> FileRecord:
    services = services_of(request)
    grant = services.links.check_download(request.path_params["token"])
    if not is_id(grant.file_id):
        raise GatewayError(Code.DOWNLOAD_INVALID)
    file = await services.records.files.load(grant.file_id)
    if file is None:
        raise GatewayError(Code.GONE, "This file has been removed.")
    name = request.path_params.get("name")
    if name and name != file.filename:
        # The name is decoration, but an edited link must not look like a working one.
        raise GatewayError(Code.NOT_FOUND, "No such file under this link.")
    refused = refusal(file, services.links.clock())
    if refused is not None:
        raise refused
    return file


def refusal(file: FileRecord, now: float) -> GatewayError | None:
    """Why ``file`` may not be downloaded now (None: it may): quarantine, retention."""
    if file.status == "quarantined" or (file.scan or "").startswith("infected"):
        return GatewayError(Code.FORBIDDEN, "This file is quarantined and cannot be downloaded.")
    if file.retain_until is not None and file.retain_until <= now:
        return GatewayError(Code.GONE, "This file has passed its retention period.")
    return None


async def download(request: Request) -> Response:
    """The link alone, or with ``GATEWAY_DOWNLOAD_AUTH=oidc`` the link and a signed-in
    engineer (the link is checked first: a bad link is refused before any sign-in)."""
    services = services_of(request)
    if services.settings.download_auth != "oidc":
        return await _serve(request, None)
    services.links.check_download(request.path_params["token"])
    engineer = signin.current(request)
    if engineer is None:
        return signin.challenge(request)
    response = await _serve(request, engineer.who)
    signin.renew(response, request, engineer)
    return response


async def _serve(request: Request, who: str | None) -> Response:
    services = services_of(request)
    file = await _file(request)
    etag = f'"{file.sha256}"'
    base = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Type": file.content_type,
        "Content-Disposition": content_disposition(file.filename),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    start, end, status = 0, file.size, 200
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header and (if_range is None or headers.etag_matches(if_range, etag)):
        try:
            wanted = headers.parse_range(range_header, file.size)
        except headers.Unsatisfiable:
            return Response(
                status_code=416,
                headers={**base, "Content-Range": f"bytes */{file.size}", "Content-Length": "0"},
            )
        if wanted is not None:
            start, end, status = wanted.start, wanted.end, 206
            base["Content-Range"] = f"bytes {start}-{end - 1}/{file.size}"
    base["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=base)
    services.metrics.downloads.inc()
    if services.settings.download_redirect:
        return await _redirect(request, file, status, end - start, who)
    services.event(
        "downloaded",
        {"file_id": file.file_id, "ticket": file.ticket, "bytes": end - start,
         "from": request.client.host if request.client else None,
         **({"by": who} if who else {})},
    )  # fmt: skip

    async def body() -> AsyncIterator[bytes]:
        counter = services.metrics.download_bytes
        if end > start:
            async for chunk in services.records.files.read(file.file_id, start, end):
                counter.inc(len(chunk))
                yield chunk

    return StreamingResponse(body(), status_code=status, headers=base)


async def _redirect(
    request: Request, file: FileRecord, status: int, length: int, who: str | None
) -> Response:
    """302 to a short-lived presigned storage URL; the Range header goes along with it."""
    services = services_of(request)
    url = await services.records.files.presign(
        file.file_id,
        expires_in=REDIRECT_TTL,
        disposition=content_disposition(file.filename),
        content_type=file.content_type,
    )
    if url is None:  # settings refuse redirect mode without S3; a store that cannot presign
        raise GatewayError(Code.INTERNAL, "This storage cannot hand out download URLs.")
    services.metrics.download_redirects.inc()
    services.event(
        "downloaded",
        {"file_id": file.file_id, "ticket": file.ticket, "bytes": length,
         "ranged": status == 206, "redirect": True,
         "from": request.client.host if request.client else None,
         **({"by": who} if who else {})},
    )  # fmt: skip
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "private, no-store"})


routes = [
    Route("/files/{token}", download, methods=["GET", "HEAD"]),
    Route("/files/{token}/{name:path}", download, methods=["GET", "HEAD"]),
]
