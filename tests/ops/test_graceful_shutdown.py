"""SIGTERM on a real gateway process: running uploads finish, late ones keep their bytes.

The gateway under test is started by the harness with ``--grace 10``. A PUT
is held part way by the client (:class:`PacedPut`), the process gets SIGTERM,
and the test decides whether the rest of the body arrives inside the grace
period or never. The held client is silent for about as long as the grace
period, so the minimum body rate is off here: the grace period alone decides.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ops.support import MiB, PacedPut, random_bytes, receipts, sha256, wait_until
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway

SIZE = 24 * MiB
HOLD_AT = 12 * MiB


@pytest.fixture
def gateway_s3(tmp_path: Path, seaweed: Any, s3_bucket: str) -> Iterator[GatewayProcess]:
    """A gateway on SeaweedFS that never cuts a held upload for its pace."""
    env = gateway_env(
        tmp_path / "gw",
        GATEWAY_STORAGE="s3",
        GATEWAY_S3_BUCKET=s3_bucket,
        GATEWAY_MIN_BODY_RATE="0",
        **seaweed.env(),
    )
    proc = start_gateway(tmp_path / "gw", env)
    yield proc
    proc.kill()


def _sigterm(proc: GatewayProcess) -> subprocess.Popen[bytes]:
    assert proc.process is not None
    os.killpg(proc.process.pid, signal.SIGTERM)
    return proc.process


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _draining_logged(proc: GatewayProcess) -> bool:
    return "shutting down: draining" in proc.log_path.read_text(errors="replace")


def test_running_put_finishes_after_sigterm_and_the_process_exits_0(
    gateway_s3: GatewayProcess,
) -> None:
    link = gateway_s3.link("7001")
    data = random_bytes(SIZE)
    upload = PacedPut(f"{link}/during-shutdown.bin", data, hold_at=HOLD_AT)
    upload.start()
    assert upload.held.wait(30) and upload.error is None

    process = _sigterm(gateway_s3)
    wait_until(lambda: _draining_logged(gateway_s3), "the draining log line", timeout=10)
    # New connections are no longer accepted; the load balancer moves on.
    wait_until(lambda: _refuses(gateway_s3.port), "the listener to close", timeout=10)
    assert process.poll() is None, "the process must wait for the running upload"

    upload.release()
    upload.join(60)
    assert upload.error is None, repr(upload.error)
    assert upload.response is not None
    assert upload.response.status_code == 201, upload.response.text
    receipt = upload.response.json()
    assert receipt["size"] == SIZE
    assert receipt["sha256"] == sha256(data)

    assert process.wait(30) == 0
    gateway_s3.process = None

    # Nothing about the upload was lost with the process.
    gateway_s3.start()
    stored = receipts(link)["during-shutdown.bin"]
    assert stored["sha256"] == sha256(data)
    assert stored["size"] == SIZE


def test_upload_cut_off_at_the_end_of_grace_keeps_its_bytes_and_resumes(
    gateway_s3: GatewayProcess,
) -> None:
    link = gateway_s3.link("7002")
    url = f"{link}/cut-off.bin"
    data = random_bytes(SIZE)
    upload = PacedPut(url, data, hold_at=HOLD_AT)
    upload.start()
    assert upload.held.wait(30) and upload.error is None

    process = _sigterm(gateway_s3)
    # The client never sends the rest: the grace period (10 s) runs out.
    code = process.wait(40)
    gateway_s3.process = None
    assert code == 0, gateway_s3.log_tail()
    assert "grace period of 10s over: cutting off 1 running request" in gateway_s3.log_tail()
    upload.release()
    upload.join(30)
    assert upload.response is None or upload.response.status_code != 201

    gateway_s3.start()
    head = httpx.head(url, timeout=30)
    assert head.status_code == 200, head.headers
    offset = int(head.headers["Upload-Offset"])
    print(f"\ncut off after {HOLD_AT} bytes sent; stored offset after restart: {offset}")
    assert 0 < offset <= HOLD_AT

    # Plain-curl resume from there finishes the file with the right bytes.
    rest = httpx.put(
        url,
        content=data[offset:],
        headers={"Content-Range": f"bytes {offset}-{SIZE - 1}/{SIZE}"},
        timeout=120,
    )
    assert rest.status_code == 201, rest.text
    assert rest.json()["sha256"] == sha256(data)
