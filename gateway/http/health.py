"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.http.context import services_of
from gateway.scan import ScanFailure
from gateway.store.base import StorageError
from gateway.tickets.base import TicketError


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _check(name: str, probe: Any) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(probe, timeout=5.0)
        return name, None
    except TimeoutError:
        return name, "timed out"
    except TicketError as exc:
        if exc.status in (401, 403):
            kind = "unauthorized"
        elif exc.retryable or exc.status is None:
            kind = "unreachable"
        else:
            kind = "misconfigured"  # it answered, and trying again will not help
        return name, f"{kind}: {exc.message}"
    except (StorageError, ScanFailure, OSError) as exc:
        return name, str(exc) or type(exc).__name__


async def readyz(request: Request) -> Response:
    services = services_of(request)
    probes = [_check("storage", services.store.ping()), _check("tickets", services.tickets.ping())]
    if services.scanner is not None:
        probes.append(_check("scanner", services.scanner.ping()))
    results = dict(await asyncio.gather(*probes))
    for name, problem in results.items():
        services.metrics.ready.labels(name).set(0 if problem else 1)
    ok = all(problem is None for problem in results.values()) and not services.draining
    body: dict[str, Any] = {
        "status": "ready" if ok else "not ready",
        "checks": {name: problem or "ok" for name, problem in results.items()},
        "deliveries_pending": services.outbox.pending,
        "oldest_pending_seconds": round(services.outbox.oldest_age, 1),
        # The largest file this process takes (what Tus-Max-Size and the page say).
        "max_upload": services.size_limit.largest,
        "max_upload_streamed": services.size_limit.streamed,
        "max_upload_set_by": services.size_limit.reason,
    }
    waiting = services.outbox.waiting_for_scanner
    if waiting:
        # Not a failed check: this process still takes uploads; another one scans them.
        body["waiting_for_scanner"] = waiting
        body["warnings"] = [
            f"{waiting} file(s) must be scanned before delivery and this process has no "
            "scanner (GATEWAY_CLAMD unset); a process that scans will deliver them"
        ]
    if services.draining:
        body["checks"]["shutdown"] = "draining: this process is shutting down"
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    services = services_of(request)
    services.metrics.deliveries_pending.set(services.outbox.pending)
    services.metrics.delivery_oldest_age.set(services.outbox.oldest_age)
    services.metrics.deliveries_waiting_for_scanner.set(services.outbox.waiting_for_scanner)
    body, content_type = services.metrics.render()
    return Response(body, media_type=content_type)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
