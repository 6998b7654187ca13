"""What every tus answer carries, errors included, and the headers that describe an upload.

Every response carries ``Tus-Resumable`` and the CORS headers (a browser must
be able to read ``Upload-Offset``, ``Location`` and ``Upload-Expires`` even
from a 409). Errors are the catalogue's, rendered by the one error handler in
the tus dialect (:func:`tus_error`): two statuses differ from the rest of the
gateway, as tus clients expect them. A write lease held by another request is
``423 Locked`` (tus clients retry it; 409 means a wrong offset), and an
expired link is ``410 Gone``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import Code, GatewayError
from gateway.http import tus_headers
from gateway.http.tus_headers import TUS_VERSION
from gateway.services import Services
from gateway.uploads.engine import Progress
from gateway.uploads.records import FileRecord, UploadRecord

METHODS = ("POST", "HEAD", "PATCH", "DELETE", "OPTIONS")
ALLOW_HEADERS = (
    "Authorization, Content-Type, Tus-Resumable, Upload-Length, Upload-Metadata, "
    "Upload-Offset, Upload-Checksum, Upload-Defer-Length, Upload-Concat, "
    "X-HTTP-Method-Override, X-Request-ID, X-Requested-With"
)
EXPOSE_HEADERS = (
    "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, "
    "Tus-Extension, Tus-Checksum-Algorithm, Upload-Metadata, Upload-Defer-Length, "
    "Upload-Concat, Upload-Expires, X-Gateway-File-Id, Retry-After"
)
BASE_HEADERS = {
    "Tus-Resumable": TUS_VERSION,
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": ", ".join(METHODS),
    "Access-Control-Allow-Headers": ALLOW_HEADERS,
    "Access-Control-Expose-Headers": EXPOSE_HEADERS,
    "Access-Control-Max-Age": "86400",
}
_TUS_STATUS = {Code.CONFLICT: 423, Code.LINK_EXPIRED: 410}


def reply(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers={**BASE_HEADERS, **(headers or {})})


def tus_error(exc: GatewayError) -> GatewayError:
    """A catalogue error as tus clients expect it: their status, and the tus headers."""
    return GatewayError(
        exc.code,
        exc.message,
        headers={**exc.headers, **BASE_HEADERS},
        status=_TUS_STATUS.get(exc.code, exc.status),
    )


def upload_url(services: Services, request: Request, upload_id: str) -> str:
    return f"{services.settings.public_url}/u/{request.path_params['token']}/tus/{upload_id}"


def expires(record: UploadRecord) -> dict[str, str]:
    return {"Upload-Expires": tus_headers.http_date(record.expires_at)}


def file_headers(file: FileRecord) -> dict[str, str]:
    """What every answer about a finished upload says: all bytes are in, and which file."""
    return {"Upload-Offset": str(file.size), "X-Gateway-File-Id": file.file_id}


def progress_headers(record: UploadRecord, progress: Progress) -> dict[str, str]:
    headers = {"Upload-Offset": str(progress.offset), **expires(record)}
    if progress.file is not None:
        headers["X-Gateway-File-Id"] = progress.file.file_id
    return headers
