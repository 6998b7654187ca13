"""Prometheus metric definitions, in a registry of their own.

The series names are part of the operator's contract: the alert rules in
``deploy/prometheus/alerts.yaml`` and the dashboard in ``deploy/grafana/`` are
written against them, and the deploy tests check that every name those files
use is rendered here. Rename nothing without updating both.

Each :class:`Metrics` owns a fresh :class:`CollectorRegistry` instead of the
process-global default one, so an app (and every test) gets its own counters
that start at zero, and two apps in one process never collide.

Label values that come from a small fixed set (protocols, routes, results)
are created up front, so their series exist at zero from the first scrape and
``rate()`` and ``increase()`` work from the first event instead of missing it.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

# The classic text format, understood by every Prometheus and agent version.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PROTOCOLS = ("put", "form", "tus")
ROUTES = ("attachment", "storage")
DELIVERY_RESULTS = ("delivered", "failed", "retried")
SCAN_RESULTS = ("clean", "infected", "not_scanned", "error")
LINK_SOURCES = ("cli", "api", "webhook")
READY_CHECKS = ("storage", "tickets")

# Store calls range from a HEAD (milliseconds) to a 5 GiB part upload (minutes).
STORAGE_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
# Ticket API calls include attachment uploads of up to GATEWAY_ATTACHMENT_MAX.
TICKET_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Every series the gateway exports, built once per app.

    The app creates one at start-up, hands it to the parts that count things
    and serves :meth:`render` at ``GET /metrics``.
    """

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process:
            # process_resident_memory_bytes and friends, for the memory panels.
            ProcessCollector(registry=self.registry)
        self._intake(self.registry)
        self._delivery(self.registry)
        self._backends(self.registry)
        self._downloads_and_links(self.registry)
        self._create_fixed_series()

    def _intake(self, r: CollectorRegistry) -> None:
        self.uploads_started = Counter(
            "gateway_uploads_started_total",
            "Uploads begun, by protocol (put, form, tus); tus partial uploads are not counted.",
            ["protocol"],
            registry=r,
        )
        self.uploads_finished = Counter(
            "gateway_uploads_finished_total",
            "Uploads whose bytes are durable in storage, by protocol and delivery route.",
            ["protocol", "route"],
            registry=r,
        )
        self.uploads_failed = Counter(
            "gateway_uploads_failed_total",
            "Uploads that ended in an error, by protocol and error code.",
            ["protocol", "reason"],
            registry=r,
        )
        self.bytes_received = Counter(
            "gateway_bytes_received_total",
            "Request body bytes accepted into the intake pipeline.",
            ["protocol"],
            registry=r,
        )
        self.uploads_in_flight = Gauge(
            "gateway_uploads_in_flight",
            "Uploads currently receiving bytes in this process.",
            registry=r,
        )
        self.buffer_bytes_in_use = Gauge(
            "gateway_buffer_bytes_in_use",
            "Bytes of the part-buffer memory budget currently held.",
            registry=r,
        )
        self.buffer_bytes_limit = Gauge(
            "gateway_buffer_bytes_limit",
            "The part-buffer memory budget (GATEWAY_BUFFER_MEMORY).",
            registry=r,
        )

    def _delivery(self, r: CollectorRegistry) -> None:
        """The delivery outbox."""
        self.deliveries_pending = Gauge(
            "gateway_deliveries_pending",
            "Finished files not yet announced on their ticket.",
            registry=r,
        )
        self.deliveries_waiting_for_scanner = Gauge(
            "gateway_deliveries_waiting_for_scanner",
            "Files that must be scanned and that this process, having no scanner, leaves "
            "to a process that scans (0 in a process that scans).",
            registry=r,
        )
        self.delivery_oldest_age = Gauge(
            "gateway_delivery_oldest_age_seconds",
            "Age of the oldest pending delivery (0 when none is pending).",
            registry=r,
        )
        self.deliveries = Counter(
            "gateway_deliveries_total",
            "Delivery attempts by result (delivered, failed, retried).",
            ["result"],
            registry=r,
        )

    def _backends(self, r: CollectorRegistry) -> None:
        """Object store, ticket system, scanner, readiness."""
        self.storage_request_seconds = Histogram(
            "gateway_storage_request_seconds",
            "Duration of object-store calls, by operation.",
            ["op"],
            buckets=STORAGE_BUCKETS,
            registry=r,
        )
        self.storage_errors = Counter(
            "gateway_storage_errors_total",
            "Object-store calls that failed, by operation.",
            ["op"],
            registry=r,
        )
        self.ticket_request_seconds = Histogram(
            "gateway_ticket_request_seconds",
            "Duration of ticket-system calls, by operation.",
            ["op"],
            buckets=TICKET_BUCKETS,
            registry=r,
        )
        self.ticket_errors = Counter(
            "gateway_ticket_errors_total",
            "Ticket-system calls that failed, by operation and HTTP status (or 'error').",
            ["op", "status"],
            registry=r,
        )
        self.scans = Counter(
            "gateway_scans_total",
            "Malware scans of finished files, by result (clean, infected, not_scanned, error).",
            ["result"],
            registry=r,
        )
        self.ready = Gauge(
            "gateway_ready",
            "1 when the last readiness check of a dependency passed, else 0.",
            ["check"],
            registry=r,
        )

    def _downloads_and_links(self, r: CollectorRegistry) -> None:
        self.downloads = Counter(
            "gateway_downloads_total",
            "Download requests served from signed links.",
            registry=r,
        )
        self.download_bytes = Counter(
            "gateway_download_bytes_total",
            "Bytes sent to downloaders.",
            registry=r,
        )
        self.download_redirects = Counter(
            "gateway_download_redirects_total",
            "Download requests answered with a redirect to presigned storage "
            "(GATEWAY_DOWNLOAD_REDIRECT): their bytes do not pass through the gateway.",
            registry=r,
        )
        self.links_minted = Counter(
            "gateway_links_minted_total",
            "Upload links minted, by source (cli, api, webhook).",
            ["via"],
            registry=r,
        )

    def _create_fixed_series(self) -> None:
        """Series of labels from a fixed set exist at zero from the first scrape."""
        for protocol in PROTOCOLS:
            self.uploads_started.labels(protocol)
            self.bytes_received.labels(protocol)
            for route in ROUTES:
                self.uploads_finished.labels(protocol, route)
        for result in DELIVERY_RESULTS:
            self.deliveries.labels(result)
        for result in SCAN_RESULTS:
            self.scans.labels(result)
        for via in LINK_SOURCES:
            self.links_minted.labels(via)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE

    def series_names(self) -> set[str]:
        """Every series name this registry can render, with the suffixes of its type.

        Worked out from the metric families rather than from the current
        samples, so a labelled counter that has not counted yet (and so renders
        no sample) still counts as defined.
        """
        names: set[str] = set()
        for family in self.registry.collect():
            suffixes = _SUFFIXES.get(family.type, ("",))
            names.update(family.name + suffix for suffix in suffixes)
            names.update(sample.name for sample in family.samples)
        return names


_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}
