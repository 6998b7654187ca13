"""tus concatenation: final uploads made of partial uploads.

Partial uploads (``Upload-Concat: partial``) are ordinary uploads that are
never delivered on their own. A final upload (``Upload-Concat:
final;URL...``) names complete partial uploads of the same ticket; the engine
copies them, in order, into a new upload in the background, which is then
hashed, routed and delivered like any other. The creating POST waits up to
:data:`ASSEMBLY_WAIT` seconds for that and then answers; a client that got no
``Upload-Offset`` polls HEAD on the final upload, which also restarts an
assembly that a restart interrupted.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import Code, GatewayError
from gateway.http import tus_request
from gateway.http.tus_reply import expires, file_headers, reply, upload_url
from gateway.services import Services
from gateway.signing import UploadLink
from gateway.uploads.records import FINAL, PARTIAL, FileRecord, UploadRecord

ASSEMBLY_WAIT = 20.0  # seconds a final upload's POST waits for its assembly
HEAD_ASSEMBLY_WAIT = 0.5  # ... and a HEAD on it, to report an assembly that just ended


async def create_final(
    request: Request, services: Services, link: UploadLink, sources: list[str]
) -> Response:
    if "upload-length" in request.headers or "upload-defer-length" in request.headers:
        raise tus_request.bad(
            "A final upload's length is the sum of its partial uploads; send no length."
        )
    if tus_request.has_body(request):
        raise GatewayError(Code.FORBIDDEN, "A final upload takes no body.")
    filename, file_type, metadata = tus_request.metadata(request)
    done = await services.engine.joined(link, sources)
    if done is not None:
        return _joined(services, request, done)
    try:
        record = await services.engine.concatenate(
            link, sources, filename=filename, content_type=file_type, metadata=metadata
        )
    except GatewayError as exc:
        # The partial uploads became a file (and are being removed) while this POST looked
        # at them: answer with that file, as a POST repeated a moment later would.
        vanished = exc.code in (Code.CONFLICT, Code.NOT_FOUND, Code.GONE)
        done = await services.engine.joined(link, sources) if vanished else None
        if done is None:
            raise
        return _joined(services, request, done)
    services.upload_started(record)
    location = upload_url(services, request, record.id)
    headers = {"Location": location, "Upload-Length": str(record.length), **expires(record)}
    try:
        file = await assembly(services, record, ASSEMBLY_WAIT)
    except GatewayError as exc:
        exc.headers.setdefault("Location", location)
        raise
    if file is not None:
        headers.update(file_headers(file))
    return reply(201, headers)


def _joined(services: Services, request: Request, done: FileRecord) -> Response:
    """The answer to a final upload whose partial uploads already became ``done``."""
    location = upload_url(services, request, done.file_id)
    return reply(201, {"Location": location, "Upload-Length": str(done.size), **file_headers(done)})


async def assembly(services: Services, record: UploadRecord, wait: float) -> FileRecord | None:
    """Start (or join) a final upload's assembly; its file if it ends within ``wait``."""
    task = services.engine.start_assembly(record)
    await asyncio.wait({task}, timeout=wait)
    if not task.done() or task.cancelled():
        return None
    exc = task.exception()
    if isinstance(exc, GatewayError) and exc.code is Code.CONFLICT:
        return None  # another replica is assembling it
    if exc is not None:
        raise exc
    return task.result()


def concat_header(services: Services, request: Request, record: UploadRecord) -> str:
    if record.concat == FINAL:
        urls = " ".join(upload_url(services, request, source) for source in record.sources)
        return f"final;{urls}"
    return PARTIAL


async def head_final(request: Request, services: Services, record: UploadRecord) -> Response:
    """A final upload still being assembled: no Upload-Offset until it is a file."""
    headers = {
        "Cache-Control": "no-store",
        "Upload-Length": str(record.length),
        "Upload-Concat": concat_header(services, request, record),
        **expires(record),
    }
    file = await assembly(services, record, HEAD_ASSEMBLY_WAIT)
    if file is not None:
        headers.update(file_headers(file))
    else:
        headers["Retry-After"] = "1"
    return reply(200, headers)
