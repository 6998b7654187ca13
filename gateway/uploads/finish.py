"""A complete upload becomes a file: recorded, indexed, handed to delivery, cleaned up.

A partial upload of a tus concatenation is kept instead, for its final
upload. A data object that exists without its record (a process died after
completing it) is recovered the same way, its SHA-256 read back in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from gateway.errors import Code, GatewayError
from gateway.store.base import ObjectInfo, ObjectStore, StorageError
from gateway.uploads import records
from gateway.uploads.context import Intake
from gateway.uploads.records import FINAL, PARTIAL, FileRecord, UploadRecord

log = logging.getLogger("gateway.uploads")


class Finisher:
    """Turns complete uploads into files (or kept partial uploads)."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    @property
    def store(self) -> ObjectStore:
        return self.intake.store

    async def record_file(
        self, record: UploadRecord, size: int, etag: str, sha256: str | None
    ) -> FileRecord | None:
        """Record the finished file and hand it to delivery (None for a partial upload)."""
        if record.concat == PARTIAL:
            await self.finish_partial(record)
            return None
        if sha256 is None:
            sha256 = await self.hash_stored(record.id, size)
        file = self._file(record, size, etag, sha256)
        await self.store.put(records.meta_key(file.file_id), file.to_bytes())
        await self.store.put(records.link_index_key(record.link_id, file.file_id), b"")
        await self.store.put(records.ticket_index_key(record.ticket, file.file_id), b"")
        await self.intake.on_finished(file)
        record.finished = True
        self.intake.hashes.drop(record.id)
        await self._clean_up(record, file)
        return file

    def _file(self, record: UploadRecord, size: int, etag: str, sha256: str) -> FileRecord:
        route = "attachment" if size <= self.intake.attachment_max else "storage"
        return FileRecord(
            file_id=record.id,
            ticket=record.ticket,
            link_id=record.link_id,
            filename=record.filename,
            size=size,
            sha256=sha256,
            route=route,
            content_type=record.content_type,
            protocol=record.protocol,
            created_at=self.intake.clock(),
            etag=etag,
            scan_required=record.scan_required or self.intake.scan_required,
        )

    async def _clean_up(self, record: UploadRecord, file: FileRecord) -> None:
        marker = records.dumps(
            {"file_id": file.file_id, "sources": record.sources, "expires_at": record.expires_at}
        )
        for source in record.sources:
            # The file is recorded and on its way: a marker lets a client repeating its
            # final POST learn the file, before anything that could be claimed again goes.
            await self.store.put(records.joined_key(source), marker)
        await self.abort_segments(record)
        await self.clear(record.id, keep_lock=True)
        for source in record.sources:
            await self.clear(source, data=True)
        if record.concat == FINAL:
            await self.store.delete(records.assembling_key(record.id))

    async def finish_partial(self, record: UploadRecord) -> None:
        """A partial upload is complete: keep its record and bytes for a final upload."""
        record.finished = True
        await self.intake.save(record)
        self.intake.hashes.drop(record.id)
        for info in await self.store.list(records.tail_prefix(record.id)):
            await self.store.delete(info.key)

    async def recover(self, record: UploadRecord, done: ObjectInfo) -> FileRecord | None:
        """The data object exists but the upload was not recorded as a file: finish that now."""
        if record.concat == PARTIAL:
            if not record.finished:
                await self.finish_partial(record)
            return None
        raw = await self.store.get(records.meta_key(record.id))
        if raw is not None:
            return FileRecord.from_bytes(raw)
        if record.length is not None and done.size != record.length:
            raise GatewayError(Code.INTERNAL, "The stored file does not have the declared length.")
        log.info("recovering finished upload %s", record.id)
        return await self.record_file(record, done.size, done.etag, None)

    async def abort_segments(self, record: UploadRecord) -> None:
        """Abort the multipart uploads of the upload's segments (parts larger than a
        buffer); their objects go with :meth:`clear`."""
        if record.plan.sub:
            for mpu in await self.store.list_multipart(records.segment_prefix(record.id)):
                await self.store.abort_multipart(mpu.key, mpu.upload_id)

    async def clear(self, upload_id: str, *, data: bool = False, keep_lock: bool = False) -> None:
        """Delete the upload's working objects (and, with ``data``, its data object)."""
        if data:
            await self.store.delete(records.data_key(upload_id))
        for info in await self.store.list(records.upload_prefix(upload_id)):
            if not (keep_lock and info.key == records.lock_key(upload_id)):
                await self.store.delete(info.key)

    async def hash_stored(self, file_id: str, size: int) -> str:
        """SHA-256 of a stored file, read back in order (after a resume elsewhere)."""
        state = hashlib.sha256()
        seen = 0
        # Each chunk is hashed in a worker thread while the next one is read: in order,
        # one at a time, and the read never waits for the hash (or the hash for the read).
        hashing: asyncio.Future[None] | None = None
        try:
            async for chunk in self.store.read(records.data_key(file_id)):
                if hashing is not None:
                    await hashing
                hashing = asyncio.ensure_future(asyncio.to_thread(state.update, chunk))
                seen += len(chunk)
            if hashing is not None:
                await hashing
        finally:
            if hashing is not None and not hashing.done():
                hashing.cancel()
        if seen != size:
            raise StorageError(f"stored file {file_id} has {seen} bytes, expected {size}")
        return state.hexdigest()
