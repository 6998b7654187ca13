"""The tus 1.0.0 edge: ``/u/{token}/tus/`` and ``/u/{token}/tus/{upload_id}``.

A thin adapter over the upload engine, like raw PUT: every bit of upload
state lives in the store, so any replica answers any request. Extensions:
creation, creation-with-upload, creation-defer-length, termination,
checksum (sha1, md5, sha256), expiration and concatenation
(:mod:`gateway.http.tus_concat`), plus X-HTTP-Method-Override.

The handlers raise catalogue errors; the one error handler renders them in
the tus dialect (:mod:`gateway.http.tus_reply`), with the tus headers on
every answer. Reading the request's headers is :mod:`gateway.http.tus_request`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import Code, GatewayError
from gateway.http import tus_headers, tus_request
from gateway.http.body import BodyLimits, body_chunks
from gateway.http.context import services_of
from gateway.http.errors import speak
from gateway.http.tus_concat import concat_header, create_final, head_final
from gateway.http.tus_headers import TUS_VERSION
from gateway.http.tus_reply import (
    expires,
    file_headers,
    progress_headers,
    reply,
    tus_error,
    upload_url,
)
from gateway.http.uploads import check_link, failures_counted, link_slot
from gateway.services import Services
from gateway.signing import UploadLink
from gateway.uploads.engine import Progress, WriteRequest
from gateway.uploads.records import FINAL, PARTIAL, FileRecord, UploadRecord

EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "checksum",
    "expiration",
    "concatenation",
)

Handler = Callable[[Request, Services], Awaitable[Response]]


def _chunks(services: Services, request: Request, queued: float) -> AsyncIterator[bytes]:
    counter = services.metrics.bytes_received.labels("tus")
    return body_chunks(request, BodyLimits.of(services.settings, queued), counter.inc)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def lookup(services: Services, link: UploadLink, upload_id: str) -> UploadRecord | FileRecord:
    """The upload, or the file it became once finished (its upload record is gone by
    then): only the link's ticket's, else NOT_FOUND as if unknown."""
    try:
        record = await services.engine.load(upload_id)
        if record.ticket != link.ticket:
            raise GatewayError(Code.NOT_FOUND, "No such upload.")
        return record
    except GatewayError as exc:
        if exc.code is not Code.NOT_FOUND:
            raise
        file = await _finished(services, link, upload_id)
        if file is None:
            raise
        return file


async def _finished(services: Services, link: UploadLink, upload_id: str) -> FileRecord | None:
    file = await services.records.files.load(upload_id)
    return file if file is not None and file.ticket == link.ticket else None


async def _write(
    services: Services,
    request: Request,
    link: UploadLink,
    record: UploadRecord,
    offset: int,
) -> Progress:
    checksum, verify = tus_request.checksum(request)
    expect = tus_request.expect(request)
    async with link_slot(services, link) as queued:
        with failures_counted(services, "tus"):
            body = _chunks(services, request, queued)
            return await services.engine.write(
                record, WriteRequest(offset, body, expect=expect, checksum=checksum, verify=verify)
            )


# -- handlers ---------------------------------------------------------------------


async def options(request: Request, services: Services) -> Response:
    headers = {
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": ",".join(EXTENSIONS),
        "Tus-Checksum-Algorithm": ",".join(tus_headers.CHECKSUM_ALGORITHMS),
    }
    if "access-control-request-method" not in request.headers:
        # A plain OPTIONS learns the link's cap; a CORS preflight needs no valid link.
        link = check_link(request)
        headers["Tus-Max-Size"] = str(services.size_limit.cap(link.max_size))
    return reply(204, headers)


async def create(request: Request, services: Services) -> Response:
    tus_request.check_version(request)
    link = check_link(request)
    concat = request.headers.get("upload-concat")
    if concat is not None:
        sources = tus_request.concat_sources(concat)
        if sources is not None:
            return await create_final(request, services, link, sources)
    length = tus_request.length(request)
    with_body = tus_request.offset_body(request)
    if not with_body and tus_request.has_body(request):
        raise GatewayError(
            Code.UNSUPPORTED_MEDIA, f"A creation request's body must be {tus_request.OFFSET_TYPE}."
        )
    if with_body:
        tus_request.checksum(request)  # reject a bad Upload-Checksum before anything is recorded
    filename, file_type, metadata = tus_request.metadata(request)
    record = await services.engine.create(
        link,
        filename=filename,
        length=length,
        protocol="tus",
        content_type=file_type,
        metadata=metadata,
        concat=PARTIAL if concat is not None else None,
    )
    services.upload_started(record)
    headers = {"Location": upload_url(services, request, record.id), **expires(record)}
    if with_body or length == 0:
        try:
            if with_body:
                progress = await _write(services, request, link, record, 0)
            else:
                progress = await services.engine.write(record, WriteRequest(0, _empty()))
        except GatewayError as exc:
            # The upload exists: tell the client where, so it can resume.
            exc.headers.setdefault("Location", headers["Location"])
            raise
        headers.update(progress_headers(record, progress))
    return reply(201, headers)


async def head(request: Request, services: Services) -> Response:
    tus_request.check_version(request)
    link = check_link(request)
    found = await lookup(services, link, request.path_params["upload_id"])
    headers = {"Cache-Control": "no-store"}
    if isinstance(found, FileRecord):
        return reply(200, {**headers, "Upload-Length": str(found.size), **file_headers(found)})
    record = found
    if record.concat == FINAL:
        return await head_final(request, services, record)
    headers["Upload-Offset"] = str(await services.engine.offset(record))
    if record.concat is not None:
        headers["Upload-Concat"] = concat_header(services, request, record)
    if record.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(record.length)
    if record.metadata:
        headers["Upload-Metadata"] = tus_headers.format_metadata(
            {k: v.encode() for k, v in record.metadata.items()}
        )
    headers.update(expires(record))
    return reply(200, headers)


async def patch(request: Request, services: Services) -> Response:
    tus_request.check_version(request)
    link = check_link(request)
    if not tus_request.offset_body(request):
        raise GatewayError(
            Code.UNSUPPORTED_MEDIA, f"A PATCH body must be {tus_request.OFFSET_TYPE}."
        )
    offset = tus_request.header_number(request, "upload-offset")
    if offset is None:
        raise tus_request.bad("Upload-Offset is required.")
    length = tus_request.header_number(request, "upload-length")
    upload_id = request.path_params["upload_id"]
    found = await lookup(services, link, upload_id)
    if isinstance(found, FileRecord):
        if offset == found.size and not tus_request.has_body(request):
            return reply(204, file_headers(found))
        raise _complete(found)
    record = found
    if record.concat == FINAL:
        raise GatewayError(
            Code.FORBIDDEN, "A final upload is made of its partial uploads; it takes no PATCH."
        )
    if length is not None:
        await services.engine.declare_length(record, length)
    try:
        progress = await _write(services, request, link, record, offset)
    except GatewayError as exc:
        # Another request completed the upload while this one waited for it.
        file = await _finished(services, link, upload_id) if exc.code is Code.NOT_FOUND else None
        if file is None:
            raise
        raise _complete(file) from None
    return reply(204, progress_headers(record, progress))


def _complete(file: FileRecord) -> GatewayError:
    return GatewayError(
        Code.OFFSET_MISMATCH,
        "This upload is already complete.",
        headers={"Upload-Offset": str(file.size)},
    )


async def delete(request: Request, services: Services) -> Response:
    tus_request.check_version(request)
    link = check_link(request)
    found = await lookup(services, link, request.path_params["upload_id"])
    if isinstance(found, FileRecord):
        raise GatewayError(
            Code.FORBIDDEN, "This upload is complete and was delivered; it cannot be removed."
        )
    await services.engine.terminate(found)
    services.event("upload_terminated", {"upload_id": found.id, "ticket": link.ticket})
    return reply(204)


_COLLECTION: dict[str, Handler] = {"OPTIONS": options, "POST": create}
_UPLOAD: dict[str, Handler] = {"OPTIONS": options, "HEAD": head, "PATCH": patch, "DELETE": delete}


def _endpoint(table: dict[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        speak(request, tus_error)
        handler = table.get(tus_request.method(request))
        if handler is None:
            raise GatewayError(
                Code.BAD_REQUEST,
                "Method not allowed.",
                status=405,
                headers={"Allow": ", ".join(table)},
            )
        return await handler(request, services_of(request))

    return endpoint


_ROUTE_METHODS = ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"]

routes = [
    Route("/u/{token}/tus", _endpoint(_COLLECTION), methods=_ROUTE_METHODS),
    Route("/u/{token}/tus/", _endpoint(_COLLECTION), methods=_ROUTE_METHODS),
    Route("/u/{token}/tus/{upload_id}", _endpoint(_UPLOAD), methods=_ROUTE_METHODS),
]
