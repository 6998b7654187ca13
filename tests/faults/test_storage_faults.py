"""The storage fault matrix: a real gateway on SeaweedFS behind the fault proxy.

Each test arms one kind of fault on the requests it names, drives the
gateway the way a partner or support engineer would, and checks what the
contract promises: a failed S3 request is retried (a part, not the whole
file), a failure that outlasts the retries is a clear 503 after which the
upload resumes from the last stored part, a short read never becomes a short
file, nothing half-written is ever listed as a file, delivery survives
storage faults with exactly one comment, a tus request meeting an outage gets
its 503 with the tus headers, and an abandoned upload leaves no
multipart upload behind once ``gateway sweep`` has run.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from botocore.config import Config

from gateway.links import Links
from gateway.store.s3 import S3Store
from tests.faults.conftest import MiB, verify_stored
from tests.support.faultproxy import FaultProxy
from tests.support.gateway import GatewayProcess, run_sweep, staff_headers, ticket_comments
from tests.support.seaweed import SeaweedServer

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

LARGE = 40 * MiB  # three parts of 16 MiB, 16 MiB and 8 MiB: parts matter
TIMEOUT = 120.0
UPLOAD_PART = "partNumber="  # UploadPart: PUT ...?uploadId=...&partNumber=N
COMPLETE = "uploadId="  # with POST: CompleteMultipartUpload (Create is POST ?uploads)


def put(link: str, name: str, data: bytes, **headers: str) -> httpx.Response:
    return httpx.put(f"{link}/{name}", content=data, headers=headers, timeout=TIMEOUT)


def part_requests(proxy: FaultProxy) -> int:
    return proxy.count("PUT", UPLOAD_PART)


def test_slowdown_on_some_upload_parts_is_retried_per_part_and_completes(
    gw: GatewayProcess, proxy: FaultProxy, direct: S3Client
) -> None:
    data = os.urandom(LARGE)
    proxy.inject("error", status=503, count=3, method="PUT", match=UPLOAD_PART)
    response = put(gw.link("7001"), "slowdown.bin", data)
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["sha256"] == hashlib.sha256(data).hexdigest()
    assert proxy.injected["error"] == 3
    # Three parts, three of their attempts refused: six part requests, not a second whole file.
    assert part_requests(proxy) == 3 + 3
    verify_stored(direct, gw.env["GATEWAY_S3_BUCKET"], receipt, data)


def test_internal_error_on_complete_multipart_upload_is_retried_and_completes(
    gw: GatewayProcess, proxy: FaultProxy, direct: S3Client
) -> None:
    data = os.urandom(LARGE)
    proxy.inject("error", status=500, count=1, method="POST", match=COMPLETE)
    response = put(gw.link("7002"), "complete.bin", data)
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert proxy.injected["error"] == 1
    assert proxy.count("POST", COMPLETE) == 2
    verify_stored(direct, gw.env["GATEWAY_S3_BUCKET"], response.json(), data)


def test_connection_resets_on_upload_part_are_retried_and_complete(
    gw: GatewayProcess, proxy: FaultProxy, direct: S3Client
) -> None:
    data = os.urandom(LARGE)
    proxy.inject("reset", count=3, method="PUT", match=UPLOAD_PART)
    response = put(gw.link("7003"), "resets.bin", data)
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert proxy.injected["reset"] == 3
    assert part_requests(proxy) == 3 + 3
    verify_stored(direct, gw.env["GATEWAY_S3_BUCKET"], response.json(), data)


def test_a_stall_on_upload_part_within_the_read_timeout_only_delays(
    gw: GatewayProcess, proxy: FaultProxy, direct: S3Client
) -> None:
    data = os.urandom(LARGE)
    proxy.inject("stall", stall=3.0, count=1, method="PUT", match=UPLOAD_PART)
    response = put(gw.link("7004"), "stall.bin", data)
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert proxy.injected["stall"] == 1
    verify_stored(direct, gw.env["GATEWAY_S3_BUCKET"], response.json(), data)


def test_a_stall_past_the_read_timeout_is_retried_by_the_store(
    seaweed: SeaweedServer, s3_bucket: str, proxy: FaultProxy, direct: S3Client
) -> None:
    """The store's own retry path for a timed-out part, with a short read timeout.

    The gateway's read timeout is 60 s, too long for a test, so this drives
    :class:`S3Store` in-process with a client configured like the gateway's
    except for that timeout (2 s).
    """
    import boto3

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=proxy.url,
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
        region_name=seaweed.region,
        config=Config(
            connect_timeout=2,
            read_timeout=2,
            retries={"mode": "standard", "max_attempts": 5},
            s3={"payload_signing_enabled": False, "addressing_style": "path"},
        ),
    )
    store = S3Store(s3_bucket, client=client)
    part = os.urandom(6 * MiB)
    tail = os.urandom(1000)

    async def go() -> str:
        upload_id = await store.create_multipart("files/stall/data")
        proxy.inject("stall", stall=6.0, count=1, method="PUT", match=UPLOAD_PART)
        first = await store.upload_part("files/stall/data", upload_id, 1, memoryview(part))
        second = await store.upload_part("files/stall/data", upload_id, 2, memoryview(tail))
        return await store.complete_multipart("files/stall/data", upload_id, [first, second])

    try:
        anyio.run(go)
    finally:
        client.close()
    assert proxy.injected["stall"] == 1
    # Part 1 timed out and was sent again (more than once if the machine is slow), part 2 once.
    assert part_requests(proxy) >= 3
    stored = direct.get_object(Bucket=s3_bucket, Key="files/stall/data")["Body"].read()
    assert stored == part + tail


def test_faults_outlasting_the_retries_are_a_clear_503_then_the_upload_resumes(
    gw: GatewayProcess, proxy: FaultProxy, direct: S3Client
) -> None:
    data = os.urandom(LARGE)
    link = gw.link("7005")
    # Part 2 fails every time until cleared; part 1 lands.
    proxy.inject("error", status=503, count=None, method="PUT", match=f"{UPLOAD_PART}2")
    failed = put(link, "outage.bin", data)
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"]["code"] == "storage_unavailable"
    assert proxy.injected["error"] >= 5  # botocore's attempts, all refused
    proxy.clear()

    head = httpx.head(f"{link}/outage.bin", timeout=TIMEOUT)
    assert head.status_code == 200
    offset = int(head.headers["Upload-Offset"])
    assert offset == 16 * MiB  # the last stored part, not zero and not past it
    assert int(head.headers["Upload-Length"]) == LARGE
    resumed = put(
        link,
        "outage.bin",
        data[offset:],
        **{"Content-Range": f"bytes {offset}-{LARGE - 1}/{LARGE}"},
    )
    assert resumed.status_code == 201, resumed.text
    receipt = resumed.json()
    assert receipt["sha256"] == hashlib.sha256(data).hexdigest()
    assert receipt["size"] == LARGE
    verify_stored(direct, gw.env["GATEWAY_S3_BUCKET"], receipt, data)
    listing = httpx.get(f"{link}/files", timeout=TIMEOUT).json()["files"]
    assert [f["file_id"] for f in listing] == [receipt["file_id"]]


def test_a_truncated_get_during_a_download_fails_visibly_never_a_short_file(
    gw: GatewayProcess, proxy: FaultProxy, direct: S3Client
) -> None:
    data = os.urandom(LARGE)
    response = put(gw.link("7006"), "download.bin", data)
    assert response.status_code == 201, response.text
    receipt = response.json()
    verify_stored(direct, gw.env["GATEWAY_S3_BUCKET"], receipt, data)
    url, _ = Links(gw.settings).download_url(receipt["file_id"], "download.bin")

    proxy.inject("truncate", count=1, method="GET", match=f"files/{receipt['file_id']}/data")
    received = bytearray()
    error: Exception | None = None
    try:
        with httpx.stream("GET", url, timeout=TIMEOUT) as stream:
            assert stream.status_code == 200
            assert int(stream.headers["Content-Length"]) == LARGE
            for chunk in stream.iter_bytes():
                received.extend(chunk)
    except httpx.HTTPError as exc:  # the connection ends before Content-Length: visible
        error = exc
    assert proxy.injected["truncate"] == 1
    if error is None:
        assert bytes(received) == data, "a download ended short without an error"
    else:
        assert len(received) < LARGE

    again = httpx.get(url, timeout=TIMEOUT)
    assert again.status_code == 200
    assert hashlib.sha256(again.content).hexdigest() == receipt["sha256"]


def test_storage_down_at_the_start_of_an_upload_is_a_clean_503_and_nothing_is_served(
    gw: GatewayProcess, proxy: FaultProxy, direct: S3Client
) -> None:
    data = os.urandom(2 * MiB)
    link = gw.link("7007")
    proxy.inject("down", count=None)
    failed = put(link, "down.bin", data)
    proxy.clear()
    assert proxy.injected["down"] >= 5
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"]["code"] == "storage_unavailable"
    bucket = gw.env["GATEWAY_S3_BUCKET"]
    listing = httpx.get(f"{link}/files", timeout=TIMEOUT)
    assert listing.status_code == 200 and listing.json()["files"] == []
    stored = direct.list_objects_v2(Bucket=bucket, Prefix="files/").get("Contents", [])
    assert stored == []

    again = put(link, "down.bin", data)
    assert again.status_code == 201, again.text
    verify_stored(direct, bucket, again.json(), data)


def test_storage_down_during_a_tus_request_is_a_503_in_the_tus_dialect(
    gw: GatewayProcess, proxy: FaultProxy
) -> None:
    proxy.inject("down", count=None)
    failed = httpx.post(
        f"{gw.link('7010')}/tus/",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": "5"},
        timeout=TIMEOUT,
    )
    proxy.clear()
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"]["code"] == "storage_unavailable"
    assert failed.headers["Retry-After"] == "5"
    # Rendered by the one error handler, with what every tus answer carries.
    assert failed.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Offset" in failed.headers["Access-Control-Expose-Headers"]


def test_faults_while_reading_an_attachment_retry_delivery_and_post_exactly_one_comment(
    gw: GatewayProcess, proxy: FaultProxy, direct: S3Client
) -> None:
    data = os.urandom(3 * MiB)
    # More resets than one read's retries absorb: the first delivery attempt fails.
    proxy.inject("reset", count=7, method="GET", match="/data")
    link = gw.link("7008")
    response = put(link, "attach.bin", data)
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["route"] == "attachment"
    verify_stored(direct, gw.env["GATEWAY_S3_BUCKET"], receipt, data)

    comments = ticket_comments(gw, "7008", wait_for=1, timeout=90)
    assert proxy.injected["reset"] == 7
    time.sleep(1.5)  # a second, duplicate comment would have had time to land
    comments = ticket_comments(gw, "7008")
    assert len(comments) == 1
    (attachment,) = comments[0]["attachments"]
    assert attachment["file_name"] == "attach.bin" and attachment["size"] == len(data)
    content = httpx.get(attachment["content_url"], headers=staff_headers(gw), timeout=TIMEOUT)
    assert content.status_code == 200 and content.content == data
    status = httpx.get(f"{link}/files", timeout=TIMEOUT).json()["files"]
    assert [f["status"] for f in status] == ["delivered"]


def _multipart_uploads(client: S3Client, bucket: str) -> list[Any]:
    return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def test_an_abandoned_upload_leaves_no_multipart_upload_after_sweep(
    gw: GatewayProcess, proxy: FaultProxy, direct: S3Client
) -> None:
    bucket = gw.env["GATEWAY_S3_BUCKET"]
    link = gw.link("7009", expires_in=4)
    created = httpx.post(
        f"{link}/tus/",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(LARGE),
                 "Upload-Metadata": "filename YWJhbmRvbmVkLmJpbg=="},
        timeout=TIMEOUT,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    location = httpx.URL(link).join(created.headers["Location"])
    patched = httpx.patch(
        location,
        content=os.urandom(20 * MiB),
        headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                 "Content-Type": "application/offset+octet-stream"},
        timeout=TIMEOUT,
    )  # fmt: skip
    assert patched.status_code == 204, patched.text
    assert int(patched.headers["Upload-Offset"]) == 20 * MiB
    assert len(_multipart_uploads(direct, bucket)) == 1

    time.sleep(4.5)  # the link, and so the upload, expires
    # The abort itself meets a fault once; botocore retries it.
    proxy.inject("error", status=503, count=1, method="DELETE", match="uploadId=")
    assert "expired uploads removed: 1" in run_sweep(gw, TIMEOUT)
    assert proxy.injected["error"] == 1
    assert _multipart_uploads(direct, bucket) == []
    leftovers = direct.list_objects_v2(Bucket=bucket, Prefix="uploads/").get("Contents", [])
    assert leftovers == []
