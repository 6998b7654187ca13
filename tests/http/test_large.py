"""One 1 GiB upload with curl to a gateway on SeaweedFS: bounded memory, exact bytes back."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import GatewayProcess, staff_headers, ticket_comments

GiB = 1024**3
MiB = 1024**2
RSS_LIMIT = 250 * MiB


def _write_big_file(path: Path, size: int) -> str:
    """Fast incompressible-enough data: 4 MiB of random bytes with a counter per block."""
    seed = os.urandom(4 * MiB)
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for n in range(size // (4 * MiB)):
            block = n.to_bytes(8, "big") + seed[8:]
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


@pytest.mark.slow
def test_one_gib_curl_upload_to_s3(gateway_s3: GatewayProcess, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    sha = _write_big_file(path, GiB)
    assert path.stat().st_size == GiB
    ticket = "1073741824"
    link = gateway_s3.link(ticket)

    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, gateway_s3.peak_rss_bytes())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        done = subprocess.run(
            ["curl", "-sS", "-f", "--max-time", "900", "-T", str(path), f"{link}/"],
            capture_output=True, text=True, timeout=960,
        )  # fmt: skip
    finally:
        stop.set()
        watcher.join()
    peak = max(peak, gateway_s3.peak_rss_bytes())
    print(f"\n1 GiB curl -T to the gateway on SeaweedFS: peak RSS (VmHWM) {peak / MiB:.1f} MiB")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["size"] == GiB and receipt["sha256"] == sha
    assert receipt["route"] == "storage"
    assert peak < RSS_LIMIT, f"peak RSS {peak / MiB:.1f} MiB"

    comments = ticket_comments(gateway_s3, ticket, wait_for=1, timeout=60)
    assert len(comments) == 1
    links = re.findall(r"https?://\S+/files/\S+", comments[0]["body"])
    assert len(links) == 1
    assert sha in comments[0]["body"]

    digest = hashlib.sha256()
    size = 0
    with httpx.stream("GET", links[0].rstrip(").,>"), timeout=300) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(GiB)
        for chunk in response.iter_bytes(4 * MiB):
            digest.update(chunk)
            size += len(chunk)
    assert size == GiB
    assert digest.hexdigest() == sha
    assert staff_headers(gateway_s3)  # the staff view above needed the token
