"""Zendesk's own faults: upload tokens that expire, credentials it refuses.

429s, outages and crashes are in test_delivery_faults.py, for every ticket
system. The proof of "exactly one comment per file" is the same there: count
each file's marker (``[upload-gateway file ID]``) across the ticket's comments.
"""

from __future__ import annotations

import hashlib
import os
import re

import httpx

from tests.delivery.conftest import (
    GatewayFactory,
    all_delivered,
    failed_receipt,
    gateway_comments,
    markers,
    receipts,
    upload,
    wait_until,
)
from tests.support.zendesk import ZendeskEmulator


def metric(base_url: str, name: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10.0).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def requests_with_status(zendesk: ZendeskEmulator, status: int, method: str = "") -> int:
    return sum(
        1
        for r in zendesk.state()["requests"]
        if r["status"] == status and method in ("", r["method"])
    )


def test_upload_token_expiry_before_the_comment_reuploads_not_drops(
    zendesk_gateway: GatewayFactory, zendesk_api: ZendeskEmulator
) -> None:
    zendesk_api.create_ticket(641)
    zendesk_api.set_token_ttl(0.0)  # every upload token is dead on arrival
    gw = zendesk_gateway("file")
    link = gw.link("641")
    data = os.urandom(64 * 1024)
    receipt = upload(link, "expiring.bin", data)

    # The client re-uploaded once within the call, and the update still failed.
    wait_until(lambda: requests_with_status(zendesk_api, 422, "PUT") >= 2, "refused tokens")
    uploads_so_far = zendesk_api.state()["counts"]["POST /api/v2/uploads"]
    assert uploads_so_far >= 2
    status = wait_until(
        lambda: (r := receipts(link)[receipt["file_id"]]).get("status_detail") and r,
        "a status detail",
    )
    assert status["status"] == "pending", status  # retried, not parked as failed
    assert "expired" in status["status_detail"]

    zendesk_api.set_token_ttl(3600.0)
    wait_until(lambda: all_delivered(link, 1), "delivery with fresh tokens")
    [comment] = gateway_comments(zendesk_api, 641)
    [attachment] = comment["attachments"]
    assert attachment["sha256"] == hashlib.sha256(data).hexdigest()
    assert zendesk_api.state()["counts"]["POST /api/v2/uploads"] > uploads_so_far
    assert markers(zendesk_api, 641) == {receipt["file_id"]: 1}


def test_wrong_credentials_show_failed_receipt_and_red_readyz(
    zendesk_gateway: GatewayFactory, zendesk_api: ZendeskEmulator
) -> None:
    zendesk_api.create_ticket(651)
    gw = zendesk_gateway("file", GATEWAY_ZENDESK_OAUTH_TOKEN="not-the-token")
    link = gw.link("651")
    receipt = upload(link, "x.txt", b"some bytes")

    failed = failed_receipt(link, receipt["file_id"])
    assert "unauthorized" in failed["status_detail"]
    assert "not-the-token" not in failed["status_detail"]
    ready = httpx.get(f"{gw.url}/readyz", timeout=15.0)
    assert ready.status_code == 503
    assert ready.json()["checks"]["tickets"].startswith("unauthorized")
    assert ready.json()["checks"]["storage"] == "ok"
    assert metric(gw.url, "gateway_deliveries_pending") == 1

    # Fixing the credentials and restarting delivers the parked file at once,
    # not after the long wait given to refusals.
    gw.kill()
    gw.env["GATEWAY_ZENDESK_OAUTH_TOKEN"] = zendesk_api.credentials.oauth_token
    gw.start()
    wait_until(lambda: all_delivered(link, 1), "delivery after the fix", timeout=60.0)
    assert markers(zendesk_api, 651) == {receipt["file_id"]: 1}
    assert httpx.get(f"{gw.url}/readyz", timeout=15.0).status_code == 200
