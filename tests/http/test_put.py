"""Raw PUT through real gateway processes on both stores: routing, caps, curl, resume."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tests.http.rawhttp import send_and_close
from tests.support.gateway import (
    GatewayProcess,
    gateway_env,
    start_gateway,
    ticket_comments,
)
from tests.support.seaweed import SeaweedServer

MiB = 1024 * 1024
SMALL_MAX = 1 * MiB


@pytest.fixture(scope="module", params=["file", "s3"])
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway per store, with a 1 MiB attachment limit to keep the boundary cheap."""
    work = tmp_path_factory.mktemp(f"put-{request.param}")
    env = gateway_env(work, GATEWAY_ATTACHMENT_MAX="1MiB")
    if request.param == "s3":
        seaweed: SeaweedServer = request.getfixturevalue("seaweed")
        env.update(GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET=seaweed.make_bucket(), **seaweed.env())
    proc = start_gateway(work, env)
    yield proc
    proc.kill()


def _ticket() -> str:
    return str(int.from_bytes(os.urandom(4), "big"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "60", *args], capture_output=True, text=True, timeout=90
    )


def _files(link: str) -> list[dict[str, object]]:
    response = httpx.get(f"{link}/files")
    response.raise_for_status()
    files: list[dict[str, object]] = response.json()["files"]
    return files


def test_put_with_content_length(gw: GatewayProcess) -> None:
    ticket = _ticket()
    data = os.urandom(300_000)
    response = httpx.put(f"{gw.link(ticket)}/report.pdf", content=data)
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["filename"] == "report.pdf"
    assert receipt["size"] == len(data) and receipt["sha256"] == _sha(data)
    assert receipt["ticket"] == ticket and receipt["route"] == "attachment"
    assert receipt["status"] in ("pending", "delivered")
    assert "/files/" not in response.text  # never the staff download link
    comments = ticket_comments(gw, ticket, wait_for=1)
    assert len(comments) == 1 and _sha(data) in comments[0]["body"]


def test_put_chunked(gw: GatewayProcess) -> None:
    data = os.urandom(2 * MiB + 333)

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    response = httpx.put(f"{gw.link(_ticket())}/stream.bin", content=pieces())
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(data)
    assert response.json()["sha256"] == _sha(data)
    assert response.json()["route"] == "storage"


@pytest.mark.parametrize(("size", "route"), [(SMALL_MAX, "attachment"), (SMALL_MAX + 1, "storage")])
def test_routing_boundary(gw: GatewayProcess, size: int, route: str) -> None:
    ticket = _ticket()
    data = os.urandom(size)
    response = httpx.put(f"{gw.link(ticket)}/edge.bin", content=data)
    assert response.status_code == 201, response.text
    assert response.json()["route"] == route
    comments = ticket_comments(gw, ticket, wait_for=1)
    assert len(comments) == 1
    if route == "attachment":
        assert [a["size"] for a in comments[0]["attachments"]] == [size]
        assert "/files/" not in comments[0]["body"]
    else:
        assert comments[0]["attachments"] == []
        assert "/files/" in comments[0]["body"]
    assert _sha(data) in comments[0]["body"]


@pytest.mark.parametrize(("size", "route"), [(20 * MiB, "attachment"), (20 * MiB + 1, "storage")])
def test_routing_boundary_at_the_default_20_mib(
    gateway_file: GatewayProcess, size: int, route: str
) -> None:
    assert 20 * MiB == 20971520
    ticket = _ticket()
    data = os.urandom(size)
    response = httpx.put(f"{gateway_file.link(ticket)}/edge.bin", content=data, timeout=60)
    assert response.status_code == 201, response.text
    assert response.json()["route"] == route
    assert response.json()["sha256"] == _sha(data)
    comments = ticket_comments(gateway_file, ticket, wait_for=1)
    assert len(comments) == 1
    assert bool(comments[0]["attachments"]) == (route == "attachment")


def test_max_size_cap_is_413(gw: GatewayProcess) -> None:
    link = gw.link(_ticket(), max_size=1000)
    assert httpx.put(f"{link}/ok.bin", content=b"x" * 1000).status_code == 201
    over = httpx.put(f"{link}/big.bin", content=b"x" * 1001)
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "too_large"
    chunked = httpx.put(f"{link}/big2.bin", content=iter([b"x" * 600, b"x" * 600]))
    assert chunked.status_code == 413
    assert [f["filename"] for f in _files(link)] == ["ok.bin"]


def test_curl_upload_file(gw: GatewayProcess, tmp_path: Path) -> None:
    path = tmp_path / "crash dump.log"
    data = os.urandom(1_500_000)
    path.write_bytes(data)
    done = _curl("-f", "-T", str(path), f"{gw.link(_ticket())}/")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["filename"] == "crash dump.log"
    assert receipt["sha256"] == _sha(data)
    assert receipt["route"] == "storage"


def _wait_offset(url: str, minimum: int = 1, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    offset = 0
    while time.monotonic() < deadline:
        response = httpx.head(url)
        offset = int(response.headers.get("upload-offset", "0"))
        if response.status_code == 200 and offset >= minimum:
            return offset
        time.sleep(0.1)
    return offset


def test_plain_curl_resume(gw: GatewayProcess, tmp_path: Path) -> None:
    ticket = _ticket()
    link = gw.link(ticket)
    data = os.urandom(8 * MiB + 4321)
    path = tmp_path / "trace.bin"
    path.write_bytes(data)
    url = f"{link}/trace.bin"
    sent = 6 * MiB + 17
    headers = [("Content-Length", str(len(data))), ("Content-Type", "application/octet-stream")]
    send_and_close(url, "PUT", headers, data[:sent], linger=0.5)

    offset = _wait_offset(url)
    assert 0 < offset <= sent
    assert _files(link) == []
    done = _curl("-f", "-C", str(offset), "-T", str(path), url)
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["size"] == len(data)
    assert receipt["sha256"] == _sha(data)
    assert httpx.head(url).status_code == 404  # nothing left unfinished
    comments = ticket_comments(gw, ticket, wait_for=1)
    assert len(comments) == 1 and _sha(data) in comments[0]["body"]


def test_resume_with_the_wrong_offset_is_409(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    data = os.urandom(3 * MiB)
    url = f"{link}/part.bin"
    send_and_close(url, "PUT", [("Content-Length", str(len(data)))], data[:MiB], linger=0.3)
    offset = _wait_offset(url)
    wrong = offset + 10
    response = httpx.put(
        url,
        content=data[wrong:],
        headers={"Content-Range": f"bytes {wrong}-{len(data) - 1}/{len(data)}"},
    )
    assert response.status_code == 409
    assert response.headers["upload-offset"] == str(offset)


def test_interrupted_upload_leaves_no_completed_file(gw: GatewayProcess) -> None:
    ticket = _ticket()
    link = gw.link(ticket)
    data = os.urandom(2 * MiB)
    send_and_close(
        f"{link}/cut.bin", "PUT", [("Content-Length", str(len(data)))], data[: MiB + 5], linger=0.5
    )
    _wait_offset(f"{link}/cut.bin")
    assert _files(link) == []
    time.sleep(0.5)
    assert ticket_comments(gw, ticket) == []
    if gw.settings.storage == "file":
        store = Path(gw.env["GATEWAY_DATA_DIR"])
        for meta in store.rglob("files/*/meta.json"):
            assert f'"ticket":"{ticket}"' not in meta.read_text()
    else:
        seaweed_env = gw.env
        client = boto3.client(
            "s3",
            endpoint_url=seaweed_env["AWS_ENDPOINT_URL_S3"],
            aws_access_key_id=seaweed_env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=seaweed_env["AWS_SECRET_ACCESS_KEY"],
            region_name=seaweed_env["AWS_REGION"],
        )
        bucket = seaweed_env["GATEWAY_S3_BUCKET"]
        for obj in client.list_objects_v2(Bucket=bucket, Prefix="files/").get("Contents", []):
            if obj["Key"].endswith("meta.json"):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                assert f'"ticket":"{ticket}"'.encode() not in body
        client.close()
