"""One request's bytes for an upload: checked, sent as parts, then kept or finished.

:func:`write_locked` checks the request against what is stored, feeds its
body to a :class:`PartWriter` (the part sender of :mod:`gateway.uploads.sender`)
and, when the body ends, either finishes the file or keeps what it has: full
parts stay in the multipart upload (committed in the upload's record) and
the remainder becomes the tail object, so the next request resumes there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from gateway.errors import Code, GatewayError
from gateway.store.base import StorageError
from gateway.uploads import offsets, records
from gateway.uploads.context import Intake
from gateway.uploads.finish import Finisher
from gateway.uploads.limit import too_large
from gateway.uploads.partsize import TooLargeForParts, part_for_request, plan_parts
from gateway.uploads.records import FileRecord, UploadRecord
from gateway.uploads.sender import PartSender


@dataclass(frozen=True)
class Progress:
    """Where an upload stands after a request."""

    offset: int
    file: FileRecord | None = None


@dataclass(frozen=True)
class WriteRequest:
    """One request's bytes for an upload.

    ``offset`` is where the client says they start. ``final`` says the body
    ends the file (its length becomes the offset reached). ``expect`` is how
    many bytes the request declared: fewer is an incomplete body, more is
    refused. ``checksum`` makes a fresh hash object fed with the request's
    bytes, and ``verify`` judges it before anything from the request is kept
    past the last stored part (tus checksum extension).
    """

    offset: int
    chunks: AsyncIterator[bytes]
    final: bool = False
    expect: int | None = None
    checksum: Callable[[], object] | None = None
    verify: Callable[[object], None] | None = None


async def write_locked(
    intake: Intake, finisher: Finisher, record: UploadRecord, request: WriteRequest
) -> Progress:
    """Append the request's bytes to the upload (the caller holds its lease)."""
    stored = await offsets.stored(intake.store, record)
    if stored.completed is not None:
        file = await finisher.recover(record, stored.completed)
        if request.offset == stored.offset and not request.expect:
            return Progress(offset=stored.offset, file=file)
    if request.offset != stored.offset or stored.completed is not None:
        raise GatewayError(
            Code.OFFSET_MISMATCH,
            f"The upload is at byte {stored.offset}, not {request.offset}.",
            headers={"Upload-Offset": str(stored.offset)},
        )
    limit = record.length if record.length is not None else record.max_size
    if request.expect is not None and request.offset + request.expect > limit:
        if record.length is None:
            raise too_large(None, limit, "this upload")
        raise GatewayError(Code.BODY_TOO_LONG, "The body would run past the upload's length.")
    if record.multipart_id is None and record.segment_id is None and stored.tail is None:
        await fit_parts(intake, record, request.expect)
    writer = PartWriter(intake, finisher, record, stored, request.checksum)
    received = await _receive(writer, record, request, limit)
    reached = request.offset + received
    if request.final and record.length is None:
        record.length = reached
        await intake.save(record)
    if record.length is not None and reached == record.length:
        return Progress(offset=reached, file=await _finish(writer))
    return Progress(offset=await writer.suspend(keep=True))


async def _receive(
    writer: PartWriter, record: UploadRecord, request: WriteRequest, limit: int
) -> int:
    """Feed the body to the writer; on any failure keep what may be kept, then raise."""
    received = 0
    try:
        await writer.start()
        async for chunk in request.chunks:
            if not chunk:
                continue
            if request.offset + received + len(chunk) > limit:
                if record.length is None:
                    raise too_large(None, record.max_size, "this upload")
                raise GatewayError(Code.BODY_TOO_LONG, "The body runs past the upload's length.")
            received += len(chunk)
            await writer.add(chunk)
        if request.expect is not None and received != request.expect:
            raise GatewayError(
                Code.INCOMPLETE_BODY,
                f"Received {received} of the {request.expect} bytes declared.",
            )
        if request.verify is not None:
            request.verify(writer.request_hash)
    except GatewayError as exc:
        # A checksum mismatch discards everything this request sent; anything else keeps
        # what arrived intact (resumable).
        keep = exc.code is not Code.CHECKSUM_MISMATCH
        with contextlib.suppress(Exception):
            await asyncio.shield(writer.suspend(keep=keep))
        raise
    except BaseException:
        # A broken connection keeps everything that arrived (resumable), unless the
        # request carried a checksum that can now never be checked.
        with contextlib.suppress(Exception):
            await asyncio.shield(writer.suspend(keep=request.verify is None))
        raise
    return received


async def _finish(writer: PartWriter) -> FileRecord | None:
    try:
        return await writer.finish()
    except (GatewayError, StorageError):
        # The last part or the completion failed (storage outlasted its retries):
        # commit the parts that did land, so a resumed upload starts after them.
        with contextlib.suppress(Exception):
            await asyncio.shield(writer.suspend(keep=True))
        raise


async def fit_parts(intake: Intake, record: UploadRecord, expect: int | None) -> None:
    """Before any byte is stored, size the parts for the first request (under the lease).

    The plan is fixed from the first byte on (part ``n``'s size is a function of the
    plan), so only an upload with no multipart upload, no segment and no tail may change it.
    """
    try:
        plan = plan_parts(
            record.length, intake.budget.limit, part_for_request(expect), intake.limit.parts
        )
    except TooLargeForParts:
        return
    if plan != record.plan:
        record.plan = plan
        await intake.save(record)


class PartWriter(PartSender):
    """A part sender that also ends its request: kept as parts and a tail, or finished."""

    async def _abort_unrecorded(self) -> None:
        """Abort the segments this request started and never recorded."""
        segments = [*self.pending, *([self.segment] if self.segment is not None else [])]
        for segment in segments:
            if segment.created and segment.upload_id != self.record.segment_id:
                key = records.segment_key(self.record.id, segment.part)
                await self.store.abort_multipart(key, segment.upload_id or "")

    async def suspend(self, *, keep: bool) -> int:
        """Stop without finishing and return the offset that now counts.

        With ``keep`` the parts that landed are committed and the remainder
        becomes the tail. Without it (a failed checksum) nothing this request
        sent counts: the commit stays where it was and so does the old tail.
        """
        self.intake.hashes.drop(self.record.id)
        try:
            if not keep:
                with contextlib.suppress(GatewayError):
                    await self._settle()
                with contextlib.suppress(Exception):
                    await self._abort_unrecorded()
                return (await offsets.stored(self.store, self.record)).offset
            settled = True
            try:
                await self._settle()
            except GatewayError:
                settled = False
            if settled:
                while self.pending:  # judged now: seal them in order
                    await self._seal(self.pending[0])
                    self.pending.pop(0)
            await self._commit(final=True)
            segment = self.segment
            if segment is not None:
                await self._commit_segment(segment, final=True)
            if self.pending or (segment is not None and self.record.committed != segment.part - 1):
                # A segment before the open one could not be sealed: what counts is what
                # the store holds.
                await self._settle()
                return (await offsets.stored(self.store, self.record)).offset
            count = self.record.committed
            offset = sum(p.size for p in self.parts if p.number <= count)
            in_place = count == self.number - 1
            if segment is not None:
                offset += segment.size_of(segment.committed)
                in_place = in_place and segment.committed == self.sub - 1
            if settled and in_place and self.view is not None and self.fill > 0:
                await self.hasher.feed(self.view[self.hashed_to : self.fill])
                if segment is not None:
                    key = records.sub_tail_key(self.record.id, self.number, self.sub)
                else:
                    key = records.tail_key(self.record.id, self.number)
                await self.store.put(key, bytes(self.view[: self.fill]))
                offset += self.fill
            await self.hasher.drain()
            if settled and self.hash_ok and self.hasher.state is not None:
                self.intake.hashes.put(self.record.id, offset, self.hasher.state)
            if not settled:
                await self._settle()  # re-raise the storage failure for the caller
            return offset
        finally:
            self._release_buffer()

    async def finish(self) -> FileRecord | None:
        """The body completed the file: last part, assemble, record, hand to delivery."""
        assert self.view is not None
        try:
            if self.record.multipart_id is None and self.number == 1 and self.segment is None:
                await self.hasher.feed(self.view[self.hashed_to : self.fill])
                etag = await self.store.put(
                    self.key, bytes(self.view[: self.fill]), content_type=self.record.content_type
                )
                size = self.fill
            else:
                segment = self.segment
                if self.fill > 0 or not self.parts:
                    buffer, view = self.buffer, self.view
                    assert buffer is not None and view is not None
                    self.buffer = self.view = None  # ownership passes to the part task
                    number = self.sub if segment is not None else self.number
                    await self._ship(buffer, view, self.fill, self.hashed_to, number, segment)
                    del buffer, view
                await self._settle()
                while self.pending:
                    await self._seal(self.pending.pop(0))
                if segment is not None:
                    await self._seal(segment)
                self.parts.sort(key=lambda p: p.number)
                assert self.record.multipart_id is not None
                etag = await self.store.complete_multipart(
                    self.key, self.record.multipart_id, self.parts
                )
                size = sum(p.size for p in self.parts)
            await self.hasher.drain()
        finally:
            self._release_buffer()
        digest = self.hasher.hexdigest() if self.hash_ok else None
        return await self.finisher.record_file(self.record, size, etag, digest)
