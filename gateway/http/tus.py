"""The tus 1.0.0 edge: ``/u/{token}/tus/`` and ``/u/{token}/tus/{upload_id}``.

A thin adapter over the upload engine, like raw PUT: every bit of upload
state lives in the store, so any replica answers any request. Extensions:
creation, creation-with-upload, creation-defer-length, termination,
checksum (sha1, md5, sha256), expiration and concatenation, plus
X-HTTP-Method-Override.

Concatenation: partial uploads (``Upload-Concat: partial``) are ordinary
uploads that are never delivered on their own. A final upload
(``Upload-Concat: final;URL...``) names complete partial uploads of the same
ticket; the engine copies them, in order, into a new upload in the
background, which is then hashed, routed and delivered like any other. The
creating POST waits up to :data:`ASSEMBLY_WAIT` seconds for that and then
answers; a client that got no ``Upload-Offset`` polls HEAD on the final
upload, which also restarts an assembly that a restart interrupted.

Every response, errors included, carries ``Tus-Resumable`` and the CORS
headers (a browser must be able to read ``Upload-Offset``, ``Location`` and
``Upload-Expires`` even from a 409). Two status codes differ from the rest
of the gateway, as tus clients expect them: a write lease held by another
request is ``423 Locked`` (tus clients retry it; 409 means a wrong offset),
and an expired link is ``410 Gone``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import Code, GatewayError
from gateway.filenames import clean_filename, guess_content_type
from gateway.http import tus_headers
from gateway.http.body import BodyLimits, body_chunks
from gateway.http.context import services_of
from gateway.http.errors import error_response, storage_unavailable
from gateway.http.tus_headers import TUS_VERSION, UnknownAlgorithm
from gateway.http.uploads import check_link, failures_counted, link_slot
from gateway.services import Services
from gateway.signing import UploadLink
from gateway.store.base import StorageError
from gateway.uploads import records
from gateway.uploads.engine import Progress, WriteRequest
from gateway.uploads.records import FINAL, PARTIAL, FileRecord, UploadRecord

log = logging.getLogger("gateway.http.tus")

OFFSET_TYPE = "application/offset+octet-stream"
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "checksum",
    "expiration",
    "concatenation",
)
ASSEMBLY_WAIT = 20.0  # seconds a final upload's POST waits for its assembly
HEAD_ASSEMBLY_WAIT = 0.5  # ... and a HEAD on it, to report an assembly that just ended
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

Handler = Callable[[Request, Services], Awaitable[Response]]


def _reply(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers={**BASE_HEADERS, **(headers or {})})


def _tus_error(exc: GatewayError) -> Response:
    if exc.code is Code.CONFLICT:
        exc = GatewayError(exc.code, exc.message, headers=exc.headers, status=423)
    elif exc.code is Code.LINK_EXPIRED:
        exc = GatewayError(exc.code, exc.message, headers=exc.headers, status=410)
    response = error_response(exc)
    response.headers.update(BASE_HEADERS)
    return response


def _bad(message: str) -> GatewayError:
    return GatewayError(Code.BAD_REQUEST, message)


def _method(request: Request) -> str:
    override = request.headers.get("x-http-method-override")
    if request.method == "POST" and override:
        return override.strip().upper()
    return request.method


def _check_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise GatewayError(
            Code.TUS_VERSION,
            f"This server speaks tus {TUS_VERSION}; send 'Tus-Resumable: {TUS_VERSION}'.",
            headers={"Tus-Version": TUS_VERSION},
        )


def _header_number(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return tus_headers.parse_number(value, name)
    except ValueError as exc:
        raise _bad(str(exc)) from None


def _upload_url(services: Services, request: Request, upload_id: str) -> str:
    return f"{services.settings.public_url}/u/{request.path_params['token']}/tus/{upload_id}"


def _expires(record: UploadRecord) -> dict[str, str]:
    return {"Upload-Expires": tus_headers.http_date(record.expires_at)}


def _checksum(
    request: Request,
) -> tuple[Callable[[], object] | None, Callable[[object], None] | None]:
    value = request.headers.get("upload-checksum")
    if value is None:
        return None, None
    try:
        algorithm, expected = tus_headers.parse_checksum(value)
    except UnknownAlgorithm as exc:
        raise GatewayError(Code.CHECKSUM_ALGORITHM, str(exc)) from None
    except ValueError as exc:
        raise _bad(str(exc)) from None

    def verify(state: object) -> None:
        digest: bytes = state.digest()  # type: ignore[attr-defined]
        if not hmac.compare_digest(digest, expected):
            raise GatewayError(Code.CHECKSUM_MISMATCH)

    return (lambda: tus_headers.new_hash(algorithm)), verify


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    return "transfer-encoding" in request.headers


def _expect(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return tus_headers.parse_number(value.strip(), "Content-Length")
    except ValueError as exc:
        raise _bad(str(exc)) from None


def _chunks(services: Services, request: Request, queued: float) -> AsyncIterator[bytes]:
    counter = services.metrics.bytes_received.labels("tus")
    return body_chunks(request, BodyLimits.of(services.settings, queued), counter.inc)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


def _metadata(request: Request) -> tuple[str, str, dict[str, str]]:
    """(filename, content type, decoded metadata) from Upload-Metadata."""
    raw = request.headers.get("upload-metadata")
    parsed: dict[str, bytes] = {}
    if raw is not None:
        try:
            parsed = tus_headers.parse_metadata(raw)
        except ValueError as exc:
            raise _bad(str(exc)) from None
    decoded: dict[str, str] = {}
    for key, value in parsed.items():
        try:
            decoded[key] = value.decode("utf-8")
        except UnicodeDecodeError:
            if key in ("filename", "name", "filetype", "type", "content-type"):
                raise _bad(f"Upload-Metadata {key!r} must be UTF-8 text") from None
            continue  # other binary values are not kept
    name = decoded.get("filename") or decoded.get("name") or ""
    if len(name.encode()) > 1024:
        raise GatewayError(Code.BAD_FILENAME, "The file name is too long.")
    filename = clean_filename(name)
    declared = decoded.get("filetype") or decoded.get("type") or decoded.get("content-type")
    return filename, guess_content_type(filename, declared), decoded


async def _load(services: Services, link: UploadLink, upload_id: str) -> UploadRecord:
    """The upload, only if it belongs to the link's ticket (else 404, as if unknown)."""
    record = await services.engine.load(upload_id)
    if record.ticket != link.ticket:
        raise GatewayError(Code.NOT_FOUND, "No such upload.")
    return record


async def _finished(services: Services, link: UploadLink, upload_id: str) -> FileRecord | None:
    """A finished upload's file record (its upload record is gone by then)."""
    if not records.is_id(upload_id):
        return None
    raw = await services.store.get(records.meta_key(upload_id))
    if raw is None:
        return None
    file = FileRecord.from_bytes(raw)
    return file if file.ticket == link.ticket else None


async def _write(
    services: Services,
    request: Request,
    link: UploadLink,
    record: UploadRecord,
    offset: int,
) -> Progress:
    checksum, verify = _checksum(request)
    expect = _expect(request)
    async with link_slot(services, link) as queued:
        with failures_counted(services, "tus"):
            body = _chunks(services, request, queued)
            return await services.engine.write(
                record, WriteRequest(offset, body, expect=expect, checksum=checksum, verify=verify)
            )


def _file_headers(file: FileRecord) -> dict[str, str]:
    """What every answer about a finished upload says: all bytes are in, and which file."""
    return {"Upload-Offset": str(file.size), "X-Gateway-File-Id": file.file_id}


def _progress_headers(record: UploadRecord, progress: Progress) -> dict[str, str]:
    headers = {"Upload-Offset": str(progress.offset), **_expires(record)}
    if progress.file is not None:
        headers["X-Gateway-File-Id"] = progress.file.file_id
    return headers


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
    return _reply(204, headers)


async def create(request: Request, services: Services) -> Response:
    _check_version(request)
    link = check_link(request)
    concat = request.headers.get("upload-concat")
    if concat is not None:
        try:
            sources = tus_headers.parse_concat(concat.strip())
        except ValueError as exc:
            raise _bad(str(exc)) from None
        if sources is not None:
            return await _create_final(request, services, link, sources)
    length = _header_number(request, "upload-length")
    defer = request.headers.get("upload-defer-length")
    if defer is not None:
        try:
            tus_headers.parse_defer_length(defer)
        except ValueError as exc:
            raise _bad(str(exc)) from None
    if (length is None) == (defer is None):
        raise _bad("Send exactly one of Upload-Length and Upload-Defer-Length.")
    content_type = request.headers.get("content-type", "")
    with_body = content_type.split(";", 1)[0].strip().lower() == OFFSET_TYPE
    if not with_body and _has_body(request):
        raise GatewayError(
            Code.UNSUPPORTED_MEDIA, f"A creation request's body must be {OFFSET_TYPE}."
        )
    if with_body:
        _checksum(request)  # reject a bad Upload-Checksum before anything is recorded
    filename, file_type, metadata = _metadata(request)
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
    headers = {"Location": _upload_url(services, request, record.id), **_expires(record)}
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
        headers.update(_progress_headers(record, progress))
    return _reply(201, headers)


async def _create_final(
    request: Request, services: Services, link: UploadLink, sources: list[str]
) -> Response:
    if "upload-length" in request.headers or "upload-defer-length" in request.headers:
        raise _bad("A final upload's length is the sum of its partial uploads; send no length.")
    if _has_body(request):
        raise GatewayError(Code.FORBIDDEN, "A final upload takes no body.")
    filename, file_type, metadata = _metadata(request)
    done = await services.engine.joined(link, sources)
    if done is not None:
        location = _upload_url(services, request, done.file_id)
        return _reply(
            201, {"Location": location, "Upload-Length": str(done.size), **_file_headers(done)}
        )
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
        location = _upload_url(services, request, done.file_id)
        return _reply(
            201, {"Location": location, "Upload-Length": str(done.size), **_file_headers(done)}
        )
    services.upload_started(record)
    location = _upload_url(services, request, record.id)
    headers = {"Location": location, "Upload-Length": str(record.length), **_expires(record)}
    try:
        file = await _assembly(services, record, ASSEMBLY_WAIT)
    except GatewayError as exc:
        exc.headers.setdefault("Location", location)
        raise
    if file is not None:
        headers.update(_file_headers(file))
    return _reply(201, headers)


async def _assembly(services: Services, record: UploadRecord, wait: float) -> FileRecord | None:
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


def _concat_header(services: Services, request: Request, record: UploadRecord) -> str:
    if record.concat == FINAL:
        urls = " ".join(_upload_url(services, request, source) for source in record.sources)
        return f"final;{urls}"
    return PARTIAL


async def _head_final(request: Request, services: Services, record: UploadRecord) -> Response:
    """A final upload still being assembled: no Upload-Offset until it is a file."""
    headers = {
        "Cache-Control": "no-store",
        "Upload-Length": str(record.length),
        "Upload-Concat": _concat_header(services, request, record),
        **_expires(record),
    }
    file = await _assembly(services, record, HEAD_ASSEMBLY_WAIT)
    if file is not None:
        headers.update(_file_headers(file))
    else:
        headers["Retry-After"] = "1"
    return _reply(200, headers)


async def head(request: Request, services: Services) -> Response:
    _check_version(request)
    link = check_link(request)
    upload_id = request.path_params["upload_id"]
    headers = {"Cache-Control": "no-store"}
    try:
        record = await _load(services, link, upload_id)
    except GatewayError as exc:
        if exc.code is not Code.NOT_FOUND:
            raise
        file = await _finished(services, link, upload_id)
        if file is None:
            raise
        headers.update({"Upload-Length": str(file.size), **_file_headers(file)})
        return _reply(200, headers)
    if record.concat == FINAL:
        return await _head_final(request, services, record)
    offset = await services.engine.offset(record)
    headers["Upload-Offset"] = str(offset)
    if record.concat is not None:
        headers["Upload-Concat"] = _concat_header(services, request, record)
    if record.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(record.length)
    if record.metadata:
        headers["Upload-Metadata"] = tus_headers.format_metadata(
            {k: v.encode() for k, v in record.metadata.items()}
        )
    headers.update(_expires(record))
    return _reply(200, headers)


async def patch(request: Request, services: Services) -> Response:
    _check_version(request)
    link = check_link(request)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != OFFSET_TYPE:
        raise GatewayError(Code.UNSUPPORTED_MEDIA, f"A PATCH body must be {OFFSET_TYPE}.")
    offset = _header_number(request, "upload-offset")
    if offset is None:
        raise _bad("Upload-Offset is required.")
    length = _header_number(request, "upload-length")
    upload_id = request.path_params["upload_id"]
    try:
        record = await _load(services, link, upload_id)
    except GatewayError as exc:
        if exc.code is not Code.NOT_FOUND:
            raise
        file = await _finished(services, link, upload_id)
        if file is None:
            raise
        if offset == file.size and not _has_body(request):
            return _reply(204, _file_headers(file))
        raise _complete(file) from None
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
    return _reply(204, _progress_headers(record, progress))


def _complete(file: FileRecord) -> GatewayError:
    return GatewayError(
        Code.OFFSET_MISMATCH,
        "This upload is already complete.",
        headers={"Upload-Offset": str(file.size)},
    )


async def delete(request: Request, services: Services) -> Response:
    _check_version(request)
    link = check_link(request)
    upload_id = request.path_params["upload_id"]
    try:
        record = await _load(services, link, upload_id)
    except GatewayError as exc:
        if exc.code is Code.NOT_FOUND and await _finished(services, link, upload_id):
            raise GatewayError(
                Code.FORBIDDEN, "This upload is complete and was delivered; it cannot be removed."
            ) from None
        raise
    await services.engine.terminate(record)
    services.event("upload_terminated", {"upload_id": record.id, "ticket": link.ticket})
    return _reply(204)


_COLLECTION: dict[str, Handler] = {"OPTIONS": options, "POST": create}
_UPLOAD: dict[str, Handler] = {"OPTIONS": options, "HEAD": head, "PATCH": patch, "DELETE": delete}


def _endpoint(table: dict[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        services = services_of(request)
        method = _method(request)
        try:
            handler = table.get(method)
            if handler is None:
                raise GatewayError(
                    Code.BAD_REQUEST,
                    "Method not allowed.",
                    status=405,
                    headers={"Allow": ", ".join(table)},
                )
            return await handler(request, services)
        except GatewayError as exc:
            return _tus_error(exc)
        except ClientDisconnect:
            raise
        except StorageError as exc:
            return _tus_error(storage_unavailable(request, exc))
        except Exception:
            log.exception("unhandled error on tus %s %s", method, request.url.path)
            return _tus_error(GatewayError(Code.INTERNAL))

    return endpoint


_ROUTE_METHODS = ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"]

routes = [
    Route("/u/{token}/tus", _endpoint(_COLLECTION), methods=_ROUTE_METHODS),
    Route("/u/{token}/tus/", _endpoint(_COLLECTION), methods=_ROUTE_METHODS),
    Route("/u/{token}/tus/{upload_id}", _endpoint(_UPLOAD), methods=_ROUTE_METHODS),
]
