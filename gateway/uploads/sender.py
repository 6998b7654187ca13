"""A request's bytes into parts: buffering, hashing in order, uploading, committing.

The sender copies the body's chunks into part buffers taken from the memory
budget, hashes full buffers in order in a worker thread and uploads them as
multipart parts (several in flight), committing them in the upload's record
as they land. A part larger than a buffer is written as a segment of
buffered sub-parts and copied into place once whole
(:mod:`gateway.uploads.segments`). How a request ends (kept as parts and a
tail, or finished) is :mod:`gateway.uploads.writer`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.errors import Code, GatewayError
from gateway.uploads import records
from gateway.uploads.budget import Buffer
from gateway.uploads.context import Intake
from gateway.uploads.finish import Finisher
from gateway.uploads.hashing import OrderedHasher
from gateway.uploads.offsets import Stored
from gateway.uploads.records import UploadRecord
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


class PartSender:
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
