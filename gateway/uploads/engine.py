"""The intake engine: one front behind raw PUT, form POST and tus.

A request hands the engine its upload and a :class:`WriteRequest` (an async
iterator of body chunks and the offset it claims to start at). The work is
done by the modules beside this one: :mod:`offsets` says what is stored,
:mod:`writer` turns the bytes into parts, :mod:`finish` records a complete
file and :mod:`concat` joins tus partial uploads. The offset is always
derived from the store (parts + tail), never from memory.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from gateway.errors import Code, GatewayError
from gateway.signing import UploadLink
from gateway.store.base import ObjectStore
from gateway.uploads import offsets, records
from gateway.uploads.budget import BufferBudget
from gateway.uploads.concat import Assembler
from gateway.uploads.context import Intake, OnFinished
from gateway.uploads.finish import Finisher
from gateway.uploads.limit import SizeLimit, size_limit, too_large
from gateway.uploads.partsize import MAX_PART, MAX_PARTS, TooLargeForParts, plan_parts
from gateway.uploads.records import PARTIAL, UploadRecord
from gateway.uploads.writer import Progress, WriteRequest, write_locked

__all__ = ["Progress", "UploadEngine", "WriteRequest", "too_large"]


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


class UploadEngine:
    def __init__(
        self,
        store: ObjectStore,
        budget: BufferBudget,
        *,
        attachment_max: int,
        on_finished: OnFinished,
        clock: Callable[[], float] = time.time,
        lease_ttl: float = 10.0,
        scan_required: bool = False,
        lease_wait: float = 0.0,
        limit: SizeLimit | None = None,
    ) -> None:
        # The largest file this process takes (computed once by the caller).
        # Without one given, only the part limits bound it.
        limit = limit or size_limit(max_upload=MAX_PART * MAX_PARTS, buffer_memory=budget.limit)
        self.intake = Intake(
            store=store,
            budget=budget,
            limit=limit,
            attachment_max=attachment_max,
            on_finished=on_finished,
            clock=clock,
            lease_ttl=lease_ttl,
            lease_wait=lease_wait,
            scan_required=scan_required,
        )
        self.finisher = Finisher(self.intake)
        self.assembler = Assembler(self, self.intake, self.finisher)
        self.budget = budget
        self.limit = limit
        self.hashes = self.intake.hashes
        # tus concatenation (claims, background assembly, its keeper) is the assembler's.
        self.concatenate = self.assembler.concatenate
        self.joined = self.assembler.joined
        self.start_assembly = self.assembler.start_assembly
        self.start_keeper = self.assembler.start_keeper
        self.resume_assemblies = self.assembler.resume_assemblies

    @property
    def store(self) -> ObjectStore:
        return self.intake.store

    @store.setter
    def store(self, value: ObjectStore) -> None:
        self.intake.store = value

    @property
    def attachment_max(self) -> int:
        return self.intake.attachment_max

    @attachment_max.setter
    def attachment_max(self, value: int) -> None:
        self.intake.attachment_max = value

    # -- records ---------------------------------------------------------------

    async def create(
        self,
        link: UploadLink,
        *,
        filename: str,
        length: int | None,
        protocol: str,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
        concat: str | None = None,
        sources: list[str] | None = None,
        scan_required: bool = False,
    ) -> UploadRecord:
        """Record a new upload (no bytes yet).

        Its ``max_size`` is what it may really reach: the link's cap, at most the
        gateway's largest file, and for a body of unknown length at most what parts
        that grow as it arrives can hold.
        """
        largest = self.limit.cap(link.max_size)
        if length is not None and length > largest:
            who = "this link" if link.max_size < self.limit.largest else "this gateway"
            raise too_large(length, largest, who)
        try:
            plan = plan_parts(length, self.budget.limit, parts=self.limit.parts)
        except TooLargeForParts:  # pragma: no cover - the limit is computed from the same plan
            raise too_large(length, largest) from None
        now = self.intake.clock()
        record = UploadRecord(
            id=records.new_id(),
            ticket=link.ticket,
            link_id=link.link_id,
            filename=filename,
            length=length,
            max_size=largest if length is not None else min(largest, self.limit.streamed),
            plan=plan,
            created_at=now,
            expires_at=float(link.expires_at),
            protocol=protocol,
            content_type=content_type,
            metadata=dict(metadata or {}),
            concat=concat,
            sources=list(sources or []),
            scan_required=self.intake.scan_required or scan_required,
        )
        await self.intake.save(record)
        return record

    async def load(self, upload_id: str) -> UploadRecord:
        return await self.intake.load(upload_id)

    async def declare_length(self, record: UploadRecord, length: int) -> None:
        """Fix the length of an upload created without one (tus Upload-Defer-Length)."""
        if record.length is not None:
            if record.length != length:
                raise GatewayError(Code.BAD_REQUEST, "The upload's length is already set.")
            return
        if length > record.max_size:
            raise too_large(length, record.max_size, "this upload")
        stored = await offsets.stored(self.store, record)
        if length < stored.offset:
            raise GatewayError(Code.BAD_REQUEST, "The length is smaller than what was received.")
        record.length = length
        await self.intake.save(record)

    # -- offsets and writing -------------------------------------------------------

    async def offset(self, record: UploadRecord) -> int:
        stored = await offsets.stored(self.store, record)
        if stored.completed is not None:
            await self.finisher.recover(record, stored.completed)
        elif record.length is not None and stored.offset == record.length:
            # Every byte is stored but the upload was never assembled (its last step failed):
            # finish it now, since no client request can carry the zero bytes left to send.
            await self.write(record, WriteRequest(stored.offset, _nothing()))
        return stored.offset

    async def write(self, record: UploadRecord, request: WriteRequest) -> Progress:
        """Append the request's bytes at its offset, under the upload's lease."""
        async with self.intake.lease(record.id):
            fresh = await self.intake.load(record.id)
            return await write_locked(self.intake, self.finisher, fresh, request)

    async def abandon(self, record: UploadRecord) -> None:
        """Remove an unfinished upload (or an unused partial one) and everything it stored."""
        self.hashes.drop(record.id)
        if record.multipart_id is not None:
            await self.store.abort_multipart(records.data_key(record.id), record.multipart_id)
        await self.finisher.abort_segments(record)
        # A partial upload's finished bytes are only ever read by a final upload.
        await self.finisher.clear(record.id, data=record.concat == PARTIAL)

    async def terminate(self, record: UploadRecord) -> None:
        async with self.intake.lease(record.id):
            # The caller's copy may predate the multipart upload: the stored record knows it.
            stored = await self.intake.load_any(record.id)
            await self.abandon(stored or record)

    async def hash_stored(self, file_id: str, size: int) -> str:
        return await self.finisher.hash_stored(file_id, size)

    async def close(self) -> None:
        """Stop background assemblies (they resume from the store, here or elsewhere)."""
        await self.assembler.close()
