"""The scan requirement travels with the file, from replica to replica.

Two replicas share one secret, one SeaweedFS bucket (uploads and the delivery
outbox live there) and one ticket system (the Zendesk emulator), as in a
rollout that adds scanning or with one misconfigured replica. Replica A has
``GATEWAY_CLAMD``, replica B has none. A takes in EICAR and a clean file while
its clamd is down, so A cannot deliver them; B sees both in the shared outbox
and must leave them alone, however often it looks, and say so in ``/readyz``
and ``/metrics``. Once A has a live clamd, EICAR is quarantined (never attached)
and the clean file delivered, each in exactly one comment.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.scan.test_quarantine import CLEAN, put, wait_for_receipt
from tests.support.clamd import EICAR, EICAR_SIGNATURE, ClamdServer, free_port
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway
from tests.support.seaweed import SeaweedServer
from tests.support.zendesk import ZendeskEmulator

TICKET = 7200
DEADLINE = 90.0


def ours(zendesk: ZendeskEmulator) -> list[dict[str, Any]]:
    """The ticket's comments that announce files (not the requester's description)."""
    return [c for c in zendesk.comments(TICKET) if "[upload-gateway file " in c["body"]]


def poll(probe: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def replicas(
    tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str, zendesk_api: ZendeskEmulator
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    secret = os.urandom(32).hex()
    dead_clamd = f"tcp://127.0.0.1:{free_port()}"
    started = []
    try:
        for name, extra in (("a", {"GATEWAY_CLAMD": dead_clamd}), ("b", {})):
            workdir = tmp_path / name
            env = gateway_env(
                workdir,
                GATEWAY_SECRET=secret,
                GATEWAY_STORAGE="s3",
                GATEWAY_S3_BUCKET=s3_bucket,
                **seaweed.env(),
                **zendesk_api.env(),
                **extra,
            )
            started.append(start_gateway(workdir, env))
        yield started[0], started[1]
    finally:
        for proc in started:
            proc.kill()


def test_a_replica_without_a_scanner_never_delivers_a_file_that_must_be_scanned(
    replicas: tuple[GatewayProcess, GatewayProcess],
    zendesk_api: ZendeskEmulator,
    clamd: ClamdServer,
) -> None:
    scanning, plain = replicas
    zendesk_api.create_ticket(TICKET)
    link = scanning.link(str(TICKET))
    put(link, {"eicar.com": EICAR, "notes.txt": CLEAN})

    def waiting() -> int:
        ready = httpx.get(f"{plain.url}/readyz", timeout=10).json()
        return int(ready.get("waiting_for_scanner", 0))

    poll(lambda: waiting() == 2, "replica B to report two files waiting for a scanner")
    ready = httpx.get(f"{plain.url}/readyz", timeout=10)
    assert ready.status_code == 200  # B still serves uploads
    assert "no scanner" in ready.json()["warnings"][0]
    metrics = httpx.get(f"{plain.url}/metrics", timeout=10).text
    assert re.search(r"^gateway_deliveries_waiting_for_scanner 2\.0$", metrics, re.M), metrics
    assert "leaving them to a process that scans" in plain.log_tail(200)
    # B's outbox polls every 5 s: give it more than one more pass to misbehave.
    time.sleep(6)
    assert waiting() == 2
    assert ours(zendesk_api) == []
    for name in ("eicar.com", "notes.txt"):
        assert wait_for_receipt(link, name)["status"] == "pending"

    scanning.kill()
    scanning.env["GATEWAY_CLAMD"] = clamd.tcp_address
    scanning.start()
    bad = wait_for_receipt(link, "eicar.com", settled=True)
    assert bad["status"] == "quarantined" and bad["scan"] == f"infected:{EICAR_SIGNATURE}"
    good = wait_for_receipt(link, "notes.txt", settled=True)
    assert good["status"] == "delivered" and good["scan"] == "clean"
    comments = poll(lambda: ours(zendesk_api), "the ticket comment")
    body = "".join(c["body"] for c in comments)
    attached = [a["file_name"] for c in comments for a in c["attachments"]]
    assert attached == ["notes.txt"]
    assert f"QUARANTINED: malware detected ({EICAR_SIGNATURE})" in body
    for receipt in (bad, good):
        assert body.count(f"[upload-gateway file {receipt['file_id']}]") == 1
    poll(lambda: waiting() == 0, "replica B to see the outbox empty")
