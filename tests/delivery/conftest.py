"""Gateways delivering to ticket-system emulators, and helpers to watch what lands.

Every gateway here is a real process (``python -m gateway serve``) pointing at
a session-wide emulator: ``helpdesk_gateway`` at each registered system in turn
(``tests/support/helpdesk.py``), ``zendesk_gateway`` at Zendesk for what only
Zendesk has. The store is the file store or a fresh SeaweedFS bucket. Tests
never assert on time: they poll with :func:`wait_until` under a generous
deadline.
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
from tests.support.helpdesk import HelpdeskEmulator
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


class HelpdeskGatewayFactory(Protocol):
    def __call__(
        self, storage: str = "file", via: str | None = None, **extra: str
    ) -> GatewayProcess: ...


def _with_storage(request: pytest.FixtureRequest, env: dict[str, str], storage: str) -> None:
    if storage == "s3":
        seaweed = request.getfixturevalue("seaweed")
        bucket = request.getfixturevalue("s3_bucket")
        env.update(GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET=bucket, **seaweed.env())
    elif storage != "file":
        raise ValueError(f"unknown storage {storage!r}")


@pytest.fixture
def helpdesk_gateway(
    request: pytest.FixtureRequest, tmp_path: Path, helpdesk: HelpdeskEmulator
) -> Iterator[HelpdeskGatewayFactory]:
    """Start gateways that deliver to this test's helpdesk; all are killed at the end.

    ``via`` is a URL to reach the helpdesk through (a proxy): it takes the
    place of the emulator's URL in the gateway's environment.
    """
    started: list[GatewayProcess] = []

    def make(storage: str = "file", via: str | None = None, **extra: str) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(started)}"
        system = helpdesk.env()
        if via is not None:
            system = {k: via if v == helpdesk.url else v for k, v in system.items()}
        env = gateway_env(workdir, **system)
        _with_storage(request, env, storage)
        env.update(extra)
        proc = start_gateway(workdir, env)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()


@pytest.fixture
def zendesk_gateway(
    request: pytest.FixtureRequest, tmp_path: Path, zendesk_api: ZendeskEmulator
) -> Iterator[GatewayFactory]:
    """Start gateways that deliver to the Zendesk emulator; all are killed at the end."""
    started: list[GatewayProcess] = []

    def make(storage: str = "file", auth: str = "oauth", **extra: str) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(started)}"
        env = gateway_env(workdir, **zendesk_api.env(auth))
        _with_storage(request, env, storage)
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


def failed_receipt(link: str, file_id: str) -> dict[str, Any]:
    """Wait until the file's receipt says ``failed``; returns it."""
    return wait_until(
        lambda: (r := receipts(link)[file_id])["status"] == "failed" and r,
        f"a failed status for {file_id}",
    )


def metric_sum(base_url: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels`` (0 when none)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10.0).text
    total = 0.0
    for match in re.finditer(rf"^{name}(?:{{(.*)}})? (\S+)$", text, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def ticket_errors(base_url: str, status: int) -> float:
    """How many ticket-system calls of the gateway got ``status``."""
    return metric_sum(base_url, "gateway_ticket_errors_total", status=str(status))


# -- reading the emulator ---------------------------------------------------------------


class HasComments(Protocol):
    def comments(self, ticket: str) -> list[dict[str, Any]]: ...


def markers(emulator: HasComments, ticket: int | str) -> Counter[str]:
    """How many times each file's marker appears across the ticket's comments."""
    counts: Counter[str] = Counter()
    for comment in emulator.comments(str(ticket)):
        counts.update(MARKER.findall(comment["body"]))
    return counts


def gateway_comments(emulator: HasComments, ticket: int | str) -> list[dict[str, Any]]:
    """The ticket's comments that carry at least one file marker."""
    return [c for c in emulator.comments(str(ticket)) if MARKER.search(c["body"])]
