"""A ticket stocked with files on a gateway on SeaweedFS that scans with clamd.

Ticket 6060 holds: two different files both named ``notes.txt`` (small:
delivered as attachments), ``dump.bin`` (40 MiB of mostly zeros with random
ends, over the 1 MiB attachment limit: stored behind a download link) and
``eicar.com`` (quarantined by the scanner). Shared by the module's tests.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clamd import EICAR, ClamdServer
from tests.support.gateway import GatewayProcess, gateway_env, staff_headers, start_gateway
from tests.support.seaweed import SeaweedServer

MiB = 1024 * 1024
TICKET = "6060"


def sparse_content(size: int, seed: bytes = b"") -> bytes:
    """Zeros with a random MiB at each end (and the seed), so a wrong offset shows."""
    edge = min(MiB, size // 2)
    middle = size - 2 * edge
    return os.urandom(edge) + seed + bytes(middle - len(seed)) + os.urandom(edge)


@dataclass
class Stocked:
    proc: GatewayProcess
    files: dict[str, list[bytes]]  # name -> contents uploaded under that name

    def listing(self) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.proc.url}/api/tickets/{TICKET}/files", headers=staff_headers(self.proc)
        )
        response.raise_for_status()
        files: list[dict[str, Any]] = response.json()["files"]
        return files

    def by_sha(self) -> dict[str, bytes]:
        return {hashlib.sha256(d).hexdigest(): d for ds in self.files.values() for d in ds}


def upload(proc: GatewayProcess, ticket: str, name: str, data: bytes) -> dict[str, Any]:
    response = httpx.put(f"{proc.link(ticket)}/{name}", content=data, timeout=120)
    assert response.status_code == 201, response.text
    receipt: dict[str, Any] = response.json()
    return receipt


def settled(stocked: Stocked, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The listing once ``count`` files are there and none is pending or scanning."""
    deadline = time.monotonic() + timeout
    while True:
        files = stocked.listing()
        busy = [f for f in files if f["status"] in ("pending", "scanning")]
        if len(files) >= count and not busy:
            return files
        assert time.monotonic() < deadline, f"files did not settle: {files}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stocked(
    tmp_path_factory: pytest.TempPathFactory, seaweed: SeaweedServer, clamd: ClamdServer
) -> Iterator[Stocked]:
    work = tmp_path_factory.mktemp("stocked")
    env = gateway_env(
        work,
        GATEWAY_ATTACHMENT_MAX="1MiB",
        GATEWAY_STORAGE="s3",
        GATEWAY_S3_BUCKET=seaweed.make_bucket(),
        GATEWAY_CLAMD=clamd.tcp_address,
        # Every stocked file is scanned whole; the 5 GiB ZIP test's file is not scanned
        # past this (2 GiB - 1 by default), which that test does not need.
        GATEWAY_CLAMD_MAX_SCAN="64MiB",
        **seaweed.env(),
    )
    proc = start_gateway(work, env)
    files = {
        "notes.txt": [os.urandom(2048), b"second notes file\n" * 40],
        "dump.bin": [sparse_content(40 * MiB)],
        "eicar.com": [EICAR],
    }
    for name, contents in files.items():
        for data in contents:
            upload(proc, TICKET, name, data)
    stock = Stocked(proc, files)
    settled(stock, 4)
    yield stock
    proc.kill()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def redirecting(stocked: Stocked, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stocked]:
    """A second replica on the same bucket, secret and scanner, in redirect mode."""
    work = tmp_path_factory.mktemp("redirecting")
    env = {k: v for k, v in stocked.proc.env.items() if k not in ("GATEWAY_PUBLIC_URL", "HOME")}
    env.update(
        HOME=str(work), GATEWAY_DATA_DIR=str(work / "data"), GATEWAY_DOWNLOAD_REDIRECT="true"
    )
    proc = start_gateway(work, env)
    yield Stocked(proc, stocked.files)
    proc.kill()
