"""Housekeeping: expired uploads, abandoned multipart uploads, retention, purge.

Everything is found by listing the store, so any replica (or a cron job
running ``gateway sweep``) can do it. Safe to run at any time and often.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError
from gateway.store.base import ObjectStore
from gateway.uploads import records
from gateway.uploads.engine import UploadEngine
from gateway.uploads.records import FileRecord, UploadRecord

ABANDONED_MULTIPART_AGE = 86400.0
# Webhook replay markers matter while a signature's timestamp is fresh (5 minutes).
REPLAY_MARKER_AGE = 600.0


@dataclass
class SweepReport:
    expired_uploads: int = 0
    aborted_multipart: int = 0
    retention_deleted: int = 0
    stale_names: int = 0
    replay_markers: int = 0
    store_leftovers: int = 0
    joined_markers: int = 0
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"expired uploads removed: {self.expired_uploads}",
            f"abandoned multipart uploads aborted: {self.aborted_multipart}",
            f"files past retention deleted: {self.retention_deleted}",
            f"stale name entries removed: {self.stale_names}",
            f"old webhook replay markers removed: {self.replay_markers}",
            f"store leftovers removed: {self.store_leftovers}",
            f"expired concatenation markers removed: {self.joined_markers}",
            *(f"error: {e}" for e in self.errors),
        ]


async def delete_file(store: ObjectStore, file: FileRecord) -> None:
    """Remove a finished file, its record and its index entries."""
    await store.delete(records.data_key(file.file_id))
    await store.delete(records.link_index_key(file.link_id, file.file_id))
    await store.delete(records.ticket_index_key(file.ticket, file.file_id))
    await store.delete(records.outbox_key(file.file_id))
    await store.delete(records.meta_key(file.file_id))


async def sweep(
    store: ObjectStore,
    engine: UploadEngine,
    *,
    retention: float | None,
    clock: Callable[[], float] = time.time,
    multipart_age: float = ABANDONED_MULTIPART_AGE,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> SweepReport:
    """One pass; ``on_event`` receives an audit event for every upload or file removed."""
    audit = on_event or (lambda _name, _fields: None)
    report = SweepReport()
    now = clock()
    live_multipart: set[str] = set()
    for info in await store.list("uploads/"):
        if not info.key.endswith("/info.json"):
            continue
        raw = await store.get(info.key)
        if raw is None:
            continue
        try:
            record = UploadRecord.from_bytes(raw)
        except (ValueError, TypeError, KeyError):
            report.errors.append(f"unreadable upload record {info.key}")
            continue
        if record.expires_at <= now:
            try:
                await engine.terminate(record)
                report.expired_uploads += 1
                audit(
                    "upload_expired",
                    {"upload_id": record.id, "ticket": record.ticket, "filename": record.filename},
                )
            except GatewayError:
                report.errors.append(f"upload {record.id} is busy; left for the next sweep")
        elif record.multipart_id:
            live_multipart.add(record.multipart_id)
    for mpu in await store.list_multipart("files/"):
        if mpu.upload_id in live_multipart or now - mpu.initiated < multipart_age:
            continue
        await store.abort_multipart(mpu.key, mpu.upload_id)
        report.aborted_multipart += 1
    # Segments (parts larger than a buffer, uploads/{id}/seg.{n}) of uploads that are gone;
    # a live upload's segments go with it (terminate, finish).
    for mpu in await store.list_multipart("uploads/"):
        upload_id = mpu.key.split("/")[1]
        if now - mpu.initiated < multipart_age or (
            records.is_id(upload_id) and await store.head(records.info_key(upload_id))
        ):
            continue
        await store.abort_multipart(mpu.key, mpu.upload_id)
        report.aborted_multipart += 1
    for info in await store.list("names/"):
        raw = await store.get(info.key)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            upload_id = json.loads(raw or b"{}")["upload_id"]
            if await store.head(records.info_key(upload_id)) is not None:
                continue
        await store.delete(info.key)
        report.stale_names += 1
    for info in await store.list("webhook-replay/"):
        if now - info.last_modified > REPLAY_MARKER_AGE:
            await store.delete(info.key)
            report.replay_markers += 1
    for info in await store.list("joined/"):
        raw = await store.get(info.key)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            if float(json.loads(raw or b"{}")["expires_at"]) > now:
                continue
        await store.delete(info.key)
        report.joined_markers += 1
    report.store_leftovers = await store.housekeep()
    if retention is not None:
        for info in await store.list("files/"):
            if not info.key.endswith("/meta.json"):
                continue
            raw = await store.get(info.key)
            if raw is None:
                continue
            file = FileRecord.from_bytes(raw)
            if file.created_at + retention <= now and file.status != "pending":
                await delete_file(store, file)
                report.retention_deleted += 1
                audit(
                    "retention_deleted",
                    {"file_id": file.file_id, "ticket": file.ticket, "size": file.size},
                )
    return report


async def purge_ticket(store: ObjectStore, ticket: str) -> list[FileRecord]:
    """Delete every stored file of ``ticket`` (on request); returns what was deleted."""
    deleted = []
    for info in await store.list(f"by-ticket/{ticket}/"):
        file_id = info.key.rsplit("/", 1)[-1]
        raw = await store.get(records.meta_key(file_id))
        if raw is None:
            await store.delete(info.key)
            continue
        file = FileRecord.from_bytes(raw)
        if file.ticket != ticket:
            continue
        await delete_file(store, file)
        deleted.append(file)
    return deleted
