"""What every piece of the intake engine shares: the store, the budget, the records.

The engine is split the way its work is: :mod:`offsets` (what is stored),
:mod:`writer` (a request's bytes into parts), :mod:`finish` (a complete
upload becomes a file), :mod:`concat` (tus concatenation) and the thin front
:mod:`engine`. They meet here, in one object built once per process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from gateway.errors import Code, GatewayError
from gateway.store.base import ObjectStore
from gateway.uploads import records
from gateway.uploads.budget import BufferBudget
from gateway.uploads.hashing import HashCache
from gateway.uploads.lease import hold
from gateway.uploads.limit import SizeLimit
from gateway.uploads.records import FileRecord, UploadRecord

OnFinished = Callable[[FileRecord], Awaitable[None]]


@dataclass
class Intake:
    """The engine's shared state and its record reads and writes."""

    store: ObjectStore
    budget: BufferBudget
    limit: SizeLimit
    attachment_max: int
    on_finished: OnFinished
    clock: Callable[[], float] = time.time
    lease_ttl: float = 10.0
    # How long a request waits for an upload another request is writing before CONFLICT.
    # When it is longer than ``lease_ttl``, a dead process's lease is waited out unseen.
    lease_wait: float = 0.0
    # This process scans: what it takes in must be scanned before any delivery.
    scan_required: bool = False
    hashes: HashCache = field(default_factory=HashCache)

    def lease(self, upload_id: str, *, wait: bool = True) -> AbstractAsyncContextManager[object]:
        """Hold the upload's lease: one writer at a time, across replicas."""
        return hold(
            self.store, records.lock_key(upload_id), self.lease_ttl, self.lease_wait if wait else 0
        )

    async def save(self, record: UploadRecord) -> None:
        await self.store.put(records.info_key(record.id), record.to_bytes())

    async def load(self, upload_id: str) -> UploadRecord:
        """An unexpired upload's record; NOT_FOUND or GONE otherwise."""
        record = await self.load_any(upload_id)
        if record is None:
            raise GatewayError(Code.NOT_FOUND, "No such upload.")
        if record.expires_at <= self.clock():
            raise GatewayError(Code.GONE, "This upload has expired.")
        return record

    async def load_any(self, upload_id: str) -> UploadRecord | None:
        """The upload's record as stored, expired or not; None if there is none."""
        if not records.is_id(upload_id):
            return None
        raw = await self.store.get(records.info_key(upload_id))
        return UploadRecord.from_bytes(raw) if raw is not None else None
