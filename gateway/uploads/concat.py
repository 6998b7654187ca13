"""tus concatenation: partial uploads joined into one final upload, in the background.

A final upload claims its partial uploads (so two final POSTs make one file),
then is assembled under its lease: inside the store where it can join objects
(links, or S3's UploadPartCopy), else by passing the bytes through the part
writer once more. A keeper in every process resumes assemblies whose process
died.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gateway.errors import Code, GatewayError
from gateway.signing import UploadLink
from gateway.store.base import ObjectStore, PreconditionFailed
from gateway.uploads import offsets, records
from gateway.uploads.context import Intake
from gateway.uploads.finish import Finisher
from gateway.uploads.records import FINAL, MAX_PARTIALS, PARTIAL, FileRecord, UploadRecord
from gateway.uploads.writer import WriteRequest, write_locked

if TYPE_CHECKING:
    from gateway.uploads.engine import UploadEngine

log = logging.getLogger("gateway.uploads")

# How often each process looks for final uploads whose assembly no process is running
# (its process died): longer than a lease, so a dead process's lease has run out.
ASSEMBLY_CHECK = 15.0


class Assembler:
    """Final uploads of a tus concatenation: claims, assembly and its keeper."""

    def __init__(self, front: UploadEngine, intake: Intake, finisher: Finisher) -> None:
        self.front = front
        self.intake = intake
        self.finisher = finisher
        self._assembling: dict[str, asyncio.Task[FileRecord | None]] = {}
        self._keeper: asyncio.Task[None] | None = None

    @property
    def store(self) -> ObjectStore:
        return self.intake.store

    async def concatenate(
        self,
        link: UploadLink,
        sources: list[str],
        *,
        filename: str,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> UploadRecord:
        """Record a final upload made of complete partial uploads of the link's ticket.

        Nothing is copied yet: :meth:`start_assembly` does that.
        """
        if not sources:
            raise GatewayError(
                Code.BAD_REQUEST, "A final upload needs at least one partial upload."
            )
        if len(sources) > MAX_PARTIALS:
            raise GatewayError(
                Code.BAD_REQUEST, f"A final upload may join at most {MAX_PARTIALS} partial uploads."
            )
        if len(set(sources)) != len(sources):
            raise GatewayError(Code.BAD_REQUEST, "A final upload names a partial upload twice.")
        total = 0
        scan_required = False
        for source in sources:
            size, required = await self._partial_size(link, source)
            total += size
            scan_required = scan_required or required
        record = await self.front.create(
            link,
            filename=filename,
            length=total,
            protocol="tus",
            content_type=content_type,
            metadata=metadata,
            concat=FINAL,
            sources=sources,
            scan_required=scan_required,
        )
        # Written before the claim: a process dying from here on leaves a final upload
        # that the next assembly check finds (a marker left by a dropped duplicate
        # names no final upload and is removed by that check).
        await self.store.put(records.assembling_key(record.id), b"")
        return await self._claim(record)

    async def _claim(self, record: UploadRecord) -> UploadRecord:
        """Make ``record`` the one final upload of its partial uploads.

        Each partial upload gets a marker naming its final upload, written only if
        absent, so two final POSTs at once (a client retrying while the first
        still copies) make one file: the later one is dropped and the earlier
        one returned. A marker whose final upload no longer exists (a crash
        between the two writes) is taken over.
        """
        claim = record.id.encode()
        taken: list[str] = []
        fresh: str | None = None  # a partial upload whose claim we took from no one
        for source in record.sources:
            key = records.final_key(source)
            try:
                await self.store.put(key, claim, if_absent=True)
                taken.append(source)
                fresh = fresh or source
                continue
            except PreconditionFailed:
                pass
            owner = (await self.store.get(key) or b"").decode(errors="replace")
            if owner == record.id:  # claimed by an earlier try for this very final upload
                taken.append(source)
                continue
            existing = await self._live_final(owner)
            finished = (
                existing is None
                and records.is_id(owner)
                and (await self.store.head(records.meta_key(owner)) is not None)
            )
            if existing is None and not finished:
                await self.store.put(key, claim)  # a stale claim: take it over
                taken.append(source)
                continue
            await self._drop_claims(record, taken)
            if existing is None:
                # That final upload is a file now and its partial uploads are going:
                # a retry finds the file (joined markers).
                raise GatewayError(Code.CONFLICT, "These partial uploads were just joined.")
            if existing.sources != record.sources:
                raise GatewayError(
                    Code.BAD_REQUEST,
                    f"Partial upload {source} is already part of another final upload.",
                )
            return existing
        if fresh is not None and await self.store.head(records.joined_key(fresh)) is not None:
            # Another final upload became a file and was removing its claims as we took them
            # (it writes the joined markers first): these partial uploads are that file now.
            await self._drop_claims(record, taken)
            raise GatewayError(Code.CONFLICT, "These partial uploads were just joined.")
        return record

    async def _drop_claims(self, record: UploadRecord, taken: list[str]) -> None:
        for mine in taken:
            await self.store.delete(records.final_key(mine))
        await self.store.delete(records.info_key(record.id))

    async def _live_final(self, upload_id: str) -> UploadRecord | None:
        record = await self.intake.load_any(upload_id)
        return record if record is not None and record.concat == FINAL else None

    async def joined(self, link: UploadLink, sources: list[str]) -> FileRecord | None:
        """The file these partial uploads already became (a repeated final POST), if any."""
        if not sources or not records.is_id(sources[0]):
            return None
        raw = await self.store.get(records.joined_key(sources[0]))
        if raw is None:
            return None
        try:
            marker = json.loads(raw)
            file_id = str(marker["file_id"])
            same = marker["sources"] == sources
        except (ValueError, KeyError, TypeError):
            return None
        meta = await self.store.get(records.meta_key(file_id)) if same else None
        if meta is None:
            return None
        file = FileRecord.from_bytes(meta)
        return file if file.ticket == link.ticket else None

    async def _partial_size(self, link: UploadLink, upload_id: str) -> tuple[int, bool]:
        """The size of a complete partial upload of the link's ticket, and whether it
        must be scanned; else a client error."""
        record = await self.intake.load(upload_id)
        if record.ticket != link.ticket:
            raise GatewayError(Code.NOT_FOUND, "No such upload.")
        if record.concat != PARTIAL:
            raise GatewayError(Code.BAD_REQUEST, f"Upload {upload_id} is not a partial upload.")
        reached = await self.front.offset(
            record
        )  # also finishes one whose last step was interrupted
        if record.length is None or reached != record.length:
            raise GatewayError(
                Code.BAD_REQUEST, f"Partial upload {upload_id} is not complete ({reached} bytes)."
            )
        return reached, record.scan_required

    def start_assembly(self, record: UploadRecord) -> asyncio.Task[FileRecord | None]:
        """Assemble a final upload in the background (one task per upload per process).

        The task holds the upload's lease, so only one replica assembles at a
        time; another gets CONFLICT, which the task swallows. Assembly resumes
        from what is stored, so a restart loses nothing but time.
        """
        task = self._assembling.get(record.id)
        if task is not None and not task.done():
            return task
        task = asyncio.create_task(self._assemble(record.id), name=f"assemble {record.id}")
        self._assembling[record.id] = task

        def done(finished: asyncio.Task[FileRecord | None]) -> None:
            if self._assembling.get(record.id) is finished:
                del self._assembling[record.id]
            if finished.cancelled():
                return
            exc = finished.exception()  # retrieved here, so never reported as lost
            if exc is not None and not (
                isinstance(exc, GatewayError) and exc.code is Code.CONFLICT
            ):
                log.warning("assembling upload %s failed: %r", record.id, exc)

        task.add_done_callback(done)
        return task

    def start_keeper(self, interval: float = ASSEMBLY_CHECK) -> None:
        """Resume, now and every ``interval`` seconds, assemblies whose process died."""
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(interval), name="assembly keeper")

    async def _keep(self, interval: float) -> None:
        while True:
            try:
                await self.resume_assemblies()
            except Exception as exc:  # the store may be down for a while: try again later
                log.warning("looking for unfinished assemblies failed: %r", exc)
            await asyncio.sleep(interval)

    async def resume_assemblies(self) -> int:
        """Start the assembly of every unexpired final upload not assembling here.

        One running in another process holds its lease, so the attempt ends
        with a swallowed CONFLICT there. A final upload is started only once
        it owns all its partial uploads: the check finishes the claims itself
        (a POST that died while claiming, or one still claiming, which then
        finds the claims made), and a final upload that loses to another one
        is dropped, as its POST would drop it. Copying one that may yet be
        dropped could deliver a file twice. Markers of final uploads that are
        gone (finished, terminated, dropped) are removed. Returns how many
        assemblies were started.
        """
        started = 0
        for info in await self.store.list(records.ASSEMBLING_PREFIX):
            upload_id = info.key[len(records.ASSEMBLING_PREFIX) :]
            record = await self._live_final(upload_id)
            if record is None:
                await self.store.delete(info.key)
                continue
            running = self._assembling.get(upload_id)
            if record.expires_at <= self.intake.clock() or (
                running is not None and not running.done()
            ):
                continue
            if not await self._owns_partials(record):
                try:
                    owner = await self._claim(record)
                except GatewayError:  # lost to another final upload: dropped
                    owner = None
                if owner is None or owner.id != record.id:
                    await self.store.delete(info.key)
                    continue
            self.start_assembly(record)
            started += 1
        return started

    async def _owns_partials(self, record: UploadRecord) -> bool:
        claim = record.id.encode()
        for source in record.sources:
            if await self.store.get(records.final_key(source)) != claim:
                return False
        return True

    async def _assemble(self, upload_id: str) -> FileRecord | None:
        try:
            return await self._assemble_under_lease(upload_id)
        except GatewayError as exc:
            if exc.code is Code.GONE:  # can never finish: stop looking for it
                await self.store.delete(records.assembling_key(upload_id))
            raise

    async def _assemble_under_lease(self, upload_id: str) -> FileRecord | None:
        async with self.intake.lease(upload_id, wait=False):
            record = await self.intake.load(upload_id)
            stored = await offsets.stored(self.store, record)
            if stored.completed is not None:
                return await self.finisher.recover(record, stored.completed)
            assert record.length is not None
            sizes: list[int] = []
            for source in record.sources:
                info = await self.store.head(records.data_key(source))
                if info is None:
                    raise GatewayError(Code.GONE, f"Partial upload {source} is gone.")
                sizes.append(info.size)
            if sum(sizes) != record.length:
                raise GatewayError(Code.GONE, "The partial uploads changed since the final one.")
            if record.multipart_id is None and record.segment_id is None and stored.tail is None:
                joined = await self._compose(record)
                if joined is not None:
                    return joined
            # The store cannot join objects itself (or a copy begun earlier is resumed):
            # the bytes pass through the part writer once more.
            chunks = self._read_sources(record.sources, sizes, stored.offset)
            request = WriteRequest(stored.offset, chunks, expect=record.length - stored.offset)
            progress = await write_locked(self.intake, self.finisher, record, request)
            return progress.file

    async def _compose(self, record: UploadRecord) -> FileRecord | None:
        """Join the partial uploads inside the store, then hash the result once, in order.

        The store links (file) or copies server-side (S3) what it can, so the
        bytes are not written a second time by the gateway; the SHA-256 for
        the receipt is read back from the joined object, so it vouches for
        the bytes that will be delivered. A crash after the join leaves the
        data object, which :meth:`_recover` hashes and records the same way.
        None when the store cannot join objects.
        """
        assert record.length is not None
        started = time.perf_counter()
        try:
            etag = await self.store.compose(
                records.data_key(record.id),
                [records.data_key(source) for source in record.sources],
                record.content_type,
            )
        except NotImplementedError:
            return None
        except KeyError:
            raise GatewayError(Code.GONE, "A partial upload is gone.") from None
        joined = time.perf_counter()
        file = await self.finisher.record_file(record, record.length, etag, None)
        log.info(
            "joined upload %s from %d partial uploads: %.2fs join, %.2fs hash and record",
            record.id,
            len(record.sources),
            joined - started,
            time.perf_counter() - joined,
        )
        return file

    async def _read_sources(
        self, sources: list[str], sizes: list[int], start: int
    ) -> AsyncIterator[bytes]:
        """The partial uploads' bytes in order, from byte ``start`` of the whole."""
        position = 0
        for source, size in zip(sources, sizes, strict=True):
            if start < position + size:
                async for chunk in self.store.read(
                    records.data_key(source), max(0, start - position)
                ):
                    yield chunk
            position += size

    async def close(self) -> None:
        """Stop background assemblies (they resume from the store, here or elsewhere)."""
        tasks: list[asyncio.Task[Any]] = list(self._assembling.values())
        if self._keeper is not None:
            tasks.append(self._keeper)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
