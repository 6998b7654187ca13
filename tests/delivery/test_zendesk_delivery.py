"""Delivery to Zendesk end to end: a gateway process, the emulator, and the bytes.

Attachments must arrive byte-identical (the emulator records each
attachment's SHA-256), large files must get a private comment whose link
downloads the same bytes, and every file must be named by exactly one comment.
"""

from __future__ import annotations

import hashlib
import os
import re

import httpx
import pytest

from tests.delivery.conftest import (
    GatewayFactory,
    MiB,
    all_delivered,
    gateway_comments,
    markers,
    receipts,
    ticket_updates,
    upload,
    wait_until,
)
from tests.support.zendesk import ZendeskEmulator

LINK_IN_COMMENT = re.compile(r"Download: (\S+) \(expires ")


def download_link(body: str) -> str:
    match = LINK_IN_COMMENT.search(body)
    assert match, body
    return match.group(1)


def test_small_file_lands_as_an_attachment_with_identical_bytes(
    zendesk_gateway: GatewayFactory, zendesk_api: ZendeskEmulator, storage: str
) -> None:
    zendesk_api.create_ticket(501)
    gw = zendesk_gateway(storage)
    link = gw.link("501")
    data = os.urandom(300 * 1024 + 7)
    receipt = upload(link, "trace log.txt", data)
    assert receipt["route"] == "attachment"

    delivered = wait_until(lambda: all_delivered(link, 1), "the file to be delivered")
    assert delivered[receipt["file_id"]]["status"] == "delivered"
    [comment] = gateway_comments(zendesk_api, 501)
    assert comment["public"] is False
    [attachment] = comment["attachments"]
    assert attachment["file_name"] == "trace log.txt"
    assert attachment["size"] == len(data)
    assert attachment["sha256"] == hashlib.sha256(data).hexdigest() == receipt["sha256"]
    assert receipt["sha256"] in comment["body"]
    assert markers(zendesk_api, 501) == {receipt["file_id"]: 1}


def test_file_over_attachment_max_gets_a_private_link_comment(
    zendesk_gateway: GatewayFactory, zendesk_api: ZendeskEmulator, storage: str
) -> None:
    zendesk_api.create_ticket(502)
    gw = zendesk_gateway(storage, GATEWAY_ATTACHMENT_MAX="1MiB")
    link = gw.link("502")
    data = os.urandom(MiB + 1)
    receipt = upload(link, "core.dump", data)
    assert receipt["route"] == "storage"

    wait_until(lambda: all_delivered(link, 1), "the link comment")
    [comment] = gateway_comments(zendesk_api, 502)
    assert comment["public"] is False
    assert comment["attachments"] == []
    assert "core.dump" in comment["body"] and receipt["sha256"] in comment["body"]
    url = download_link(comment["body"])
    assert url.startswith(gw.url + "/files/")
    got = httpx.get(url, timeout=60.0)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(data).hexdigest()
    # The receipt never carries the staff download link.
    assert url not in str(receipts(link))


def test_default_attachment_max_is_20_mib_on_s3(
    zendesk_gateway: GatewayFactory, zendesk_api: ZendeskEmulator
) -> None:
    """At the real default: 20 MiB is still an attachment, one byte more is a link."""
    zendesk_api.create_ticket(503)
    gw = zendesk_gateway("s3")
    link = gw.link("503")
    exact = os.urandom(20 * MiB)
    over = exact + b"!"
    small = upload(link, "exact.bin", exact)
    large = upload(link, "over.bin", over)
    assert (small["route"], large["route"]) == ("attachment", "storage")

    wait_until(lambda: all_delivered(link, 2), "both files to be delivered")
    comments = gateway_comments(zendesk_api, 503)
    attachments = [a for c in comments for a in c["attachments"]]
    assert [(a["file_name"], a["sha256"]) for a in attachments] == [
        ("exact.bin", hashlib.sha256(exact).hexdigest())
    ]
    [with_link] = [c for c in comments if "over.bin" in c["body"]]
    got = httpx.get(download_link(with_link["body"]), timeout=120.0)
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(over).hexdigest()
    assert markers(zendesk_api, 503) == {small["file_id"]: 1, large["file_id"]: 1}


@pytest.mark.parametrize("auth", ["client_credentials", "api_token"])
def test_client_credentials_and_legacy_api_token_both_deliver(
    zendesk_gateway: GatewayFactory, zendesk_api: ZendeskEmulator, auth: str
) -> None:
    zendesk_api.create_ticket(504)
    gw = zendesk_gateway("file", auth=auth)
    link = gw.link("504")
    receipt = upload(link, "a.txt", b"hello zendesk\n")
    wait_until(lambda: all_delivered(link, 1), "delivery")
    assert markers(zendesk_api, 504) == {receipt["file_id"]: 1}
    state = zendesk_api.state()
    used = {r["auth"] for r in state["requests"] if r["path"].startswith("/api/v2/")}
    assert used == {"bearer" if auth == "client_credentials" else "basic"}
    if auth == "client_credentials":
        assert state["oauth_exchanges"] >= 1


def test_twenty_files_in_quick_succession_share_few_ticket_updates(
    zendesk_gateway: GatewayFactory, zendesk_api: ZendeskEmulator
) -> None:
    zendesk_api.create_ticket(505)
    # Ten updates per window: twenty comments, one per file, could not fit.
    zendesk_api.set_rate_limit(10, window=600.0)
    gw = zendesk_gateway("file")
    link = gw.link("505")
    ids = [upload(link, f"log-{n:02}.txt", os.urandom(2048))["file_id"] for n in range(20)]

    wait_until(lambda: all_delivered(link, 20), "all twenty files")
    assert markers(zendesk_api, 505) == dict.fromkeys(ids, 1)
    updates = ticket_updates(zendesk_api, 505)
    assert 1 <= len(updates) <= 5, updates
    assert all(u["status"] == 200 for u in updates)
    assert zendesk_api.state()["rate_limited"] == 0
    attachments = [a for c in gateway_comments(zendesk_api, 505) for a in c["attachments"]]
    assert sorted(a["file_name"] for a in attachments) == [f"log-{n:02}.txt" for n in range(20)]
