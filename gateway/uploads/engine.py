"""The intake pipeline: one engine behind raw PUT, form POST and tus.

A request hands the engine an async iterator of body chunks and the offset
it claims to start at. The engine copies the chunks into part buffers taken
from the memory budget, hashes full buffers in order in a worker thread,
uploads them as multipart parts (several in flight) and, when the body ends,
either finishes the file or keeps what it has: full parts stay in the
multipart upload and the remainder becomes the upload's tail object. The
offset is always derived from the store (parts + tail), never from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import Code, GatewayError
from gateway.signing import UploadLink
from gateway.store.base import ObjectInfo, ObjectStore, Part, PreconditionFailed, StorageError
from gateway.uploads import records
from gateway.uploads.budget import Buffer, BufferBudget
from gateway.uploads.hashing import HashCache, OrderedHasher
from gateway.uploads.lease import hold
from gateway.uploads.limit import SizeLimit, size_limit, size_text
from gateway.uploads.partsize import (
    MAX_PART,
    MAX_PARTS,
    TooLargeForBudget,
    part_for_request,
    plan_parts,
)
from gateway.uploads.records import FINAL, MAX_PARTIALS, PARTIAL, FileRecord, UploadRecord

log = logging.getLogger("gateway.uploads")

MAX_PARTS_IN_FLIGHT = 8


def parts_in_flight(budget: int, part_size: int) -> int:
    """How many parts of one upload may be uploading at once.

    Enough to keep the store busy while the next part fills (a part upload
    takes longer than receiving one), bounded so one upload cannot take the
    whole budget, and at least 2.
    """
    return max(2, min(MAX_PARTS_IN_FLIGHT, budget // max(part_size, 1) // 2))


COMMIT_EVERY = 64 * 1024 * 1024

# How often each process looks for final uploads whose assembly no process is running
# (its process died): longer than a lease, so a dead process's lease has run out.
ASSEMBLY_CHECK = 15.0

OnFinished = Callable[[FileRecord], Awaitable[None]]


@dataclass(frozen=True)
class Progress:
    """Where an upload stands after a request."""

    offset: int
    file: FileRecord | None = None


@dataclass(frozen=True)
class _Stored:
    parts: list[Part]
    tail: bytes | None
    offset: int
    completed: ObjectInfo | None = None  # the data object exists: finished, maybe unrecorded


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


def too_large(length: int | None, largest: int, who: str = "this gateway") -> GatewayError:
    """The 413 of a file past ``largest``, naming it in bytes and human units."""
    if length is None:
        message = f"The file is larger than {who} accepts: at most {size_text(largest)}."
    else:
        message = f"The file is {length:,} bytes; {who} accepts at most {size_text(largest)}."
    return GatewayError(Code.TOO_LARGE, message)


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
        self.store = store
        # The largest file this process takes (computed once by the caller).
        # Without one given, only the part limits and the budget bound it.
        self.limit = limit or size_limit(
            max_upload=MAX_PART * MAX_PARTS, buffer_memory=budget.limit
        )
        # This process scans: what it takes in must be scanned before any delivery.
        self.scan_required = scan_required
        self.budget = budget
        self.attachment_max = attachment_max
        self.on_finished = on_finished
        self.clock = clock
        self.lease_ttl = lease_ttl
        # How long a request waits for an upload another request is writing before CONFLICT.
        # When it is longer than ``lease_ttl``, a dead process's lease is waited out unseen.
        self.lease_wait = lease_wait
        self.hashes = HashCache()
        self._assembling: dict[str, asyncio.Task[FileRecord | None]] = {}
        self._keeper: asyncio.Task[None] | None = None

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
            plan = plan_parts(length, self.budget.limit)
        except TooLargeForBudget:  # pragma: no cover - the limit is computed from the same plan
            raise too_large(length, largest) from None
        max_size = largest if length is not None else min(largest, self.limit.streamed)
        now = self.clock()
        record = UploadRecord(
            id=records.new_id(),
            ticket=link.ticket,
            link_id=link.link_id,
            filename=filename,
            length=length,
            max_size=max_size,
            plan=plan,
            created_at=now,
            expires_at=float(link.expires_at),
            protocol=protocol,
            content_type=content_type,
            metadata=dict(metadata or {}),
            concat=concat,
            sources=list(sources or []),
            scan_required=self.scan_required or scan_required,
        )
        await self._save(record)
        return record

    async def _save(self, record: UploadRecord) -> None:
        await self.store.put(records.info_key(record.id), record.to_bytes())

    async def load(self, upload_id: str) -> UploadRecord:
        if not records.is_id(upload_id):
            raise GatewayError(Code.NOT_FOUND, "No such upload.")
        raw = await self.store.get(records.info_key(upload_id))
        if raw is None:
            raise GatewayError(Code.NOT_FOUND, "No such upload.")
        record = UploadRecord.from_bytes(raw)
        if record.expires_at <= self.clock():
            raise GatewayError(Code.GONE, "This upload has expired.")
        return record

    async def declare_length(self, record: UploadRecord, length: int) -> None:
        """Fix the length of an upload created without one (tus Upload-Defer-Length)."""
        if record.length is not None:
            if record.length != length:
                raise GatewayError(Code.BAD_REQUEST, "The upload's length is already set.")
            return
        if length > record.max_size:
            raise too_large(length, record.max_size, "this upload")
        stored = await self._stored(record)
        if length < stored.offset:
            raise GatewayError(Code.BAD_REQUEST, "The length is smaller than what was received.")
        record.length = length
        await self._save(record)

    # -- offsets -----------------------------------------------------------------

    async def _stored(self, record: UploadRecord) -> _Stored:
        # The parts and the tails are listed at once: this runs before every request's
        # first byte is taken, so each round trip saved is latency saved per request.
        listed, tail_infos = await asyncio.gather(
            self._listed_parts(record), self.store.list(records.tail_prefix(record.id))
        )
        if listed is None:
            done = await self.store.head(records.data_key(record.id))
            if done is None:
                raise GatewayError(Code.GONE, "This upload's stored parts are gone.")
            return _Stored(parts=[], tail=None, offset=done.size, completed=done)
        # Only the committed run of full parts counts; a part written past it (by a request that
        # died or failed its checksum) is ignored and will be written again.
        good: list[Part] = []
        for expected, part in enumerate(listed, start=1):
            if expected > record.committed:
                break
            if part.number != expected or part.size != record.plan.size_of(expected):
                break
            good.append(part)
        next_part = len(good) + 1
        tail: bytes | None = None
        for info in tail_infos:
            suffix = info.key.rsplit(".", 1)[-1]
            if suffix == str(next_part) and info.size < record.plan.size_of(next_part):
                tail = await self.store.get(info.key)
        offset = sum(p.size for p in good) + (len(tail) if tail else 0)
        if record.multipart_id is None and tail is None:
            done = await self.store.head(records.data_key(record.id))
            if done is not None:
                return _Stored(parts=[], tail=None, offset=done.size, completed=done)
        return _Stored(parts=good, tail=tail, offset=offset)

    async def _listed_parts(self, record: UploadRecord) -> list[Part] | None:
        """The upload's stored parts; None when its multipart upload is gone (completed?)."""
        if record.multipart_id is None:
            return []
        try:
            return await self.store.list_parts(records.data_key(record.id), record.multipart_id)
        except KeyError:
            return None

    async def offset(self, record: UploadRecord) -> int:
        stored = await self._stored(record)
        if stored.completed is not None:
            await self._recover(record, stored.completed)
        elif record.length is not None and stored.offset == record.length:
            # Every byte is stored but the upload was never assembled (its last step failed):
            # finish it now, since no client request can carry the zero bytes left to send.
            await self.write(record, stored.offset, _nothing())
        return stored.offset

    async def _recover(self, record: UploadRecord, done: ObjectInfo) -> FileRecord | None:
        """The data object exists but the upload was not recorded as a file: finish that now."""
        if record.concat == PARTIAL:
            if not record.finished:
                await self._finish_partial(record)
            return None
        raw = await self.store.get(records.meta_key(record.id))
        if raw is not None:
            return FileRecord.from_bytes(raw)
        if record.length is not None and done.size != record.length:
            raise GatewayError(Code.INTERNAL, "The stored file does not have the declared length.")
        log.info("recovering finished upload %s", record.id)
        return await self._finish_record(record, done.size, done.etag, None)

    # -- writing -----------------------------------------------------------------

    async def write(
        self,
        record: UploadRecord,
        offset: int,
        chunks: AsyncIterator[bytes],
        *,
        final: bool = False,
        expect: int | None = None,
        checksum: Callable[[], object] | None = None,
        verify: Callable[[object], None] | None = None,
    ) -> Progress:
        """Append ``chunks`` at ``offset`` under the upload's lease.

        ``final`` says the body ends the file (its length becomes the offset
        reached). ``expect`` is how many bytes this request declared: fewer is
        an incomplete body, more is refused. ``checksum`` makes a fresh hash
        object fed with this request's bytes, and ``verify`` judges it before
        anything from this request is kept past the last stored part (tus
        checksum extension).
        """
        async with hold(self.store, records.lock_key(record.id), self.lease_ttl, self.lease_wait):
            fresh = await self.load(record.id)
            return await self._write_locked(fresh, offset, chunks, final, expect, checksum, verify)

    async def _write_locked(
        self,
        record: UploadRecord,
        offset: int,
        chunks: AsyncIterator[bytes],
        final: bool,
        expect: int | None,
        checksum: Callable[[], object] | None,
        verify: Callable[[object], None] | None,
    ) -> Progress:
        stored = await self._stored(record)
        if stored.completed is not None:
            file = await self._recover(record, stored.completed)
            if offset == stored.offset and not expect:
                return Progress(offset=stored.offset, file=file)
        if offset != stored.offset or stored.completed is not None:
            raise GatewayError(
                Code.OFFSET_MISMATCH,
                f"The upload is at byte {stored.offset}, not {offset}.",
                headers={"Upload-Offset": str(stored.offset)},
            )
        limit = record.length if record.length is not None else record.max_size
        if expect is not None and offset + expect > limit:
            if record.length is None:
                raise too_large(None, limit, "this upload")
            raise GatewayError(Code.BODY_TOO_LONG, "The body would run past the upload's length.")
        if record.multipart_id is None and stored.tail is None:
            await self._fit_parts(record, expect)
        writer = _PartWriter(self, record, stored, checksum)
        received = 0
        try:
            await writer.start()
            async for chunk in chunks:
                if not chunk:
                    continue
                if offset + received + len(chunk) > limit:
                    if record.length is None:
                        raise too_large(None, record.max_size, "this upload")
                    raise GatewayError(
                        Code.BODY_TOO_LONG, "The body runs past the upload's length."
                    )
                received += len(chunk)
                await writer.add(chunk)
            if expect is not None and received != expect:
                raise GatewayError(
                    Code.INCOMPLETE_BODY,
                    f"Received {received} of the {expect} bytes declared.",
                )
            if verify is not None:
                verify(writer.request_hash)
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
                await asyncio.shield(writer.suspend(keep=verify is None))
            raise
        reached = offset + received
        if final and record.length is None:
            record.length = reached
            await self._save(record)
        if record.length is not None and reached == record.length:
            try:
                file = await writer.finish()
            except (GatewayError, StorageError):
                # The last part or the completion failed (storage outlasted its retries):
                # commit the parts that did land, so a resumed upload starts after them.
                with contextlib.suppress(Exception):
                    await asyncio.shield(writer.suspend(keep=True))
                raise
            return Progress(offset=reached, file=file)
        return Progress(offset=await writer.suspend(keep=True))

    async def _fit_parts(self, record: UploadRecord, expect: int | None) -> None:
        """Before any byte is stored, size the parts for the first request (under the lease).

        The plan is fixed from the first byte on (part ``n``'s size is a function of the
        plan), so only an upload with no multipart upload and no tail may change it.
        """
        try:
            plan = plan_parts(record.length, self.budget.limit, part_for_request(expect))
        except TooLargeForBudget:
            return
        if plan != record.plan:
            record.plan = plan
            await self._save(record)

    async def abandon(self, record: UploadRecord) -> None:
        """Remove an unfinished upload (or an unused partial one) and everything it stored."""
        self.hashes.drop(record.id)
        if record.multipart_id is not None:
            await self.store.abort_multipart(records.data_key(record.id), record.multipart_id)
        # A partial upload's finished bytes are only ever read by a final upload.
        await self._clear(record.id, data=record.concat == PARTIAL)

    async def _clear(self, upload_id: str, *, data: bool = False, keep_lock: bool = False) -> None:
        """Delete the objects under ``uploads/{id}/`` (and, with ``data``, its data object)."""
        if data:
            await self.store.delete(records.data_key(upload_id))
        for info in await self.store.list(f"uploads/{upload_id}/"):
            if not (keep_lock and info.key == records.lock_key(upload_id)):
                await self.store.delete(info.key)

    async def terminate(self, record: UploadRecord) -> None:
        async with hold(self.store, records.lock_key(record.id), self.lease_ttl, self.lease_wait):
            # The caller's copy may predate the multipart upload: the stored record knows it.
            raw = await self.store.get(records.info_key(record.id))
            await self.abandon(UploadRecord.from_bytes(raw) if raw is not None else record)

    # -- concatenation (tus) -------------------------------------------------------

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
        record = await self.create(
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
        if not records.is_id(upload_id):
            return None
        raw = await self.store.get(records.info_key(upload_id))
        if raw is None:
            return None
        record = UploadRecord.from_bytes(raw)
        return record if record.concat == FINAL else None

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
        record = await self.load(upload_id)
        if record.ticket != link.ticket:
            raise GatewayError(Code.NOT_FOUND, "No such upload.")
        if record.concat != PARTIAL:
            raise GatewayError(Code.BAD_REQUEST, f"Upload {upload_id} is not a partial upload.")
        reached = await self.offset(record)  # also finishes one whose last step was interrupted
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
            if record.expires_at <= self.clock() or (running is not None and not running.done()):
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
        async with hold(self.store, records.lock_key(upload_id), self.lease_ttl):
            record = await self.load(upload_id)
            stored = await self._stored(record)
            if stored.completed is not None:
                return await self._recover(record, stored.completed)
            assert record.length is not None
            sizes: list[int] = []
            for source in record.sources:
                info = await self.store.head(records.data_key(source))
                if info is None:
                    raise GatewayError(Code.GONE, f"Partial upload {source} is gone.")
                sizes.append(info.size)
            if sum(sizes) != record.length:
                raise GatewayError(Code.GONE, "The partial uploads changed since the final one.")
            if record.multipart_id is None and stored.tail is None:
                joined = await self._compose(record)
                if joined is not None:
                    return joined
            # The store cannot join objects itself (or a copy begun earlier is resumed):
            # the bytes pass through the part writer once more.
            chunks = self._read_sources(record.sources, sizes, stored.offset)
            progress = await self._write_locked(
                record, stored.offset, chunks, False, record.length - stored.offset, None, None
            )
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
        file = await self._finish_record(record, record.length, etag, None)
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

    # -- finishing ----------------------------------------------------------------

    async def _finish_record(
        self, record: UploadRecord, size: int, etag: str, sha256: str | None
    ) -> FileRecord | None:
        if record.concat == PARTIAL:
            await self._finish_partial(record)
            return None
        if sha256 is None:
            sha256 = await self.hash_stored(record.id, size)
        route = "attachment" if size <= self.attachment_max else "storage"
        file = FileRecord(
            file_id=record.id,
            ticket=record.ticket,
            link_id=record.link_id,
            filename=record.filename,
            size=size,
            sha256=sha256,
            route=route,
            content_type=record.content_type,
            protocol=record.protocol,
            created_at=self.clock(),
            etag=etag,
            scan_required=record.scan_required or self.scan_required,
        )
        await self.store.put(records.meta_key(file.file_id), file.to_bytes())
        await self.store.put(records.link_index_key(record.link_id, file.file_id), b"")
        await self.store.put(records.ticket_index_key(record.ticket, file.file_id), b"")
        await self.on_finished(file)
        record.finished = True
        self.hashes.drop(record.id)
        marker = records.dumps(
            {"file_id": file.file_id, "sources": record.sources, "expires_at": record.expires_at}
        )
        for source in record.sources:
            # The file is recorded and on its way: a marker lets a client repeating its
            # final POST learn the file, before anything that could be claimed again goes.
            await self.store.put(records.joined_key(source), marker)
        await self._clear(record.id, keep_lock=True)
        for source in record.sources:
            await self._clear(source, data=True)
        if record.concat == FINAL:
            await self.store.delete(records.assembling_key(record.id))
        return file

    async def _finish_partial(self, record: UploadRecord) -> None:
        """A partial upload is complete: keep its record and bytes for a final upload."""
        record.finished = True
        await self._save(record)
        self.hashes.drop(record.id)
        for info in await self.store.list(records.tail_prefix(record.id)):
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


class _PartWriter:
    """The per-request machinery: buffers, in-flight parts, hashing."""

    def __init__(
        self,
        engine: UploadEngine,
        record: UploadRecord,
        stored: _Stored,
        checksum: Callable[[], object] | None,
    ) -> None:
        self.engine = engine
        self.store = engine.store
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
        self.hasher = OrderedHasher(engine.hashes.take(record.id, stored.offset))
        self.request_hash = checksum() if checksum is not None else None
        self.buffer: Buffer | None = None
        self.view: memoryview | None = None
        self.fill = 0
        self.hashed_to = 0  # bytes of the current buffer already hashed (a carried tail)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(
            parts_in_flight(engine.budget.limit, record.plan.size_of(self.first))
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
        self.buffer = await self.engine.budget.acquire(size)
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
            await self.engine._save(self.record)
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
            self.engine.budget.release(len(buffer), None)
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
                    self.engine.budget.release(len(buffer), buffer)
                else:
                    hashed.add_done_callback(
                        lambda _: self.engine.budget.release(len(buffer), buffer)
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
            await self.engine._save(self.record)
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
            self.engine.budget.release(len(self.buffer), self.buffer)
            self.buffer = None
            self.view = None

    async def suspend(self, *, keep: bool) -> int:
        """Stop without finishing and return the offset that now counts.

        With ``keep`` the parts that landed are committed and the remainder
        becomes the tail. Without it (a failed checksum) nothing this request
        sent counts: the commit stays where it was and so does the old tail.
        """
        self.engine.hashes.drop(self.record.id)
        try:
            if not keep:
                with contextlib.suppress(GatewayError):
                    await self._settle()
                return (await self.engine._stored(self.record)).offset
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
                self.engine.hashes.put(self.record.id, offset, self.hasher.state)
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
        return await self.engine._finish_record(self.record, size, etag, digest)
