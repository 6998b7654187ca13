"""Raw PUT (with plain-curl resume), form POST and the receipts listing.

Thin adapters over the upload engine: they check the link, parse headers,
and hand the engine the body as a stream of chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import Code, GatewayError
from gateway.filenames import clean_filename, guess_content_type
from gateway.http import headers
from gateway.http.body import BodyLimits, body_chunks
from gateway.http.context import services_of
from gateway.http.form import stream_form
from gateway.http.page import form_error, form_result
from gateway.http.slots import LinkSlots
from gateway.services import Services
from gateway.signing import UploadLink
from gateway.uploads import records
from gateway.uploads.engine import WriteRequest
from gateway.uploads.records import FileRecord, UploadRecord


def check_link(request: Request) -> UploadLink:
    return services_of(request).links.check_upload(request.path_params["token"])


def _draining() -> GatewayError:
    return GatewayError(
        Code.STORAGE_UNAVAILABLE,
        "This server is restarting; retry and the upload continues elsewhere.",
        headers={"Retry-After": "2"},
    )


@contextlib.asynccontextmanager
async def link_slot(services: Services, link: UploadLink) -> AsyncIterator[float]:
    """At most ``GATEWAY_LINK_CONCURRENCY`` uploads at once through one link, per process.

    A request that finds them all taken waits up to ``GATEWAY_BUSY_WAIT`` for one.
    Yields how many seconds it waited (see :meth:`BodyLimits.of`).
    """
    if services.draining:
        raise _draining()
    settings = services.settings
    slots: LinkSlots = services.extras.setdefault(
        "link_slots", LinkSlots(settings.link_concurrency)
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    if not await slots.acquire(link.link_id, settings.busy_wait):
        raise GatewayError(
            Code.TOO_MANY_REQUESTS,
            "Too many uploads at once through this link; retry shortly.",
            headers={"Retry-After": "5"},
        )
    try:
        if services.draining:
            raise _draining()
        services.metrics.uploads_in_flight.inc()
        try:
            yield loop.time() - started
        finally:
            services.metrics.uploads_in_flight.dec()
    finally:
        slots.release(link.link_id)


@contextlib.contextmanager
def failures_counted(services: Services, protocol: str) -> Iterator[None]:
    """Count an upload request that ends in an error, by protocol and error code."""
    try:
        yield
    except ClientDisconnect:
        services.metrics.uploads_failed.labels(protocol, "disconnect").inc()
        raise
    except GatewayError as exc:
        services.metrics.uploads_failed.labels(protocol, exc.code.slug).inc()
        raise


def _filename(request: Request) -> str:
    raw = request.path_params["filename"]
    if len(raw.encode("utf-8", "surrogatepass")) > 1024:
        raise GatewayError(Code.BAD_FILENAME, "The file name is too long.")
    return clean_filename(raw)


def _content_length(request: Request) -> int | None:
    values = request.headers.getlist("content-length")
    if len(values) > 1 and len(set(values)) > 1:
        raise GatewayError(Code.BAD_REQUEST, "Conflicting Content-Length headers.")
    try:
        return headers.parse_length(values[0] if values else None)
    except ValueError as exc:
        raise GatewayError(Code.BAD_REQUEST, str(exc)) from None


async def _pending(services: Services, link: UploadLink, filename: str) -> UploadRecord | None:
    raw = await services.store.get(records.name_key(link.link_id, filename))
    if raw is None:
        return None
    try:
        upload_id = json.loads(raw)["upload_id"]
        return await services.engine.load(upload_id)
    except (GatewayError, ValueError, KeyError, TypeError):
        return None


def _chunks(
    services: Services, request: Request, protocol: str, queued: float
) -> AsyncIterator[bytes]:
    counter = services.metrics.bytes_received.labels(protocol)
    return body_chunks(request, BodyLimits.of(services.settings, queued), counter.inc)


def receipt_response(file: FileRecord, status: int = 201) -> JSONResponse:
    return JSONResponse(
        file.receipt(), status_code=status, headers={"Location": f"./files#{file.file_id}"}
    )


async def put_file(request: Request) -> Response:
    services = services_of(request)
    link = check_link(request)
    filename = _filename(request)
    length = _content_length(request)
    range_header = request.headers.get("content-range")
    content_type = guess_content_type(filename, request.headers.get("content-type"))
    engine = services.engine
    async with link_slot(services, link) as queued:
        if range_header is not None:
            try:
                crange = headers.parse_content_range(range_header)
            except ValueError as exc:
                raise GatewayError(Code.BAD_RANGE, str(exc)) from None
            if length is not None and length != crange.length:
                raise GatewayError(
                    Code.BAD_RANGE, "Content-Length does not match the Content-Range."
                )
            record = await _pending(services, link, filename)
            if record is None:
                if crange.start != 0:
                    raise GatewayError(
                        Code.OFFSET_MISMATCH,
                        "There is no unfinished upload of this file to continue; start at 0.",
                        headers={"Upload-Offset": "0"},
                    )
                record = await _start(services, link, filename, crange.total, content_type)
            elif crange.total is not None and record.length not in (None, crange.total):
                raise GatewayError(
                    Code.BAD_RANGE,
                    f"This upload is {record.length} bytes long, not {crange.total}.",
                )
            elif crange.total is not None and record.length is None:
                await engine.declare_length(record, crange.total)
            expect: int | None = crange.length
            start = crange.start
        else:
            old = await _pending(services, link, filename)
            if old is not None:
                with contextlib.suppress(GatewayError):
                    await engine.terminate(old)
            record = await _start(services, link, filename, length, content_type)
            expect, start = length, 0
        with failures_counted(services, "put"):
            body = _chunks(services, request, "put", queued)
            progress = await engine.write(
                record, WriteRequest(start, body, final=range_header is None, expect=expect)
            )
    if progress.file is None:
        return JSONResponse(
            {"upload_offset": progress.offset, "upload_length": record.length, "complete": False},
            status_code=200,
            headers={"Upload-Offset": str(progress.offset)},
        )
    await services.store.delete(records.name_key(link.link_id, filename))
    return receipt_response(progress.file)


async def _start(
    services: Services, link: UploadLink, filename: str, length: int | None, content_type: str
) -> UploadRecord:
    record = await services.engine.create(
        link, filename=filename, length=length, protocol="put", content_type=content_type
    )
    await services.store.put(
        records.name_key(link.link_id, filename), records.dumps({"upload_id": record.id})
    )
    services.upload_started(record)
    return record


async def head_file(request: Request) -> Response:
    services = services_of(request)
    link = check_link(request)
    filename = _filename(request)
    record = await _pending(services, link, filename)
    if record is None:
        return Response(
            status_code=404, headers={"Upload-Offset": "0", "Cache-Control": "no-store"}
        )
    offset = await services.engine.offset(record)
    extra = {"Upload-Length": str(record.length)} if record.length is not None else {}
    return Response(
        status_code=200,
        headers={"Upload-Offset": str(offset), "Cache-Control": "no-store", **extra},
    )


def _prefers_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "json" not in accept


async def post_form(request: Request) -> Response:
    """The form POST; a browser posting the no-JavaScript form gets HTML, errors included."""
    try:
        return await _post_form(request)
    except GatewayError as exc:
        if not _prefers_html(request):
            raise
        return form_error(exc)


async def _post_form(request: Request) -> Response:
    services = services_of(request)
    link = check_link(request)
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise GatewayError(Code.UNSUPPORTED_MEDIA, "Send the files as multipart/form-data.")
    receipts: list[dict[str, Any]] = []
    async with link_slot(services, link) as queued:
        async for file in stream_form(
            services, link, content_type, _chunks(services, request, "form", queued)
        ):
            receipts.append(file.receipt())
    if not receipts:
        raise GatewayError(Code.BAD_REQUEST, "The form carried no file.")
    if _prefers_html(request):
        return form_result(request, link, receipts)
    return JSONResponse({"files": receipts}, status_code=201)


async def list_files(request: Request) -> Response:
    services = services_of(request)
    link = check_link(request)
    files = []
    for info in await services.store.list(f"links/{link.link_id}/"):
        raw = await services.store.get(records.meta_key(info.key.rsplit("/", 1)[-1]))
        if raw is not None:
            files.append(FileRecord.from_bytes(raw).receipt())
    files.sort(key=lambda r: r["created_at"])
    return JSONResponse(
        {
            "ticket": link.ticket,
            "files": files,
            "deliveries_pending": services.outbox.pending,
            "oldest_pending_seconds": round(services.outbox.oldest_age, 1),
        },
        headers={"Cache-Control": "no-store"},
    )


routes = [
    Route("/u/{token}/files", list_files, methods=["GET"]),
    Route("/u/{token}/{filename:path}", put_file, methods=["PUT"]),
    Route("/u/{token}/{filename:path}", head_file, methods=["HEAD"]),
    Route("/u/{token}", post_form, methods=["POST"]),
]
