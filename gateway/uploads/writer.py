"""A request's bytes into parts: buffering, hashing in order, uploading, committing.

The writer copies the body's chunks into part buffers taken from the memory
budget, hashes full buffers in order in a worker thread, uploads them as
multipart parts (several in flight) and, when the body ends, either finishes
the file or keeps what it has: full parts stay in the multipart upload
(committed in the upload's record) and the remainder becomes the tail object.
A part larger than a buffer is written as a segment of buffered sub-parts
and copied into place once whole (:mod:`gateway.uploads.segments`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from gateway.errors import Code, GatewayError
from gateway.store.base import StorageError
from gateway.uploads import offsets, records
from gateway.uploads.budget import Buffer
from gateway.uploads.context import Intake
from gateway.uploads.finish import Finisher
from gateway.uploads.hashing import OrderedHasher
from gateway.uploads.limit import too_large
from gateway.uploads.offsets import Stored
from gateway.uploads.partsize import TooLargeForParts, part_for_request, plan_parts
from gateway.uploads.records import FileRecord, UploadRecord
from gateway.uploads.segments import Segment, is_full, seal, stored_size

MAX_PARTS_IN_FLIGHT = 8
COMMIT_EVERY = 64 * 1024 * 1024


def parts_in_flight(budget: int, part_size: int) -> int:
    """How many parts of one upload may be uploading at once.

    Enough to keep the store busy while the next part fills (a part upload
    takes longer than receiving one), bounded so one upload cannot take the
    whole budget, and at least 2.
    """
    return max(2, min(MAX_PARTS_IN_FLIGHT, budget // max(part_size, 1) // 2))


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


class PartWriter:
    """The per-request machinery: buffers, in-flight parts, hashing.

    A part larger than a buffer is a :class:`Segment`: its buffers are its
    sub-parts, sent to the segment's own multipart upload, and once the
    segment is whole it is sealed (copied into its part) in the background
    while the next one fills; the next segment starts only once the last is
    committed, so the record names one open segment at a time. When a
    checksum must judge the request first, filled segments wait (``pending``)
    and are sealed once it has.
    """

    def __init__(
        self,
        intake: Intake,
        finisher: Finisher,
        record: UploadRecord,
        stored: Stored,
        checksum: Callable[[], object] | None,
    ) -> None:
        self.intake = intake
        self.finisher = finisher
        self.store = intake.store
        self.record = record
        self.parts = list(stored.parts)
        self.tail = stored.tail
        self.tail_key = stored.tail_key
        self.offset = stored.offset
        self.number = self.first = len(stored.parts) + 1
        self.hash_ok = True  # False once a failure may have left the running hash out of step
        # Parts are committed (counted) as they land, unless a checksum must judge them first.
        self.commit_as_we_go = checksum is None
        self.committing = asyncio.Lock()
        self.creating = asyncio.Lock()
        self.committed_bytes = sum(p.size for p in stored.parts)
        self.hasher = OrderedHasher(intake.hashes.take(record.id, stored.offset))
        self.request_hash = checksum() if checksum is not None else None
        self.buffer: Buffer | None = None
        self.view: memoryview | None = None
        self.fill = 0
        self.hashed_to = 0  # bytes of the current buffer already hashed (a carried tail)
        self.in_flight: set[asyncio.Task[None]] = set()
        plan = record.plan
        self.slots = asyncio.Semaphore(
            parts_in_flight(intake.budget.limit, plan.sub or plan.size_of(self.first))
        )
        self.failure: BaseException | None = None
        self.key = records.data_key(record.id)
        self.part_start = sum(p.size for p in stored.parts)  # offset of the buffer's first byte
        # The part being filled when it is a segment, and the sub-part being filled.
        self.segment = stored.segment
        self.sub = 0
        if self.segment is not None:
            self.sub = self.segment.committed + 1
            self.part_start += stored_size(self.segment, record)
        # What the stored tail opens: part ``first``, or its sub-part ``tail_sub`` (if not 0).
        self.tail_sub = self.sub
        self.pending: list[Segment] = []  # filled, waiting for the checksum's verdict
        self.sealing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.segment is not None and is_full(self.segment, self.record):
            # Every byte of this part is stored: a request that was sealing it ended first.
            await self._seal(self.segment)
            self.number += 1
            self._open_part()
        await self._new_buffer()
        if self.tail:
            assert self.view is not None
            self.view[: len(self.tail)] = self.tail
            self.fill = self.hashed_to = len(self.tail)

    def _open_part(self) -> None:
        """Part ``self.number`` begins: a segment when it is larger than a buffer."""
        if self.record.plan.segmented(self.number, self.record.length):
            self.segment = Segment(part=self.number, upload_id=None)
            self.sub = 1
        else:
            self.segment = None
            self.sub = 0

    async def _new_buffer(self) -> None:
        plan = self.record.plan
        if self.segment is not None:
            size = plan.sub_length(self.number, self.sub, self.record.length)
        else:
            size = plan.size_of(self.number)
            if self.record.length is not None:
                # The last part needs only what is left: small files take small buffers.
                size = min(size, self.record.length - self.part_start)
        self.buffer = await self.intake.budget.acquire(max(1, size))
        self.view = memoryview(self.buffer)
        self.fill = 0
        self.hashed_to = 0

    async def add(self, chunk: bytes) -> None:
        try:
            await self._add(chunk)
        except BaseException:
            self.hash_ok = False
            raise

    async def _add(self, chunk: bytes) -> None:
        if self.failure is not None:
            raise self.failure
        if self.request_hash is not None:
            self.request_hash.update(chunk)  # type: ignore[attr-defined]
        pos = 0
        while pos < len(chunk):
            assert self.view is not None
            room = len(self.view) - self.fill
            take = min(room, len(chunk) - pos)
            self.view[self.fill : self.fill + take] = chunk[pos : pos + take]
            self.fill += take
            pos += take
            if self.fill == len(self.view) and not self._is_last_part():
                await self._ship_full()

    async def _ensure_multipart(self) -> str:
        async with self.creating:
            if self.record.multipart_id is None:
                self.record.multipart_id = await self.store.create_multipart(
                    self.key, self.record.content_type
                )
                async with self.committing:
                    await self.intake.save(self.record)
            return self.record.multipart_id

    async def _ensure_segment(self, segment: Segment) -> str:
        if segment.upload_id is None:
            if self.sealing is not None:
                # The record names one open segment: the one before is committed first.
                await self.sealing
            segment.upload_id = await self.store.create_multipart(
                records.segment_key(self.record.id, segment.part), self.record.content_type
            )
            segment.created = True
            if self.commit_as_we_go:
                async with self.committing:
                    self.record.segment_id = segment.upload_id
                    self.record.segment_committed = 0
                    await self.intake.save(self.record)
        return segment.upload_id

    def _is_last_part(self) -> bool:
        """The buffer holds the file's last bytes: finish() ships it (or PUTs it whole)."""
        length = self.record.length
        return length is not None and self.part_start + self.fill >= length

    async def _ship_full(self) -> None:
        assert self.buffer is not None and self.view is not None
        # The buffer passes to _ship (and its part task) before any wait, so a cancellation
        # from here on can never save or release it a second time.
        buffer, view, fill, hashed_to = self.buffer, self.view, self.fill, self.hashed_to
        self.buffer = self.view = None
        self.fill = self.hashed_to = 0
        segment = self.segment
        await self._ship(buffer, view, fill, hashed_to, self.sub or self.number, segment)
        # Drop our references before waiting for the next buffer: an upload waiting for
        # budget must not keep the part it shipped (and released) mapped.
        del buffer, view
        self.part_start += fill
        if segment is not None:
            self.sub += 1
            if self.sub <= self.record.plan.sub_count(self.number, self.record.length):
                await self._new_buffer()
                return
            self._segment_filled(segment)
        self.number += 1
        self._open_part()
        await self._new_buffer()

    def _segment_filled(self, segment: Segment) -> None:
        if not self.commit_as_we_go:
            self.pending.append(segment)
            return
        before = self.sealing

        async def run() -> None:
            try:
                if before is not None:
                    await before
                await self._seal(segment)
            except BaseException as exc:
                self.failure = self.failure or exc
                raise

        self.sealing = task = asyncio.create_task(run())
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _seal(self, segment: Segment) -> None:
        """Copy a whole segment into its part, commit the part, delete the segment."""
        if segment.tasks:
            await asyncio.gather(*list(segment.tasks), return_exceptions=True)
        if self.failure is not None:
            raise self.failure
        upload_id = await self._ensure_multipart()
        part = await seal(self.store, self.record, segment, upload_id)
        self.parts.append(part)
        async with self.committing:
            self.record.committed = max(self.record.committed, segment.part)
            self.record.segment_id = None
            self.record.segment_committed = 0
            self.committed_bytes = sum(p.size for p in self.parts if p.number <= segment.part)
            await self.intake.save(self.record)
        await self.store.delete(records.segment_key(self.record.id, segment.part))
        if self.tail_key is not None and self.first == segment.part:
            await self._drop_tail()

    async def _ship(
        self,
        buffer: Buffer,
        view: memoryview,
        fill: int,
        hashed_to: int,
        number: int,
        segment: Segment | None = None,
    ) -> None:
        """Upload ``buffer`` as part ``number`` (of ``segment``, when given) in the
        background; the buffer is ours now."""
        try:
            if segment is None:
                key = self.key
                upload_id = await self._ensure_multipart()
            else:
                key = records.segment_key(self.record.id, segment.part)
                upload_id = await self._ensure_segment(segment)
            hashed = self.hasher.feed(view[hashed_to:fill])
            await self.slots.acquire()
        except BaseException:
            self.hash_ok = False
            self.intake.budget.release(len(buffer), None)
            raise

        async def run() -> None:
            try:
                part = await self.store.upload_part(key, upload_id, number, view[:fill])
                if segment is None:
                    self.parts.append(part)
                else:
                    segment.subs.append(part)
                await hashed
                if self.commit_as_we_go:
                    if segment is None:
                        await self._commit(final=False)
                    else:
                        await self._commit_segment(segment, final=False)
            except BaseException as exc:
                self.failure = self.failure or exc
                raise
            finally:
                self.slots.release()
                # The buffer goes back (and may be reused) only once nothing reads it.
                if hashed.done():
                    self.intake.budget.release(len(buffer), buffer)
                else:
                    hashed.add_done_callback(
                        lambda _: self.intake.budget.release(len(buffer), buffer)
                    )

        task = asyncio.create_task(run())
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        if segment is not None:
            segment.tasks.add(task)
            task.add_done_callback(segment.tasks.discard)

    def _contiguous(self) -> int:
        numbers = {p.number for p in self.parts}
        count = self.first - 1
        while count + 1 in numbers:
            count += 1
        return count

    async def _commit(self, *, final: bool) -> None:
        """Record how many parts count. Mid-request this happens every 64 MiB or so, so a
        process killed mid-upload loses little; at the end it always happens."""
        async with self.committing:
            count = self._contiguous()
            if count <= self.record.committed:
                return
            size = sum(p.size for p in self.parts if p.number <= count)
            if not final and size - self.committed_bytes < COMMIT_EVERY:
                return
            previous = self.record.committed
            self.record.committed = count
            self.committed_bytes = size
            await self.intake.save(self.record)
            # A tail that opened a part now committed is no longer needed.
            if self.tail_key is not None and not self.tail_sub and previous < self.first <= count:
                await self._drop_tail()

    async def _commit_segment(self, segment: Segment, *, final: bool) -> None:
        """Record how many sub-parts of the open segment count (as :meth:`_commit`)."""
        async with self.committing:
            if self.record.committed != segment.part - 1:
                return  # a segment before it is not sealed yet
            count = segment.contiguous()
            if count <= segment.committed:
                return
            if not final and segment.size_of(count) - segment.size_of(segment.committed) < (
                COMMIT_EVERY
            ):
                return
            segment.committed = count
            self.record.segment_id = segment.upload_id
            self.record.segment_committed = count
            await self.intake.save(self.record)
            if self.tail_key and self.first == segment.part and 0 < self.tail_sub <= count:
                await self._drop_tail()

    async def _drop_tail(self) -> None:
        """The tail the request started from is part of something committed now."""
        if self.tail_key is not None:
            key, self.tail_key = self.tail_key, None
            await self.store.delete(key)

    async def _settle(self) -> None:
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        if self.in_flight:  # a seal started while parts were settling
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        if self.failure is not None:
            if isinstance(self.failure, GatewayError):
                raise self.failure
            raise GatewayError(Code.STORAGE_UNAVAILABLE) from self.failure

    def _release_buffer(self) -> None:
        if self.buffer is not None:
            self.intake.budget.release(len(self.buffer), self.buffer)
            self.buffer = None
            self.view = None

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
