"""Housekeeping: expired uploads, abandoned multipart uploads, retention, purge.

Everything is found by listing the store, so any replica (or a cron job
running ``gateway sweep``) can do it. Safe to run at any time and often.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError
from gateway.uploads.engine import UploadEngine
from gateway.uploads.records import FileRecord
from gateway.uploads.repository import Records

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


Audit = Callable[[str, dict[str, Any]], None]


async def sweep(
    records: Records,
    engine: UploadEngine,
    *,
    retention: float | None,
    clock: Callable[[], float] = time.time,
    multipart_age: float = ABANDONED_MULTIPART_AGE,
    on_event: Audit | None = None,
) -> SweepReport:
    """One pass; ``on_event`` receives an audit event for every upload or file removed."""
    audit = on_event or (lambda _name, _fields: None)
    report = SweepReport()
    now = clock()
    live_multipart = await _expire_uploads(records, engine, now, report, audit)
    unowned = [
        m for m in await records.files.multipart_uploads() if m.upload_id not in live_multipart
    ]
    unowned += await records.uploads.orphan_segments()
    for mpu in unowned:
        if now - mpu.initiated >= multipart_age:
            await records.abort_multipart(mpu)
            report.aborted_multipart += 1
    report.stale_names = await records.names.drop_stale(records.uploads)
    report.replay_markers = await records.replays.drop_older_than(REPLAY_MARKER_AGE, now)
    report.joined_markers = await records.joined.drop_expired(now)
    report.store_leftovers = await records.store.housekeep()
    if retention is not None:
        await _apply_retention(records, retention, now, report, audit)
    return report


async def _expire_uploads(
    records: Records, engine: UploadEngine, now: float, report: SweepReport, audit: Audit
) -> set[str]:
    """Terminate the unfinished uploads that expired; the multipart ids of the live ones."""
    live_multipart: set[str] = set()

    def unreadable(key: str) -> None:
        report.errors.append(f"unreadable upload record {key}")

    async for record in records.uploads.all(unreadable):
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
    return live_multipart


async def _apply_retention(
    records: Records, retention: float, now: float, report: SweepReport, audit: Audit
) -> None:
    """Delete the delivered (or parked) files older than ``retention`` seconds."""
    async for file in records.files.all():
        if file.created_at + retention <= now and file.status != "pending":
            await records.files.remove(file)
            report.retention_deleted += 1
            audit(
                "retention_deleted",
                {"file_id": file.file_id, "ticket": file.ticket, "size": file.size},
            )


async def purge_ticket(records: Records, ticket: str) -> list[FileRecord]:
    """Delete every stored file of ``ticket`` (on request); returns what was deleted."""
    deleted = await records.tickets.files(ticket, prune=True)
    for file in deleted:
        await records.files.remove(file)
    return deleted
