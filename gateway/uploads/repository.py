"""The records the gateway keeps in the store, read and written by meaning.

The key layout is :mod:`gateway.uploads.records`; the upload engine works
with it directly. Everything else (the HTTP edges, delivery, housekeeping)
goes through :class:`Records`, so that no other module spells a key::

    records.files.load(file_id)        a finished file's record, or None
    records.links.files(link_id)       the files uploaded through a link
    records.tickets.files(ticket)      the files of a ticket
    records.outbox.pending()           the files still to be delivered
    records.names.upload_id(link, n)   the unfinished raw PUT of a file name
    records.replays.claim(signature)   a webhook signature's first use

Stateless: any number of instances over one store agree.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from gateway.store.base import MultipartInfo, ObjectStore, PreconditionFailed
from gateway.tickets.webhook import replay_key
from gateway.uploads import records
from gateway.uploads.lease import Lease, hold
from gateway.uploads.records import FileRecord, OutboxEntry, UploadRecord


class Files:
    """Finished files: their records and their bytes."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def load(self, file_id: str) -> FileRecord | None:
        """The file's record; None for an unknown file or a string that is no id."""
        if not records.is_id(file_id):
            return None
        raw = await self.store.get(records.meta_key(file_id))
        return None if raw is None else FileRecord.from_bytes(raw)

    async def save(self, file: FileRecord) -> None:
        await self.store.put(records.meta_key(file.file_id), file.to_bytes())

    async def all(self) -> AsyncIterator[FileRecord]:
        """Every finished file's record, read one at a time."""
        for info in await self.store.list(records.FILES_PREFIX):
            if not info.key.endswith("/meta.json"):
                continue
            raw = await self.store.get(info.key)
            if raw is not None:
                yield FileRecord.from_bytes(raw)

    def read(self, file_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The file's bytes from ``start`` up to ``end`` (exclusive; None: to the end)."""
        return self.store.read(records.data_key(file_id), start, end)

    async def presign(
        self, file_id: str, *, expires_in: int, disposition: str, content_type: str
    ) -> str | None:
        """A short-lived storage URL for the file's bytes; None if the store cannot."""
        return await self.store.presign_get(
            records.data_key(file_id),
            expires_in=expires_in,
            disposition=disposition,
            content_type=content_type,
        )

    async def remove(self, file: FileRecord) -> None:
        """The file's bytes, its index entries, its delivery entry, then its record."""
        await self.store.delete(records.data_key(file.file_id))
        await self.store.delete(records.link_index_key(file.link_id, file.file_id))
        await self.store.delete(records.ticket_index_key(file.ticket, file.file_id))
        await self.store.delete(records.outbox_key(file.file_id))
        await self.store.delete(records.meta_key(file.file_id))

    async def multipart_uploads(self) -> list[MultipartInfo]:
        """Multipart uploads the store holds for files, finished or abandoned."""
        return await self.store.list_multipart(records.FILES_PREFIX)


class FileIndex:
    """The files of one owner (a link, a ticket), indexed by empty keys under a prefix."""

    def __init__(
        self,
        store: ObjectStore,
        files: Files,
        prefix: Callable[[str], str],
        owner: Callable[[FileRecord], str],
    ) -> None:
        self.store = store
        self._files = files
        self._prefix = prefix
        self._owner = owner

    async def files(self, owner: str, *, prune: bool = False) -> list[FileRecord]:
        """The owner's files, oldest first. ``prune`` drops entries whose file is gone."""
        found = []
        for info in await self.store.list(self._prefix(owner)):
            file = await self._files.load(info.key.rsplit("/", 1)[-1])
            if file is None:
                if prune:
                    await self.store.delete(info.key)
                continue
            if self._owner(file) == owner:
                found.append(file)
        found.sort(key=lambda f: (f.created_at, f.file_id))
        return found


class Uploads:
    """Unfinished uploads' records (the engine writes them; others look)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def all(self, unreadable: Callable[[str], None]) -> AsyncIterator[UploadRecord]:
        """Every unfinished upload's record; ``unreadable`` hears of any that cannot be read."""
        for info in await self.store.list(records.UPLOADS_PREFIX):
            if not info.key.endswith("/info.json"):
                continue
            raw = await self.store.get(info.key)
            if raw is None:
                continue
            try:
                yield UploadRecord.from_bytes(raw)
            except (ValueError, TypeError, KeyError):
                unreadable(info.key)

    async def exists(self, upload_id: str) -> bool:
        return await self.store.head(records.info_key(upload_id)) is not None

    async def orphan_segments(self) -> list[MultipartInfo]:
        """Segments' multipart uploads (parts larger than a buffer, under an upload's
        working prefix) whose upload's record is gone; a live upload's go with it."""
        found: list[MultipartInfo] = []
        for upload in await self.store.list_multipart(records.UPLOADS_PREFIX):
            upload_id = upload.key[len(records.UPLOADS_PREFIX) :].split("/", 1)[0]
            if not (records.is_id(upload_id) and await self.exists(upload_id)):
                found.append(upload)
        return found


class Names:
    """The unfinished raw PUT of each (link, file name): what a ranged PUT continues."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def upload_id(self, link_id: str, filename: str) -> str | None:
        raw = await self.store.get(records.name_key(link_id, filename))
        return None if raw is None else _upload_id_in(raw)

    async def remember(self, link_id: str, filename: str, upload_id: str) -> None:
        key = records.name_key(link_id, filename)
        await self.store.put(key, records.dumps({"upload_id": upload_id}))

    async def forget(self, link_id: str, filename: str) -> None:
        await self.store.delete(records.name_key(link_id, filename))

    async def drop_stale(self, uploads: Uploads) -> int:
        """Remove the names whose upload is gone (finished elsewhere or expired); how many."""
        dropped = 0
        for info in await self.store.list(records.NAMES_PREFIX):
            upload_id = _upload_id_in(await self.store.get(info.key) or b"{}")
            with contextlib.suppress(ValueError):  # a name no key can be made of
                if upload_id is not None and await uploads.exists(upload_id):
                    continue
            await self.store.delete(info.key)
            dropped += 1
        return dropped


def _upload_id_in(raw: bytes) -> str | None:
    try:
        upload_id = json.loads(raw)["upload_id"]
    except (ValueError, KeyError, TypeError):
        return None
    return upload_id if isinstance(upload_id, str) else None


class JoinedMarkers:
    """Partial uploads that a final upload used, kept while a repeated final POST may come."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def drop_expired(self, now: float) -> int:
        """Remove the markers that expired by ``now`` (or cannot be read); how many."""
        dropped = 0
        for info in await self.store.list(records.JOINED_PREFIX):
            raw = await self.store.get(info.key)
            with contextlib.suppress(ValueError, KeyError, TypeError):
                if float(json.loads(raw or b"{}")["expires_at"]) > now:
                    continue
            await self.store.delete(info.key)
            dropped += 1
        return dropped


class ReplayMarkers:
    """Webhook signatures already used: a second use of one is a replay."""

    def __init__(self, store: ObjectStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def claim(self, signature: str) -> bool:
        """Remember ``signature`` as used; False if it already was (a replay)."""
        key = records.replay_marker_key(replay_key(signature))
        try:
            await self.store.put(key, json.dumps({"at": self.clock()}).encode(), if_absent=True)
        except PreconditionFailed:
            return False
        return True

    async def release(self, signature: str) -> None:
        """Forget ``signature``, so that a retry of the same request may succeed."""
        await self.store.delete(records.replay_marker_key(replay_key(signature)))

    async def drop_older_than(self, age: float, now: float) -> int:
        """Remove the markers written more than ``age`` seconds before ``now``; how many."""
        dropped = 0
        for info in await self.store.list(records.REPLAY_PREFIX):
            if now - info.last_modified > age:
                await self.store.delete(info.key)
                dropped += 1
        return dropped


class OutboxEntries:
    """Finished files still to be delivered, and the per-ticket delivery lease."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def pending(self) -> list[OutboxEntry]:
        """Every entry waiting for delivery (unreadable ones are passed over)."""
        entries = []
        for info in await self.store.list(records.OUTBOX_PREFIX):
            if not info.key.endswith(".json"):
                continue
            raw = await self.store.get(info.key)
            if raw is not None:
                with contextlib.suppress(ValueError, TypeError):
                    entries.append(OutboxEntry.from_bytes(raw))
        return entries

    async def load(self, file_id: str) -> OutboxEntry | None:
        raw = await self.store.get(records.outbox_key(file_id))
        return None if raw is None else OutboxEntry.from_bytes(raw)

    async def save(self, entry: OutboxEntry) -> None:
        await self.store.put(records.outbox_key(entry.file_id), entry.to_bytes())

    async def remove(self, file_id: str) -> None:
        await self.store.delete(records.outbox_key(file_id))

    def lease(self, ticket: str, ttl: float) -> AbstractAsyncContextManager[Lease]:
        """Hold the ticket's delivery lease for a block (CONFLICT if another holds it)."""
        return hold(self.store, records.outbox_lease_key(ticket), ttl=ttl)


class Records:
    """Every record kept in one store, grouped by what it is about."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.files = Files(store)
        self.links = FileIndex(store, self.files, records.link_index_prefix, _link_of)
        self.tickets = FileIndex(store, self.files, records.ticket_index_prefix, _ticket_of)
        self.uploads = Uploads(store)
        self.names = Names(store)
        self.joined = JoinedMarkers(store)
        self.replays = ReplayMarkers(store)
        self.outbox = OutboxEntries(store)

    async def abort_multipart(self, upload: MultipartInfo) -> None:
        """Abort a multipart upload found by a listing (a file's or a segment's)."""
        await self.store.abort_multipart(upload.key, upload.upload_id)


def _link_of(file: FileRecord) -> str:
    return file.link_id


def _ticket_of(file: FileRecord) -> str:
    return file.ticket
