"""A request's bytes into parts: buffering, hashing in order, uploading, committing.

The writer copies the body's chunks into part buffers taken from the memory
budget, hashes full buffers in order in a worker thread, uploads them as
multipart parts (several in flight) and, when the body ends, either finishes
the file or keeps what it has: full parts stay in the multipart upload
(committed in the upload's record) and the remainder becomes the tail object.
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
from gateway.uploads.partsize import TooLargeForBudget, part_for_request, plan_parts
from gateway.uploads.records import FileRecord, UploadRecord

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
    if record.multipart_id is None and stored.tail is None:
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
    plan), so only an upload with no multipart upload and no tail may change it.
    """
    try:
        plan = plan_parts(record.length, intake.budget.limit, part_for_request(expect))
    except TooLargeForBudget:
        return
    if plan != record.plan:
        record.plan = plan
        await intake.save(record)


class PartWriter:
    """The per-request machinery: buffers, in-flight parts, hashing."""

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
        self.offset = stored.offset
        self.number = self.first = len(stored.parts) + 1
        self.hash_ok = True  # False once a failure may have left the running hash out of step
        # Parts are committed (counted) as they land, unless a checksum must judge them first.
        self.commit_as_we_go = checksum is None
        self.committing = asyncio.Lock()
        self.committed_bytes = sum(p.size for p in stored.parts)
        self.hasher = OrderedHasher(intake.hashes.take(record.id, stored.offset))
        self.request_hash = checksum() if checksum is not None else None
        self.buffer: Buffer | None = None
        self.view: memoryview | None = None
        self.fill = 0
        self.hashed_to = 0  # bytes of the current buffer already hashed (a carried tail)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(
            parts_in_flight(intake.budget.limit, record.plan.size_of(self.first))
        )
        self.failure: BaseException | None = None
        self.key = records.data_key(record.id)
        self.part_start = sum(p.size for p in stored.parts)  # offset of the buffer's first byte

    async def start(self) -> None:
        await self._new_buffer()
        if self.tail:
            assert self.view is not None
            self.view[: len(self.tail)] = self.tail
            self.fill = self.hashed_to = len(self.tail)

    async def _new_buffer(self) -> None:
        size = self.record.plan.size_of(self.number)
        if self.record.length is not None:
            # The last part needs only what is left: small files take small buffers.
            size = max(1, min(size, self.record.length - self.part_start))
        self.buffer = await self.intake.budget.acquire(size)
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
        if self.record.multipart_id is None:
            self.record.multipart_id = await self.store.create_multipart(
                self.key, self.record.content_type
            )
            await self.intake.save(self.record)
        return self.record.multipart_id

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
        await self._ship(buffer, view, fill, hashed_to, self.number)
        # Drop our references before waiting for the next buffer: an upload waiting for
        # budget must not keep the part it shipped (and released) mapped.
        del buffer, view
        self.number += 1
        self.part_start += fill
        await self._new_buffer()

    async def _ship(
        self, buffer: Buffer, view: memoryview, fill: int, hashed_to: int, number: int
    ) -> None:
        """Upload ``buffer`` as part ``number`` in the background; the buffer is ours now."""
        try:
            upload_id = await self._ensure_multipart()
            hashed = self.hasher.feed(view[hashed_to:fill])
            await self.slots.acquire()
        except BaseException:
            self.hash_ok = False
            self.intake.budget.release(len(buffer), None)
            raise

        async def run() -> None:
            try:
                part = await self.store.upload_part(self.key, upload_id, number, view[:fill])
                self.parts.append(part)
                await hashed
                if self.commit_as_we_go:
                    await self._commit(final=False)
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
            if self.tail is not None and previous < self.first <= count:
                await self.store.delete(records.tail_key(self.record.id, self.first))

    async def _settle(self) -> None:
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        if self.failure is not None:
            raise GatewayError(Code.STORAGE_UNAVAILABLE) from self.failure

    def _release_buffer(self) -> None:
        if self.buffer is not None:
            self.intake.budget.release(len(self.buffer), self.buffer)
            self.buffer = None
            self.view = None

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
                return (await offsets.stored(self.store, self.record)).offset
            settled = True
            try:
                await self._settle()
            except GatewayError:
                settled = False
            await self._commit(final=True)
            count = self.record.committed
            offset = sum(p.size for p in self.parts if p.number <= count)
            if settled and count == self.number - 1 and self.view is not None and self.fill > 0:
                await self.hasher.feed(self.view[self.hashed_to : self.fill])
                await self.store.put(
                    records.tail_key(self.record.id, self.number), bytes(self.view[: self.fill])
                )
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
            if self.record.multipart_id is None and self.number == 1:
                await self.hasher.feed(self.view[self.hashed_to : self.fill])
                etag = await self.store.put(
                    self.key, bytes(self.view[: self.fill]), content_type=self.record.content_type
                )
                size = self.fill
            else:
                if self.fill > 0 or not self.parts:
                    buffer, view = self.buffer, self.view
                    assert buffer is not None and view is not None
                    self.buffer = self.view = None  # ownership passes to the part task
                    await self._ship(buffer, view, self.fill, self.hashed_to, self.number)
                    del buffer, view
                await self._settle()
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
