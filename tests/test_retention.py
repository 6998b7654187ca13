"""Retention, purge on request, and server-side encryption, on SeaweedFS.

``gateway sweep`` and ``gateway purge`` run as the operator runs them: the
CLI in a subprocess with the gateway's own environment, next to a real
gateway process whose download links must stop working for what they
deleted (410) and keep working for everything else.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from gateway.links import Links
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway
from tests.support.seaweed import SeaweedServer

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MiB = 1024 * 1024
TIMEOUT = 60.0


@pytest.fixture
def start_s3_gateway(
    tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str
) -> Iterator[Callable[..., GatewayProcess]]:
    """Starts a gateway on a fresh bucket with extra environment variables."""
    started: list[GatewayProcess] = []

    def start(**extra: str) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(started)}"
        env = gateway_env(
            workdir, GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET=s3_bucket, **seaweed.env(), **extra
        )
        started.append(start_gateway(workdir, env))
        return started[-1]

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def s3_gateway(start_s3_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    return start_s3_gateway()


@pytest.fixture
def direct(seaweed: SeaweedServer) -> Iterator[S3Client]:
    client = seaweed.client()
    yield client
    client.close()


def cli(
    proc: GatewayProcess, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env={**proc.env, **env}, cwd=proc.workdir, input=stdin,
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip


def upload(proc: GatewayProcess, ticket: str, name: str, data: bytes) -> tuple[dict[str, Any], str]:
    """PUT a file, wait until it is delivered; its receipt and a download link for it."""
    link = proc.link(ticket)
    response = httpx.put(f"{link}/{name}", content=data, timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    receipt: dict[str, Any] = response.json()
    deadline = time.monotonic() + TIMEOUT
    while receipt["status"] != "delivered":
        assert time.monotonic() < deadline, f"not delivered: {receipt}"
        time.sleep(0.2)
        files = httpx.get(f"{link}/files", timeout=TIMEOUT).json()["files"]
        receipt = next(f for f in files if f["file_id"] == receipt["file_id"])
    url, _ = Links(proc.settings).download_url(receipt["file_id"], name)
    return receipt, url


def stored_keys(client: S3Client, bucket: str, file_id: str) -> list[str]:
    page = client.list_objects_v2(Bucket=bucket, Prefix=f"files/{file_id}/")
    return [item["Key"] for item in page.get("Contents", [])]


def test_sweep_deletes_files_past_retention_and_their_links_answer_410(
    s3_gateway: GatewayProcess, direct: S3Client
) -> None:
    bucket = s3_gateway.env["GATEWAY_S3_BUCKET"]
    small, large = os.urandom(MiB), os.urandom(21 * MiB)
    kept_receipt, kept_url = upload(s3_gateway, "8100", "small.log", small)
    big_receipt, big_url = upload(s3_gateway, "8100", "large.bin", large)
    assert big_receipt["route"] == "storage"
    assert httpx.get(big_url, timeout=TIMEOUT).content == large

    early = cli(s3_gateway, "sweep", GATEWAY_RETENTION="1h")
    assert early.returncode == 0, early.stderr
    assert "files past retention deleted: 0" in early.stdout
    assert httpx.get(kept_url, timeout=TIMEOUT).status_code == 200

    time.sleep(2.5)
    swept = cli(s3_gateway, "sweep", GATEWAY_RETENTION="2s")
    assert swept.returncode == 0, swept.stderr
    assert "files past retention deleted: 2" in swept.stdout
    for url in (kept_url, big_url):
        gone = httpx.get(url, timeout=TIMEOUT)
        assert gone.status_code == 410, gone.text
        assert gone.json()["error"]["message"]
    for receipt in (kept_receipt, big_receipt):
        assert stored_keys(direct, bucket, receipt["file_id"]) == []


def test_purge_deletes_that_tickets_files_only(
    s3_gateway: GatewayProcess, direct: S3Client
) -> None:
    bucket = s3_gateway.env["GATEWAY_S3_BUCKET"]
    mine = os.urandom(MiB)
    other = os.urandom(MiB)
    mine_receipt, mine_url = upload(s3_gateway, "8200", "mine.bin", mine)
    other_receipt, other_url = upload(s3_gateway, "8201", "other.bin", other)

    refused = cli(s3_gateway, "purge", "--ticket", "8200", stdin="n\n")
    assert refused.returncode != 0
    assert httpx.get(mine_url, timeout=TIMEOUT).status_code == 200

    purged = cli(s3_gateway, "purge", "--ticket", "8200", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert "deleted 1 file(s) of ticket 8200" in purged.stdout
    assert httpx.get(mine_url, timeout=TIMEOUT).status_code == 410
    assert stored_keys(direct, bucket, mine_receipt["file_id"]) == []
    still = httpx.get(other_url, timeout=TIMEOUT)
    assert still.status_code == 200 and still.content == other
    assert stored_keys(direct, bucket, other_receipt["file_id"])


def test_sse_aes256_is_applied_to_single_and_multipart_objects(
    start_s3_gateway: Callable[..., GatewayProcess], direct: S3Client
) -> None:
    s3_gateway = start_s3_gateway(GATEWAY_S3_SSE="AES256")
    bucket = s3_gateway.env["GATEWAY_S3_BUCKET"]
    for name, data in (("one.bin", os.urandom(MiB)), ("parts.bin", os.urandom(40 * MiB))):
        receipt, url = upload(s3_gateway, "8300", name, data)
        head = direct.head_object(Bucket=bucket, Key=f"files/{receipt['file_id']}/data")
        assert head.get("ServerSideEncryption") == "AES256", (name, head)
        got = httpx.get(url, timeout=TIMEOUT)
        assert hashlib.sha256(got.content).hexdigest() == receipt["sha256"]
