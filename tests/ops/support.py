"""Helpers shared by the operational tests: paced uploads, polling, log lines."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import GatewayProcess

T = TypeVar("T")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MiB = 1024 * 1024


def wait_until(
    probe: Callable[[], T | None], what: str, timeout: float = 60.0, interval: float = 0.1
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last seen: {last!r})")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


class PacedPut(threading.Thread):
    """A raw PUT that sends ``hold_at`` bytes, then waits for :meth:`release`.

    The body goes out with a Content-Length (not chunked), 256 KiB at a time,
    so the gateway sees an ordinary ``curl -T`` upload that stalls part way.
    ``response`` or ``error`` holds the outcome once the thread ends.
    """

    def __init__(self, url: str, data: bytes, hold_at: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.data = data
        self.hold_at = hold_at
        self.held = threading.Event()
        self._gate = threading.Event()
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None

    def release(self) -> None:
        self._gate.set()

    def _body(self) -> Iterator[bytes]:
        step = 256 * 1024
        for start in range(0, len(self.data), step):
            if start >= self.hold_at and not self._gate.is_set():
                self.held.set()
                self._gate.wait(120)
            yield self.data[start : start + step]

    def run(self) -> None:
        try:
            self.response = httpx.put(
                self.url,
                content=self._body(),
                headers={"Content-Length": str(len(self.data))},
                timeout=httpx.Timeout(120.0),
            )
        except BaseException as exc:  # reported to the test
            self.error = exc
        finally:
            self.held.set()


def put(link: str, filename: str, data: bytes, **headers: str) -> httpx.Response:
    return httpx.put(f"{link}/{quote(filename)}", content=data, headers=headers, timeout=120.0)


def receipts(link: str) -> dict[str, dict[str, Any]]:
    """The link's receipts by file name (GET /u/{token}/files)."""
    response = httpx.get(f"{link}/files", timeout=30.0)
    assert response.status_code == 200, response.text
    return {r["filename"]: r for r in response.json()["files"]}


def log_records(proc: GatewayProcess) -> list[dict[str, Any]]:
    """Every JSON line the gateway wrote to its log (the harness's own lines skipped)."""
    records = []
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith("--- start") or not line.strip():
            continue
        records.append(json.loads(line))
    return records


def scrape(proc: GatewayProcess) -> Samples:
    """GET /metrics, parsed: {(sample name, labels): value}."""
    response = httpx.get(f"{proc.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} not exported"
    return samples[key]


def idle(proc: GatewayProcess) -> Samples | None:
    """The scrape, if nothing is being received, buffered or waiting for delivery."""
    samples = scrape(proc)
    busy = (
        value(samples, "gateway_uploads_in_flight")
        or value(samples, "gateway_buffer_bytes_in_use")
        or value(samples, "gateway_deliveries_pending")
    )
    return None if busy else samples
