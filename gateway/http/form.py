"""multipart/form-data parsed as a stream (python-multipart), one file at a time.

Starlette's ``request.form()`` spools files to temporary files; this does not.
The parser's callbacks collect events per body chunk; each file part's bytes
go to the upload engine through a small bounded queue, so a slow store slows
the client (backpressure) and memory stays at one body chunk per part.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from email.message import Message

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from gateway.errors import Code, GatewayError
from gateway.filenames import clean_filename, guess_content_type
from gateway.services import Services
from gateway.signing import UploadLink
from gateway.uploads.engine import Progress, WriteRequest
from gateway.uploads.records import FileRecord

MAX_PARTS = 200
MAX_FIELD_BYTES = 64 * 1024
QUEUE_DEPTH = 8


def _boundary(content_type: str) -> bytes:
    message = Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise GatewayError(Code.BAD_REQUEST, "The multipart boundary is missing or invalid.")
    return boundary.encode("latin-1")


def _disposition(value: bytes) -> tuple[str | None, str | None]:
    message = Message()
    message["content-disposition"] = value.decode("latin-1")
    name = message.get_param("name", header="content-disposition")
    filename = message.get_filename()
    if filename is not None:
        with contextlib.suppress(UnicodeError):
            filename = filename.encode("latin-1").decode("utf-8")
    return (name if isinstance(name, str) else None), filename


class _Events:
    """Collects what the parser saw in one chunk."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._field = b""
        self._value = b""

    def on_part_begin(self) -> None:
        self.items.append(("begin", b""))

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self.items.append(("header", self._field.lower() + b"\0" + self._value))
        self._field = self._value = b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.items.append(("data", bytes(data[start:end])))

    def on_part_end(self) -> None:
        self.items.append(("end", b""))


async def stream_form(
    services: Services, link: UploadLink, content_type: str, body: AsyncIterator[bytes]
) -> AsyncIterator[FileRecord]:
    """Yield a finished FileRecord for every file part, as each one completes."""
    events = _Events()
    parser = MultipartParser(
        _boundary(content_type),
        {
            "on_part_begin": events.on_part_begin,
            "on_header_field": events.on_header_field,
            "on_header_value": events.on_header_value,
            "on_header_end": events.on_header_end,
            "on_part_data": events.on_part_data,
            "on_part_end": events.on_part_end,
        },
        max_header_count=16,
        max_header_size=8192,
    )
    parts = 0
    part_headers: dict[bytes, bytes] = {}
    queue: asyncio.Queue[bytes | None] | None = None
    task: asyncio.Task[Progress] | None = None
    field_bytes = 0

    async def feed() -> AsyncIterator[bytes]:
        assert queue is not None
        while (item := await queue.get()) is not None:
            yield item

    async def start_file(filename: str, ctype: str | None) -> None:
        nonlocal queue, task
        name = clean_filename(filename)
        record = await services.engine.create(
            link,
            filename=name,
            length=None,
            protocol="form",
            content_type=guess_content_type(name, ctype),
        )
        services.upload_started(record)
        queue = asyncio.Queue(QUEUE_DEPTH)
        task = asyncio.create_task(
            services.engine.write(record, WriteRequest(0, feed(), final=True))
        )
        task.record = record  # type: ignore[attr-defined]

    async def send(item: bytes | None) -> None:
        assert queue is not None and task is not None
        put = asyncio.ensure_future(queue.put(item))
        done, _ = await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            task.result()  # the engine stopped early: raise its error

    try:
        async for chunk in body:
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise GatewayError(Code.BAD_REQUEST, f"Malformed multipart body: {exc}") from None
            items, events.items = events.items, []
            for kind, value in items:
                if kind == "begin":
                    parts += 1
                    if parts > MAX_PARTS:
                        raise GatewayError(Code.BAD_REQUEST, f"At most {MAX_PARTS} parts per form.")
                    part_headers = {}
                    field_bytes = 0
                elif kind == "header":
                    key, _, val = value.partition(b"\0")
                    part_headers[key] = val
                    if key == b"content-disposition":
                        _, filename = _disposition(val)
                        if filename is not None:
                            ctype = part_headers.get(b"content-type")
                            await start_file(filename, ctype.decode("latin-1") if ctype else None)
                elif kind == "data":
                    if task is not None:
                        await send(value)
                    else:
                        field_bytes += len(value)
                        if field_bytes > MAX_FIELD_BYTES:
                            raise GatewayError(Code.BAD_REQUEST, "A form field is too large.")
                elif kind == "end" and task is not None:
                    await send(None)
                    progress = await task
                    task = queue = None
                    if progress.file is not None:
                        yield progress.file
        parser.finalize()
        if task is not None:
            raise GatewayError(Code.INCOMPLETE_BODY, "The form ended in the middle of a file.")
    finally:
        if task is not None:
            # The body broke off inside a file: a form upload cannot resume, so drop it.
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            record = getattr(task, "record", None)
            if record is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(services.engine.terminate(record))
            services.metrics.uploads_failed.labels("form", "incomplete").inc()
