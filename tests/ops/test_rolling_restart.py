"""A rolling restart under load: two replicas behind a round-robin balancer.

Both replicas share the secret, the SeaweedFS bucket (all upload state and
the delivery outbox live there) and the ticket system (the Zendesk emulator),
each with its own data dir, as in a real deployment. The balancer forwards
client bytes at a limited rate per connection, so uploads are still running
when one replica gets SIGTERM. That replica drains, exits 0 and is started
again on the same port while the uploads go on.

Clients: tuspy (resumable: every chunk is a new connection, and a failed
chunk is retried from the offset HEAD reports, on whichever replica answers)
and plain ``curl -T`` PUTs (one large one that is running on the replica when
it gets SIGTERM, several small ones fired through the restart, with curl's own
retries). Every file must finish with its SHA-256 and be announced on the
ticket exactly once.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tusclient.client import TusClient

from tests.ops.support import MiB, random_bytes, receipts, sha256, wait_until
from tests.support.gateway import GatewayProcess, free_port, gateway_env, start_gateway
from tests.support.lb import RoundRobinBalancer
from tests.support.seaweed import SeaweedServer
from tests.support.zendesk import ZendeskEmulator

TICKET = 8001
MARKER = re.compile(r"\[upload-gateway file ([A-Za-z0-9]+)\]")
RATE = 8 * MiB  # per connection, client to gateway
TUS_FILES = 3
TUS_SIZE = 24 * MiB
BIG_PUT_SIZE = 24 * MiB  # 3 s at RATE: running when SIGTERM arrives, done within the grace
SMALL_PUTS = 6
SMALL_SIZE = 1 * MiB


@pytest.fixture
def balancer() -> Iterator[RoundRobinBalancer]:
    with RoundRobinBalancer(rate=RATE) as lb:
        yield lb


@pytest.fixture
def replicas(
    tmp_path: Path,
    balancer: RoundRobinBalancer,
    seaweed: SeaweedServer,
    s3_bucket: str,
    zendesk_api: ZendeskEmulator,
) -> Iterator[list[GatewayProcess]]:
    secret = os.urandom(32).hex()
    started: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):
            workdir = tmp_path / name
            env = gateway_env(
                workdir,
                GATEWAY_SECRET=secret,
                GATEWAY_PUBLIC_URL=balancer.url,
                GATEWAY_STORAGE="s3",
                GATEWAY_S3_BUCKET=s3_bucket,
                **seaweed.env(),
                **zendesk_api.env(),
            )
            started.append(start_gateway(workdir, env, free_port()))
        balancer.set_backends([proc.port for proc in started])
        yield started
    finally:
        for proc in started:
            proc.kill()


def _tus_upload(endpoint: str, name: str, data: bytes, errors: list[str]) -> None:
    try:
        uploader = TusClient(endpoint).uploader(
            file_stream=io.BytesIO(data),
            chunk_size=4 * MiB,
            metadata={"filename": name},
            retries=30,
            retry_delay=0.5,
        )
        uploader.upload()
    except Exception as exc:  # reported by the test
        errors.append(f"{name}: {exc!r}")


def _curl_put(url: str, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["curl", "-sS", "--retry", "10", "--retry-delay", "1", "--retry-all-errors",
         "-o", "-", "-w", "\n%{http_code}", "-T", str(path), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _finished(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    body, _, code = out.rpartition("\n")
    assert code == "201", f"curl: {code} {body} {err}"
    receipt: dict[str, Any] = httpx.Response(201, content=body).json()
    return receipt


def _markers(zendesk: ZendeskEmulator) -> Counter[str]:
    counts: Counter[str] = Counter()
    for comment in zendesk.comments(TICKET):
        counts.update(MARKER.findall(comment["body"]))
    return counts


def test_sigterm_one_replica_mid_upload_loses_nothing_and_delivers_once(
    tmp_path: Path,
    balancer: RoundRobinBalancer,
    replicas: list[GatewayProcess],
    zendesk_api: ZendeskEmulator,
) -> None:
    zendesk_api.create_ticket(TICKET)
    victim, other = replicas
    link = victim.link(str(TICKET))
    assert link.startswith(balancer.url)

    expected: dict[str, str] = {}

    # The large PUT is the balancer's first connection, so it runs on the victim.
    big = tmp_path / "big.bin"
    big.write_bytes(random_bytes(BIG_PUT_SIZE))
    expected["big.bin"] = sha256(big.read_bytes())
    big_put = _curl_put(f"{link}/", big)
    wait_until(lambda: balancer.active[("127.0.0.1", victim.port)], "the PUT to reach the victim")

    errors: list[str] = []
    tus_threads = []
    for i in range(TUS_FILES):
        data = random_bytes(TUS_SIZE)
        name = f"tus-{i}.bin"
        expected[name] = sha256(data)
        thread = threading.Thread(
            target=_tus_upload, args=(f"{link}/tus/", name, data, errors), daemon=True
        )
        thread.start()
        tus_threads.append(thread)

    smalls = []
    for i in range(SMALL_PUTS):
        path = tmp_path / f"small-{i}.txt"
        path.write_bytes(random_bytes(SMALL_SIZE))
        expected[path.name] = sha256(path.read_bytes())
        smalls.append(path)

    # Mid-upload: every client has bytes in flight.
    wait_until(lambda: sum(balancer.active.values()) >= 1 + TUS_FILES, "uploads in flight")
    assert victim.process is not None
    process = victim.process
    os.killpg(process.pid, signal.SIGTERM)

    # Small PUTs go through the balancer while the victim drains and comes back.
    small_receipts = [_finished(_curl_put(f"{link}/", path)) for path in smalls[:3]]
    assert process.wait(60) == 0, victim.log_tail()
    victim.process = None
    assert "shutting down: draining" in victim.log_path.read_text()
    victim.start()
    small_receipts += [_finished(_curl_put(f"{link}/", path)) for path in smalls[3:]]

    big_receipt = _finished(big_put)
    for thread in tus_threads:
        thread.join(120)
    assert not errors, errors

    # Every upload finished with its own bytes.
    assert big_receipt["sha256"] == expected["big.bin"]
    assert big_receipt["size"] == BIG_PUT_SIZE
    for receipt in small_receipts:
        assert receipt["sha256"] == expected[receipt["filename"]]
    found = receipts(link)
    assert {name: r["sha256"] for name, r in found.items()} == expected

    # Both replicas carried traffic, and the victim served both before and after its restart.
    print(f"\nconnections per backend: {dict(balancer.connections)}, refused: {balancer.refused}")
    assert balancer.connections[("127.0.0.1", other.port)] > 0
    assert victim.starts == 2

    # Each file is announced on the ticket exactly once, across both replicas.
    ids = {r["file_id"] for r in found.values()}
    assert len(ids) == len(expected)
    wait_until(lambda: set(_markers(zendesk_api)) >= ids, "every file on the ticket", timeout=90)
    wait_until(
        lambda: all(r["status"] == "delivered" for r in receipts(link).values()),
        "every receipt to say delivered",
    )
    assert _markers(zendesk_api) == dict.fromkeys(ids, 1)

    # Small files are attachments with the same bytes; large ones carry a working link.
    attachments = {
        a["file_name"]: a for c in zendesk_api.comments(TICKET) for a in c["attachments"]
    }
    for path in smalls:
        assert attachments[path.name]["sha256"] == expected[path.name]
    body = "\n".join(c["body"] for c in zendesk_api.comments(TICKET))
    for name in ("big.bin", "tus-0.bin"):
        assert expected[name] in body
