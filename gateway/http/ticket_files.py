"""A ticket's files for staff: the list with fresh download links, and all of them as a ZIP.

``GET /api/tickets/{id}/files`` lists every stored file of the ticket (the
``by-ticket/`` index in the store) with a freshly signed download link for
each file that may be downloaded (not quarantined, not still being scanned,
not past retention). ``GET /api/tickets/{id}/files.zip`` streams those same
files as one ZIP: stored (no compression: uploads are mostly compressed
already, and the CRC is the only per-byte cost), ZIP64 where sizes need it,
with a ``Content-Length`` known before the first byte. Bytes flow from the
store a megabyte at a time; nothing is held whole.

The ZIP is written by ``zipstream-ng``, which is synchronous: Starlette runs
its iterator in a worker thread, and each member's bytes are pulled from the
store's async reader on the event loop through an anyio portal.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio.from_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from zipstream import ZipStream

from gateway.errors import Code, GatewayError
from gateway.filenames import content_disposition, unique_names
from gateway.http.context import services_of
from gateway.http.downloads import refusal
from gateway.http.staff import require_staff
from gateway.metrics import Metrics
from gateway.services import Services
from gateway.tickets.local import valid_ticket
from gateway.uploads.records import FileRecord


def _ticket(request: Request) -> str:
    require_staff(request)
    ticket: str = request.path_params["ticket"]
    if not valid_ticket(ticket):
        raise GatewayError(Code.NOT_FOUND, "No such ticket.")
    return ticket


def downloadable(file: FileRecord, now: float) -> bool:
    """Whether staff get a link to ``file``: not refused, and its scan has finished."""
    return file.status != "scanning" and refusal(file, now) is None


async def list_files(request: Request) -> Response:
    services = services_of(request)
    ticket = _ticket(request)
    now = services.links.clock()
    listing: list[dict[str, Any]] = []
    for file in await services.records.tickets.files(ticket):
        url: str | None = None
        expires_at: int | None = None
        if downloadable(file, now):
            url, expires_at = services.links.download_url(file.file_id, file.filename)
        listing.append(
            {
                "file_id": file.file_id,
                "filename": file.filename,
                "size": file.size,
                "sha256": file.sha256,
                "route": file.route,
                "status": file.status,
                "scan": file.scan,
                "created_at": file.created_at,
                "download_url": url,
                "download_expires_at": expires_at,
            }
        )
    return JSONResponse({"ticket": ticket, "files": listing})


class _Member:
    """One file's bytes for zipstream-ng: a sync iterator over the store's async reader.

    Iterated in a worker thread (Starlette runs sync iterators there); each
    chunk is fetched on the event loop through the thread's anyio portal.
    """

    def __init__(self, services: Services, file: FileRecord, metrics: Metrics) -> None:
        self.services = services
        self.file = file
        self.metrics = metrics

    def __iter__(self) -> Iterator[bytes]:
        reader: AsyncIterator[bytes] = self.services.records.files.read(
            self.file.file_id, 0, self.file.size
        )
        sent = 0

        async def following() -> bytes | None:
            try:
                return await reader.__anext__()
            except StopAsyncIteration:
                return None

        try:
            while (chunk := anyio.from_thread.run(following)) is not None:
                sent += len(chunk)
                self.metrics.download_bytes.inc(len(chunk))
                yield chunk
        finally:
            aclose = getattr(reader, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to close
                    anyio.from_thread.run(aclose)
        if sent != self.file.size:
            # The ZIP's sizes were announced up front: a short object cannot be papered over.
            raise RuntimeError(f"file {self.file.file_id} is {sent} bytes, not {self.file.size}")


async def zip_files(request: Request) -> Response:
    services = services_of(request)
    ticket = _ticket(request)
    now = services.links.clock()
    files = [f for f in await services.records.tickets.files(ticket) if downloadable(f, now)]
    if not files:
        raise GatewayError(Code.NOT_FOUND, "This ticket has no files to download.")
    archive = ZipStream(sized=True)
    for file, name in zip(files, unique_names([f.filename for f in files]), strict=True):
        archive.add(_Member(services, file, services.metrics), name, size=file.size)
    length = len(archive)
    services.metrics.downloads.inc()
    services.event(
        "downloaded_zip",
        {"ticket": ticket, "files": [f.file_id for f in files], "bytes": length,
         "from": request.client.host if request.client else None},
    )  # fmt: skip
    headers = {
        "Content-Length": str(length),
        "Content-Disposition": content_disposition(f"ticket-{ticket}-files.zip"),
        "Cache-Control": "private, no-store",
    }
    return StreamingResponse(iter(archive), media_type="application/zip", headers=headers)


routes = [
    Route("/api/tickets/{ticket}/files", list_files, methods=["GET"]),
    Route("/api/tickets/{ticket}/files.zip", zip_files, methods=["GET"]),
]
