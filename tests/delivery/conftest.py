"""Gateways delivering to the Zendesk emulator, and helpers to watch what lands.

Every gateway here is a real process (``python -m gateway serve``) with
``GATEWAY_TICKETS=zendesk`` pointing at the session's emulator; the store is
the file store or a fresh SeaweedFS bucket. Tests never assert on time: they
poll with :func:`wait_until` under a generous deadline.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx
import pytest

from tests.support.gateway import GatewayProcess, gateway_env, start_gateway
from tests.support.zendesk import ZendeskEmulator

T = TypeVar("T")
MiB = 1024 * 1024
DEADLINE = 90.0
MARKER = re.compile(r"\[upload-gateway file ([A-Za-z0-9]+)\]")


def wait_until(
    probe: Callable[[], T | None], what: str, timeout: float = DEADLINE, interval: float = 0.2
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


class GatewayFactory(Protocol):
    def __call__(
        self, storage: str = "file", auth: str = "oauth", **extra: str
    ) -> GatewayProcess: ...


@pytest.fixture
def zendesk_gateway(
    request: pytest.FixtureRequest, tmp_path: Path, zendesk_api: ZendeskEmulator
) -> Iterator[GatewayFactory]:
    """Start gateways that deliver to the emulator; all are killed at the end."""
    started: list[GatewayProcess] = []

    def make(storage: str = "file", auth: str = "oauth", **extra: str) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(started)}"
        env = gateway_env(workdir, **zendesk_api.env(auth))
        if storage == "s3":
            seaweed = request.getfixturevalue("seaweed")
            bucket = request.getfixturevalue("s3_bucket")
            env.update(GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET=bucket, **seaweed.env())
        elif storage != "file":
            raise ValueError(f"unknown storage {storage!r}")
        env.update(extra)
        proc = start_gateway(workdir, env)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest) -> str:
    """Run a test on both stores."""
    return str(request.param)


# -- talking to the gateway -----------------------------------------------------------


def token_of(link: str) -> str:
    return link.rstrip("/").rsplit("/u/", 1)[1]


def upload(link: str, filename: str, data: bytes) -> dict[str, Any]:
    response = httpx.put(f"{link}/{quote(filename)}", content=data, timeout=120.0)
    assert response.status_code == 201, response.text
    receipt: dict[str, Any] = response.json()
    return receipt


def receipts(link: str) -> dict[str, dict[str, Any]]:
    """The link's receipts by file id (GET /u/{token}/files)."""
    response = httpx.get(f"{link}/files", timeout=30.0)
    assert response.status_code == 200, response.text
    return {r["file_id"]: r for r in response.json()["files"]}


def all_delivered(link: str, count: int) -> dict[str, dict[str, Any]] | None:
    found = receipts(link)
    if len(found) == count and all(r["status"] == "delivered" for r in found.values()):
        return found
    return None


# -- reading the emulator ---------------------------------------------------------------


def markers(zendesk: ZendeskEmulator, ticket: int | str) -> Counter[str]:
    """How many times each file's marker appears across the ticket's comments."""
    counts: Counter[str] = Counter()
    for comment in zendesk.comments(ticket):
        counts.update(MARKER.findall(comment["body"]))
    return counts


def gateway_comments(zendesk: ZendeskEmulator, ticket: int | str) -> list[dict[str, Any]]:
    """The ticket's comments that carry at least one file marker."""
    return [c for c in zendesk.comments(ticket) if MARKER.search(c["body"])]


def ticket_updates(zendesk: ZendeskEmulator, ticket: int | str) -> list[dict[str, Any]]:
    """Every ticket update request the emulator saw for ``ticket`` (any status)."""
    path = f"/api/v2/tickets/{int(ticket)}"
    return [
        r
        for r in zendesk.state()["requests"]
        if r["method"] == "PUT" and r["path"].removesuffix(".json") == path
    ]
