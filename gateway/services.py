"""The parts of a running gateway, built once from Settings and wired together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.delivery.outbox import Outbox
from gateway.instrument import InstrumentedStore, InstrumentedTickets
from gateway.links import Links
from gateway.metrics import Metrics
from gateway.oidc import Provider
from gateway.scan import Scanner, open_scanner
from gateway.settings import Settings
from gateway.store import open_store
from gateway.store.base import ObjectStore
from gateway.tickets.base import AttachmentLimited, TicketError, TicketSystem
from gateway.tickets.local import LocalTickets
from gateway.units import format_size
from gateway.uploads.budget import BufferBudget
from gateway.uploads.engine import UploadEngine
from gateway.uploads.limit import SizeLimit, size_limit, store_limit
from gateway.uploads.records import PARTIAL, FileRecord, UploadRecord
from gateway.uploads.repository import Records

audit = logging.getLogger("gateway.audit")
log = logging.getLogger("gateway")
# How long start-up waits to read a ticket system's attachment size setting.
ATTACHMENT_LIMIT_TIMEOUT = 10.0
TICKETS_CHECK_TIMEOUT = 10.0


@dataclass
class Services:
    settings: Settings
    store: ObjectStore
    records: Records  # every record in the store, by meaning (not by key)
    tickets: TicketSystem
    links: Links
    budget: BufferBudget
    engine: UploadEngine
    outbox: Outbox
    metrics: Metrics
    scanner: Scanner | None = None
    local_tickets: LocalTickets | None = None
    http_client: httpx.AsyncClient | None = None
    oidc: Provider | None = None  # engineer sign-in before downloads (GATEWAY_DOWNLOAD_AUTH)
    draining: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def size_limit(self) -> SizeLimit:
        """The largest file this process takes (computed once, at start-up)."""
        return self.links.limit

    def upload_started(self, record: UploadRecord) -> None:
        """Count and audit a new upload (every edge calls this once per upload).

        A tus partial upload is audited but not counted: it is a piece of a
        file, and the final upload that joins the pieces counts as the one
        upload, so started and finished uploads stay comparable.
        """
        if record.concat != PARTIAL:
            self.metrics.uploads_started.labels(record.protocol).inc()
        self.event(
            "upload_started",
            {"upload_id": record.id, "ticket": record.ticket, "link_id": record.link_id,
             "filename": record.filename, "length": record.length,
             "protocol": record.protocol, "concat": record.concat},
        )  # fmt: skip

    async def fit_attachment_max(self) -> None:
        """Lower the routing boundary to what the ticket system's own setting accepts.

        Asked once at start-up, of systems whose attachment size is a setting
        that can be read (Jira's site setting). If it cannot be read now, the
        configured boundary stands: a file the system refuses then shows as
        ``failed`` with the system's reason, never silently.
        """
        inner = getattr(self.tickets, "inner", self.tickets)
        if not isinstance(inner, AttachmentLimited):
            return
        try:
            async with asyncio.timeout(ATTACHMENT_LIMIT_TIMEOUT):
                limit = await inner.attachment_limit()
        except (TicketError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, TicketError) else "timed out"
            log.warning(
                "could not read the attachment size setting of %s (%s); files up to "
                "GATEWAY_ATTACHMENT_MAX=%s bytes are attached",
                self.settings.tickets,
                reason,
                f"{self.engine.attachment_max:,}",
            )
            return
        if limit < self.engine.attachment_max:
            log.warning(
                "GATEWAY_ATTACHMENT_MAX is %s bytes but %s takes attachments of at most %s "
                "bytes (its own setting): files up to that size are attached, larger ones are "
                "delivered as download links",
                f"{self.engine.attachment_max:,}",
                self.settings.tickets,
                f"{limit:,}",
            )
            self.engine.attachment_max = limit

    async def check_tickets(self) -> None:
        """Say at start-up, in one log line, when the ticket system is not usable.

        Refused credentials (401/403) are a configuration error: logged as an
        error naming the system, while ``/readyz`` keeps reporting them.
        """
        name = self.tickets.name
        try:
            await asyncio.wait_for(self.tickets.ping(), timeout=TICKETS_CHECK_TIMEOUT)
        except TicketError as exc:
            if exc.status in (401, 403):
                log.error("configuration error: %s refuses the credentials: %s", name, exc.message)
            else:
                log.warning("ticket system %s not reachable at start-up: %s", name, exc.message)
        except TimeoutError:
            log.warning(
                "ticket system %s did not answer within %.0f s at start-up",
                name,
                TICKETS_CHECK_TIMEOUT,
            )
        except Exception:  # a start-up courtesy: never let it break the process
            log.exception("checking ticket system %s at start-up failed", name)

    def event(self, name: str, fields: dict[str, Any]) -> None:
        """One structured audit line per event; never secrets or full tokens."""
        audit.info(name, extra={"event": name, "fields": fields})

    async def close(self) -> None:
        await self.engine.close()
        await self.outbox.stop()
        await self.tickets.close()
        await self.store.close()
        if self.http_client is not None:
            await self.http_client.aclose()
        if self.oidc is not None:
            await self.oidc.client.aclose()


def _ticket_http() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=10.0),
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
    )


def build_tickets(settings: Settings) -> tuple[TicketSystem, httpx.AsyncClient | None]:
    if settings.tickets == "zendesk":
        from gateway.tickets.zendesk import ZendeskTickets

        assert settings.zendesk is not None
        client = _ticket_http()
        return ZendeskTickets(settings.zendesk, client=client), client
    if settings.tickets == "jira":
        from gateway.tickets.jira import JiraTickets

        assert settings.jira is not None
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=10.0),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )
        return JiraTickets(settings.jira, client=client), client
    if settings.tickets == "freshdesk":
        from gateway.tickets.freshdesk import FreshdeskTickets

        assert settings.freshdesk is not None
        client = _ticket_http()
        return FreshdeskTickets(settings.freshdesk, client=client), client
    if settings.tickets == "servicenow":
        from gateway.tickets.servicenow import ServiceNowTickets

        assert settings.servicenow is not None
        client = _ticket_http()
        return ServiceNowTickets(settings.servicenow, client=client), client
    return LocalTickets(settings.data_dir / "tickets"), None


def build_services(
    settings: Settings,
    *,
    store: ObjectStore | None = None,
    tickets: TicketSystem | None = None,
    metrics: Metrics | None = None,
    batch_window: float = 1.0,
) -> Services:
    metrics = metrics or Metrics()
    _log_attachment_boundary(settings)
    raw_store = store or open_store(settings)
    # The largest file this process takes, computed once: every surface says this number.
    limit = size_limit(
        max_upload=settings.max_upload,
        buffer_memory=settings.buffer_memory,
        store_max=store_limit(raw_store),
        max_parts=settings.s3_max_parts,
    )
    log.info("%s", limit.describe())
    store = InstrumentedStore(raw_store, metrics)
    client = None
    if tickets is None:
        tickets, client = build_tickets(settings)
    local = tickets if isinstance(tickets, LocalTickets) else None
    tickets = InstrumentedTickets(tickets, metrics)
    links = Links(settings, limit=limit)
    metrics.buffer_bytes_limit.set(settings.buffer_memory)
    budget = BufferBudget(settings.buffer_memory, on_change=metrics.buffer_bytes_in_use.set)
    scanner = open_scanner(settings.clamd)
    holder: dict[str, Services] = {}

    def event(name: str, fields: dict[str, Any]) -> None:  # the Services built below audit it
        holder["s"].event(name, fields)

    outbox = Outbox(
        store, tickets, links, public_comments=settings.public_comments,
        batch_window=batch_window, scanner=scanner, max_scan=settings.clamd_max_scan,
        scan_oversize=settings.scan_oversize, on_event=_counting_events(metrics, event),
    )  # fmt: skip
    engine = UploadEngine(
        store, budget, attachment_max=settings.attachment_max,
        on_finished=_finished_uploads(metrics, outbox, event),
        scan_required=scanner is not None, lease_wait=settings.busy_wait, limit=limit,
    )  # fmt: skip
    services = Services(
        settings=settings, store=store, records=Records(store), tickets=tickets, links=links,
        budget=budget,
        engine=engine, outbox=outbox, metrics=metrics, scanner=scanner,
        local_tickets=local, http_client=client, oidc=_oidc_provider(settings, links),
    )  # fmt: skip
    holder["s"] = services
    return services


def _log_attachment_boundary(settings: Settings) -> None:
    """Say at start-up which files go to tickets as attachments, and why when lowered."""
    if settings.attachment_max_requested is not None:
        log.warning(
            "GATEWAY_ATTACHMENT_MAX is %s but GATEWAY_TICKETS=%s takes attachments of at most "
            "%s bytes: files up to that size are attached, larger ones are delivered as "
            "download links",
            format_size(settings.attachment_max_requested),
            settings.tickets,
            f"{settings.attachment_max:,}",
        )
    elif settings.tickets != "local":
        log.info(
            "files up to %s (%s bytes, GATEWAY_ATTACHMENT_MAX) are attached to %s tickets, "
            "larger ones are delivered as download links",
            format_size(settings.attachment_max),
            f"{settings.attachment_max:,}",
            settings.tickets,
        )


Event = Callable[[str, dict[str, Any]], None]


def _counting_events(metrics: Metrics, event: Event) -> Event:
    """The outbox's events: counted in the metrics, then audited."""

    def on_event(name: str, fields: dict[str, Any]) -> None:
        if name == "delivered":
            metrics.deliveries.labels("delivered").inc()
        elif name == "delivery_retry":
            metrics.deliveries.labels("failed" if fields.get("refused") else "retried").inc()
        elif name == "scanned":
            result = str(fields.get("result", ""))
            metrics.scans.labels(result.split(":", 1)[0] if result else "error").inc()
        event(name, fields)

    return on_event


def _finished_uploads(
    metrics: Metrics, outbox: Outbox, event: Event
) -> Callable[[FileRecord], Awaitable[None]]:
    """What the engine does with a file whose bytes are durable: queue, count, audit."""

    async def on_finished(file: FileRecord) -> None:
        await outbox.enqueue(file)
        metrics.uploads_finished.labels(file.protocol, file.route).inc()
        event(
            "upload_finished",
            {"file_id": file.file_id, "ticket": file.ticket, "link_id": file.link_id,
             "filename": file.filename, "size": file.size, "sha256": file.sha256,
             "route": file.route, "protocol": file.protocol,
             "scan_required": file.scan_required},
        )  # fmt: skip

    return on_finished


def _oidc_provider(settings: Settings, links: Links) -> Provider | None:
    """Engineer sign-in before downloads, when GATEWAY_DOWNLOAD_AUTH=oidc."""
    if settings.oidc is None:
        return None
    return Provider(
        settings.oidc,
        f"{settings.public_url}/auth/callback",
        httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)),
        clock=links.clock,
    )
