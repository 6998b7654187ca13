"""State lives in the store: a SIGKILLed gateway, two replicas on one bucket, the sweep."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tusclient.client import TusClient

from tests.support.gateway import GatewayProcess, run_sweep, start_gateway, ticket_comments
from tests.tus.support import OCTETS, create, head, patch, receipt, stored_sha256

MiB = 1024 * 1024


def test_gateway_killed_mid_upload_then_resumed(gateway_s3: GatewayProcess, tmp_path: Path) -> None:
    """A plain tus client that never retries resumes after a SIGKILL as if nothing happened.

    The killed process leaves its write lease behind; the restarted gateway's first PATCH
    waits until that lease lapses (never two writers) instead of answering 423.
    """
    link = gateway_s3.link("601")
    data = os.urandom(40 * MiB)
    url = create(f"{link}/tus/", len(data), "crash.bin").headers["Location"]
    assert patch(url, 0, data[: 20 * MiB]).status_code == 204
    sent = threading.Event()

    def slow() -> Iterator[bytes]:
        for i in range(20 * MiB, len(data), MiB):
            yield data[i : i + MiB]
            if i >= 26 * MiB:
                sent.set()
                time.sleep(0.2)

    def doomed() -> None:
        try:
            httpx.patch(url, content=slow(), timeout=60,
                        headers={**OCTETS, "Upload-Offset": str(20 * MiB),
                                 "Content-Length": str(20 * MiB)})  # fmt: skip
        except httpx.HTTPError:
            pass

    thread = threading.Thread(target=doomed)
    thread.start()
    assert sent.wait(30)
    gateway_s3.restart()  # SIGKILL mid-request, then start again on the same port
    thread.join(60)
    h = head(url)
    assert h.status_code == 200
    offset = int(h.headers["Upload-Offset"])
    assert 20 * MiB <= offset < len(data)  # what the first PATCH stored survived the crash
    path = tmp_path / "crash.bin"
    path.write_bytes(data)
    uploader = TusClient(f"{link}/tus/").uploader(
        str(path), url=url, chunk_size=8 * MiB, retries=0, metadata={"filename": "crash.bin"}
    )
    assert uploader.offset == offset
    uploader.upload()  # no retries: any 423 (or other error) raises here
    assert uploader.offset == len(data)
    file_id = url.rstrip("/").rsplit("/", 1)[1]
    expected = hashlib.sha256(data).hexdigest()
    assert receipt(link, file_id)["sha256"] == expected
    assert stored_sha256(gateway_s3, "601", file_id, "crash.bin") == expected
    mark = f"[upload-gateway file {file_id}]"
    comments = ticket_comments(gateway_s3, "601")
    assert [c["body"].count(mark) for c in comments] == [1]


def test_two_replicas_share_one_bucket(gateway_s3: GatewayProcess, tmp_path: Path) -> None:
    second = start_gateway(gateway_s3.workdir, dict(gateway_s3.env))
    try:
        link = gateway_s3.link("602")
        replicas = [gateway_s3.url, second.url]
        data = os.urandom(40 * MiB)
        url = create(f"{link}/tus/", len(data), "replicas.bin").headers["Location"]
        path = url.split("/u/", 1)[1]
        step = 7 * MiB
        last: httpx.Response | None = None
        for n, offset in enumerate(range(0, len(data), step)):
            base = replicas[n % 2]
            assert int(head(f"{base}/u/{path}").headers["Upload-Offset"]) == offset
            last = patch(f"{base}/u/{path}", offset, data[offset : offset + step])
            assert last.status_code == 204, (base, last.text)
        assert last is not None
        file_id = last.headers["X-Gateway-File-Id"]
        expected = hashlib.sha256(data).hexdigest()
        for base in replicas:
            other_link = f"{base}/u/{link.split('/u/', 1)[1]}"
            assert receipt(other_link, file_id)["sha256"] == expected
        assert stored_sha256(gateway_s3, "602", file_id, "replicas.bin") == expected
    finally:
        second.kill()


def test_sweep_removes_expired_unfinished_uploads(gateway_s3: GatewayProcess, seaweed: Any) -> None:
    link = gateway_s3.link("603", expires_in=3)
    url = create(f"{link}/tus/", 40 * MiB, "abandoned.bin").headers["Location"]
    upload_id = url.rsplit("/", 1)[-1]
    assert patch(url, 0, os.urandom(20 * MiB)).status_code == 204
    bucket = gateway_s3.env["GATEWAY_S3_BUCKET"]
    prefix = gateway_s3.env.get("GATEWAY_S3_PREFIX", "")
    s3 = seaweed.client()
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}uploads/{upload_id}/")
        assert listed.get("KeyCount", 0) > 0
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
        time.sleep(3.5)
        assert "expired uploads removed: 1" in run_sweep(gateway_s3)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}uploads/{upload_id}/")
        assert listed.get("KeyCount", 0) == 0
        assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    finally:
        s3.close()
