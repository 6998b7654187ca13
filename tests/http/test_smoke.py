"""End to end through a real gateway process, on both stores."""

from __future__ import annotations

import hashlib
import os
import time

import httpx

from tests.support.gateway import GatewayProcess, ticket_comments


def test_put_small_and_large_are_routed_and_delivered(gateway_any: GatewayProcess) -> None:
    link = gateway_any.link("4242")
    small = os.urandom(300_000)
    large = os.urandom(21 * 1024 * 1024)
    r1 = httpx.put(f"{link}/small.log", content=small, timeout=60)
    r2 = httpx.put(f"{link}/large.bin", content=large, timeout=60)
    assert r1.status_code == 201, r1.text
    assert r2.status_code == 201, r2.text
    assert r1.json()["route"] == "attachment"
    assert r2.json()["route"] == "storage"
    assert r2.json()["sha256"] == hashlib.sha256(large).hexdigest()
    deadline = time.monotonic() + 30
    while True:
        body = "\n".join(c["body"] for c in ticket_comments(gateway_any, "4242"))
        if body.count("[upload-gateway file") >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert hashlib.sha256(small).hexdigest() in body
    assert hashlib.sha256(large).hexdigest() in body
    assert "/files/" in body
    assert body.count(f"[upload-gateway file {r1.json()['file_id']}]") == 1
