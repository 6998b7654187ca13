"""The durable delivery outbox.

A finished file is recorded in the outbox (``records.outbox``) before its
receipt goes out. A worker in every replica lists the outbox, groups entries by ticket,
waits a short batching window so that files finishing close together share
one comment, takes the ticket's lease, asks the ticket which of the files'
markers it already shows (a crash between posting and recording), posts one
comment for the rest and records them delivered. Failures back off with
jitter; 429 and 503 honour ``Retry-After``; refusals (401/403/404/422) are
shown as ``failed`` with the reason and retried only rarely (and at once
after a restart, which is how a fixed configuration takes effect).

An expired Zendesk upload token is not a refusal: the ticket client uploads
the files again within the same call, and if even the fresh tokens are
refused the batch is retried with backoff like any transient failure, so a
file is never parked or dropped because of a token's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway.backoff import backoff as shared_backoff
from gateway.delivery import comments
from gateway.errors import GatewayError
from gateway.links import Links
from gateway.scan import (
    CLAMD_MAX_SCAN,
    NOT_SCANNED_TOO_LARGE,
    Scanner,
    ScannerUnavailable,
    describe,
    scan_file,
)
from gateway.store.base import ObjectStore, StorageError
from gateway.tickets.base import AttachmentSource, NewComment, TicketError, TicketSystem
from gateway.uploads.records import FileRecord, OutboxEntry
from gateway.uploads.repository import Records

log = logging.getLogger("gateway.delivery")

BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0
REFUSED_RETRY = 1800.0
# The per-ticket delivery lease. A replica that dies holding it blocks the
# ticket's deliveries for at most this long; the holder renews it every third.
LEASE_TTL = 15.0


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt ``attempts + 1``: exponential, jittered, capped.

    A server's ``Retry-After`` wins (bounded to an hour), plus a little jitter
    so that replicas do not all come back in the same instant.
    """
    if retry_after is not None:
        return float(min(max(retry_after, 0.5), 3600.0)) + random.uniform(0, 0.5)
    return shared_backoff(attempts, BACKOFF_BASE, BACKOFF_MAX)


def is_refusal(exc: TicketError) -> bool:
    """Whether retrying soon cannot help (bad credentials, unknown ticket, invalid comment).

    An upload token that expired or was already used (Zendesk answers 422
    naming ``uploads``) is the exception: a new attempt uploads the files
    afresh, so it is retried like a transient failure.
    """
    if exc.retryable:
        return False
    text = exc.message.lower()
    return not (
        exc.status == 422 and "uploads" in text and ("expired" in text or "invalid" in text)
    )


def batches(
    lines: list[comments.CommentLine], cap: int, max_files: int | None = None
) -> list[list[comments.CommentLine]]:
    """Split lines into comments whose attachments total at most ``cap`` bytes.

    Link and quarantine lines weigh nothing; a single attachment larger than
    the cap still gets a comment of its own (the ticket system then refuses
    it, visibly, rather than the file being left out). ``max_files`` caps the
    files one comment names, for systems whose comments have a length limit.
    """
    out: list[list[comments.CommentLine]] = []
    current: list[comments.CommentLine] = []
    used = 0
    for line in lines:
        weight = line.file.size if line.download_url is None and not line.withheld else 0
        full = max_files is not None and len(current) >= max_files
        if current and (used + weight > cap or full):
            out.append(current)
            current, used = [], 0
        current.append(line)
        used += weight
    if current:
        out.append(current)
    return out


class Outbox:
    def __init__(
        self,
        store: ObjectStore,
        tickets: TicketSystem,
        links: Links,
        *,
        public_comments: bool = False,
        batch_window: float = 1.0,
        batch_max_wait: float = 10.0,
        poll_interval: float = 5.0,
        scanner: Scanner | None = None,
        max_scan: int = CLAMD_MAX_SCAN,
        scan_oversize: str = "deliver",
        clock: Callable[[], float] = time.time,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.records = Records(store)
        self.tickets = tickets
        self.links = links
        self.public_comments = public_comments
        self.batch_window = batch_window
        self.batch_max_wait = batch_max_wait
        self.poll_interval = poll_interval
        self.scanner = scanner
        self.max_scan = max_scan
        self.scan_oversize = scan_oversize
        self.clock = clock
        self.on_event = on_event or (lambda _name, _fields: None)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # file_id -> enqueued_at of what is waiting: the last listing of the
        # outbox (all replicas' files), kept current by this process's own
        # enqueues and deliveries between listings.
        self._waiting: dict[str, float] = {}
        self._first_pass = True
        self.scanner_ok = True
        # Files that must be scanned, left alone here because this process has no
        # scanner (gauge ``gateway_deliveries_waiting_for_scanner``, ``/readyz``).
        self.waiting_for_scanner = 0

    @property
    def pending(self) -> int:
        """Files waiting for delivery (gauge ``gateway_deliveries_pending``)."""
        return len(self._waiting)

    @property
    def oldest_age(self) -> float:
        """Seconds the oldest waiting file has waited, now (0 when none waits)."""
        if not self._waiting:
            return 0.0
        return max(0.0, self.clock() - min(self._waiting.values()))

    # -- the producer side ----------------------------------------------------------

    async def enqueue(self, file: FileRecord) -> None:
        """Durably record that ``file`` must be delivered (before its receipt is sent)."""
        entry = OutboxEntry(
            file_id=file.file_id,
            ticket=file.ticket,
            enqueued_at=self.clock(),
            scan_required=file.scan_required or self.scanner is not None,
        )
        await self.records.outbox.save(entry)
        self._waiting[file.file_id] = entry.enqueued_at
        self._wake.set()

    # -- the worker -------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="delivery-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            # Cleared before the pass, so an enqueue during it wakes the next one.
            self._wake.clear()
            try:
                delay = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery pass failed")
                delay = self.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            if self.batch_window:
                await asyncio.sleep(min(self.batch_window, 0.25))

    async def run_once(self) -> float:
        """One pass over the outbox; returns how long to sleep before the next."""
        now = self.clock()
        entries = await self.records.outbox.pending()
        self._waiting = {e.file_id: e.enqueued_at for e in entries}
        if self._first_pass:
            # Refusals are parked for a long time; a restart (new credentials,
            # a reopened ticket) deserves one prompt try.
            for entry in entries:
                if entry.refused:
                    entry.next_at = 0.0
            self._first_pass = False
        entries = self._deliverable(entries)
        by_ticket: dict[str, list[OutboxEntry]] = defaultdict(list)
        for entry in entries:
            by_ticket[entry.ticket].append(entry)
        sleep = self.poll_interval
        for ticket, group in by_ticket.items():
            due = [e for e in group if e.next_at <= now]
            if not due:
                sleep = min(sleep, min(e.next_at for e in group) - now)
                continue
            newest = max(e.enqueued_at for e in due)
            oldest = min(e.enqueued_at for e in due)
            if now - newest < self.batch_window and now - oldest < self.batch_max_wait:
                sleep = min(sleep, self.batch_window - (now - newest))
                continue
            try:
                async with self.records.outbox.lease(ticket, LEASE_TTL):
                    await self._deliver(ticket, due)
            except GatewayError:
                # Another replica holds this ticket's lease (or a dead one's
                # lease has not run out yet): look again soon.
                sleep = min(sleep, LEASE_TTL / 3)
                continue
            except StorageError as exc:
                log.warning("storage failed during delivery to ticket %s: %s", ticket, exc)
        return max(0.05, sleep)

    def _deliverable(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        """The entries this process may deliver: without a scanner, none that need one."""
        if self.scanner is not None:
            self.waiting_for_scanner = 0
            return entries
        held = [e for e in entries if e.scan_required]
        if len(held) != self.waiting_for_scanner:
            if held:
                log.warning(
                    "%d file(s) must be scanned before delivery and this process has no "
                    "scanner (GATEWAY_CLAMD unset): leaving them to a process that scans",
                    len(held),
                )
            self.waiting_for_scanner = len(held)
        return [e for e in entries if not e.scan_required]

    # -- one ticket --------------------------------------------------------------------

    async def _deliver(self, ticket: str, entries: list[OutboxEntry]) -> None:
        files = await self._still_due(entries)
        if not files:
            return
        lines: list[comments.CommentLine] = []
        try:
            for _entry, file in files:
                lines.append(await self._prepare(file))
        except ScannerUnavailable as exc:
            self.scanner_ok = False
            await self._retry(files, f"waiting for the malware scanner: {exc}", None, refused=False)
            return
        self.scanner_ok = True
        markers = [comments.marker(f.file_id) for _, f in files]
        try:
            present = await self.tickets.find_markers(ticket, markers)
        except TicketError as exc:
            log.warning("delivery to ticket %s failed: %s", ticket, exc.message)
            await self._retry(files, exc.message, exc.retry_after, refused=is_refusal(exc))
            return
        done = [(e, f) for e, f in files if comments.marker(f.file_id) in present]
        for entry, file in done:
            await self._mark_delivered(entry, file)
        todo = [line for line in lines if comments.marker(line.file.file_id) not in present]
        await self._post(ticket, files, todo)

    async def _still_due(self, entries: list[OutboxEntry]) -> list[tuple[OutboxEntry, FileRecord]]:
        """The entries re-read under the lease (another replica may have delivered some
        meanwhile), with their files; an entry whose file is gone is dropped."""
        files: list[tuple[OutboxEntry, FileRecord]] = []
        for listed in entries:
            entry = await self.records.outbox.load(listed.file_id)
            if entry is None or (self.scanner is None and entry.scan_required):
                continue
            file = await self.records.files.load(entry.file_id)
            if file is None:
                await self.records.outbox.remove(entry.file_id)
                continue
            files.append((entry, file))
        return files

    async def _post(
        self,
        ticket: str,
        files: list[tuple[OutboxEntry, FileRecord]],
        lines: list[comments.CommentLine],
    ) -> None:
        """Post ``lines`` as comments in batches; after a transient failure the rest wait."""
        deferred: TicketError | None = None
        for batch in self._batches(lines):
            batch_files = [(e, f) for e, f in files if any(line.file is f for line in batch)]
            if deferred is not None:
                # The ticket system just asked us to wait: do not hammer it
                # with the rest of this ticket's batches.
                await self._retry(
                    batch_files, deferred.message, deferred.retry_after, refused=False
                )
                continue
            try:
                await self.tickets.post_comment(ticket, self._comment(batch))
            except TicketError as exc:
                log.warning("delivery to ticket %s failed: %s", ticket, exc.message)
                refused = is_refusal(exc)
                await self._retry(batch_files, exc.message, exc.retry_after, refused=refused)
                if not refused:
                    deferred = exc
                continue
            for entry, file in batch_files:
                await self._mark_delivered(entry, file)

    def _comment(self, batch: list[comments.CommentLine]) -> NewComment:
        return NewComment(
            body=comments.render(batch),
            public=self.public_comments,
            attachments=[
                self._attachment(line.file)
                for line in batch
                if line.download_url is None and not line.withheld
            ],
        )

    def _batches(self, lines: list[comments.CommentLine]) -> list[list[comments.CommentLine]]:
        """Split lines so each comment's attachments stay within the ticket system's cap."""
        # A system whose comments have a length limit names how many files fit.
        max_files = getattr(self.tickets, "max_comment_files", None)
        return batches(lines, self.tickets.max_comment_attachments, max_files)

    async def _prepare(self, file: FileRecord) -> comments.CommentLine:
        if self.scanner is not None and file.scan is None:
            verdict = await scan_file(
                self.scanner, self._reader(file), file.size, self.max_scan
            )  # ScannerUnavailable passes: nothing was learned, delivery waits
            file.scan, file.scan_limit = verdict.value, verdict.limit
            await self.records.files.save(file)
            self.on_event(
                "scanned",
                {"file_id": file.file_id, "ticket": file.ticket, "filename": file.filename,
                 "size": file.size, "result": file.scan,
                 "detail": describe(file.scan, file.scan_limit)},
            )  # fmt: skip
        if file.scan and file.scan.startswith("infected:"):
            await self._quarantine(file, "Malware detected; the file is kept in quarantine.")
            return comments.CommentLine(file=file, infected=file.scan.split(":", 1)[1])
        caveat = None
        if file.scan == NOT_SCANNED_TOO_LARGE:
            caveat = describe(file.scan, file.scan_limit)
            if self.scan_oversize == "quarantine":
                await self._quarantine(file, f"The file was {caveat}; it is kept in quarantine.")
                return comments.CommentLine(file=file, held=caveat)
        if file.route == "storage":
            url, expires_at = self.links.download_url(file.file_id, file.filename)
            return comments.CommentLine(
                file=file, download_url=url, link_expires_at=expires_at, caveat=caveat
            )
        return comments.CommentLine(file=file, caveat=caveat)

    async def _quarantine(self, file: FileRecord, detail: str) -> None:
        if file.status != "quarantined":
            file.status = "quarantined"
            file.status_detail = detail
            await self.records.files.save(file)

    def _reader(self, file: FileRecord) -> AsyncIterator[bytes]:
        return self.records.files.read(file.file_id)

    def _attachment(self, file: FileRecord) -> AttachmentSource:
        return AttachmentSource(
            filename=file.filename,
            size=file.size,
            content_type=file.content_type,
            open=lambda: self._reader(file),
            sha256=file.sha256,
        )

    async def _mark_delivered(self, entry: OutboxEntry, file: FileRecord) -> None:
        if file.status != "quarantined":
            file.status = "delivered"
            file.status_detail = ""
        file.delivered_at = self.clock()
        await self.records.files.save(file)
        await self.records.outbox.remove(entry.file_id)
        self._waiting.pop(entry.file_id, None)
        self.on_event(
            "delivered",
            {"file_id": file.file_id, "ticket": file.ticket, "route": file.route,
             "size": file.size, "status": file.status},
        )  # fmt: skip

    async def _retry(
        self,
        files: list[tuple[OutboxEntry, FileRecord]],
        reason: str,
        retry_after: float | None,
        *,
        refused: bool,
    ) -> None:
        now = self.clock()
        for entry, file in files:
            entry.attempts += 1
            entry.last_error = reason
            entry.refused = refused
            entry.next_at = now + (
                REFUSED_RETRY if refused else backoff(entry.attempts, retry_after)
            )
            await self.records.outbox.save(entry)
            status = "failed" if refused else "pending"
            detail = (
                f"The ticket system refused the delivery: {reason}"
                if refused
                else f"Delivery will be retried: {reason}"
            )
            if file.status != "quarantined" and (file.status, file.status_detail) != (
                status,
                detail,
            ):
                file.status, file.status_detail = status, detail
                await self.records.files.save(file)
        self.on_event("delivery_retry", {"ticket": files[0][1].ticket, "reason": reason,
                                         "refused": refused, "files": len(files)})  # fmt: skip
