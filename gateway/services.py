"""The parts of a running gateway, built once from Settings and wired together."""

from __future__ import annotations

import logging
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
from gateway.tickets.base import TicketSystem
from gateway.tickets.local import LocalTickets
from gateway.units import format_size
from gateway.uploads.budget import BufferBudget
from gateway.uploads.engine import UploadEngine
from gateway.uploads.partsize import MAX_PARTS, max_part_for_budget
from gateway.uploads.records import PARTIAL, FileRecord, UploadRecord

audit = logging.getLogger("gateway.audit")


@dataclass
class Services:
    settings: Settings
    store: ObjectStore
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


def build_tickets(settings: Settings) -> tuple[TicketSystem, httpx.AsyncClient | None]:
    if settings.tickets == "zendesk":
        from gateway.tickets.zendesk import ZendeskTickets

        assert settings.zendesk is not None
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=10.0),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )
        return ZendeskTickets(settings.zendesk, client=client), client
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
    largest = max_part_for_budget(settings.buffer_memory) * MAX_PARTS
    if settings.max_upload > largest:
        logging.getLogger("gateway").info(
            "GATEWAY_MAX_UPLOAD is %s but GATEWAY_BUFFER_MEMORY=%s holds parts for files up to "
            "%s (10,000 parts of at most half the budget); larger files are refused with 413 "
            "until the budget grows",
            format_size(settings.max_upload),
            format_size(settings.buffer_memory),
            format_size(largest),
        )
    store = InstrumentedStore(store or open_store(settings), metrics)
    client = None
    if tickets is None:
        tickets, client = build_tickets(settings)
    local = tickets if isinstance(tickets, LocalTickets) else None
    tickets = InstrumentedTickets(tickets, metrics)
    links = Links(settings)
    metrics.buffer_bytes_limit.set(settings.buffer_memory)
    budget = BufferBudget(settings.buffer_memory, on_change=metrics.buffer_bytes_in_use.set)
    scanner = open_scanner(settings.clamd)
    holder: dict[str, Services] = {}

    def on_event(name: str, fields: dict[str, Any]) -> None:
        if name == "delivered":
            metrics.deliveries.labels("delivered").inc()
        elif name == "delivery_retry":
            metrics.deliveries.labels("failed" if fields.get("refused") else "retried").inc()
        elif name == "scanned":
            result = str(fields.get("result", ""))
            metrics.scans.labels(result.split(":", 1)[0] if result else "error").inc()
        holder["s"].event(name, fields)

    outbox = Outbox(
        store,
        tickets,
        links,
        public_comments=settings.public_comments,
        batch_window=batch_window,
        scanner=scanner,
        on_event=on_event,
    )

    async def on_finished(file: FileRecord) -> None:
        await outbox.enqueue(file)
        metrics.uploads_finished.labels(file.protocol, file.route).inc()
        holder["s"].event(
            "upload_finished",
            {"file_id": file.file_id, "ticket": file.ticket, "link_id": file.link_id,
             "filename": file.filename, "size": file.size, "sha256": file.sha256,
             "route": file.route, "protocol": file.protocol},
        )  # fmt: skip

    engine = UploadEngine(
        store, budget, attachment_max=settings.attachment_max, on_finished=on_finished
    )
    services = Services(
        settings=settings,
        store=store,
        tickets=tickets,
        links=links,
        budget=budget,
        engine=engine,
        outbox=outbox,
        metrics=metrics,
        scanner=scanner,
        local_tickets=local,
        http_client=client,
    )
    if settings.oidc is not None:
        services.oidc = Provider(
            settings.oidc,
            f"{settings.public_url}/auth/callback",
            httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)),
            clock=links.clock,
        )
    holder["s"] = services
    return services
