"""Delivery end to end, for every ticket system: a gateway process, an emulator, the bytes.

Each test runs once per registered helpdesk (``tests/support/helpdesk.py``).
Attachments must arrive byte-identical under the name the receipt gives,
large files must get a private comment whose link downloads the same bytes,
the routing boundary is the system's own ``GATEWAY_ATTACHMENT_MAX``, files that
finish together share comments, and every file is named by exactly one comment.
"""

from __future__ import annotations

import hashlib
import os
import re

import httpx

from tests.delivery.conftest import (
    HelpdeskGatewayFactory,
    MiB,
    all_delivered,
    gateway_comments,
    markers,
    receipts,
    upload,
    wait_until,
)
from tests.support.helpdesk import HelpdeskEmulator

LINK_IN_COMMENT = re.compile(r"Download: (\S+) \(expires ")
NAMES = ["trace log.txt", "résumé (final) [v2].pdf", "日本語のログ.txt", "a+b&c=d;e.csv"]


def download_link(body: str) -> str:
    match = LINK_IN_COMMENT.search(body)
    assert match, body
    return match.group(1)


def test_small_files_land_as_attachments_with_their_names_and_bytes(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: HelpdeskEmulator
) -> None:
    ticket = helpdesk.create_ticket()
    gw = helpdesk_gateway()
    link = gw.link(ticket)
    sent = {name: os.urandom(300 * 1024 + n) for n, name in enumerate(NAMES)}
    got = {name: upload(link, name, data) for name, data in sent.items()}
    assert {r["route"] for r in got.values()} == {"attachment"}

    wait_until(lambda: all_delivered(link, len(sent)), "the files to be delivered")
    comments = gateway_comments(helpdesk, ticket)
    assert all(c["public"] is False for c in comments)
    attachments = {a["file_name"]: a for c in comments for a in c["attachments"]}
    assert sorted(attachments) == sorted(r["filename"] for r in got.values())
    for name, data in sent.items():
        receipt = got[name]
        attachment = attachments[receipt["filename"]]
        assert attachment["size"] == len(data)
        assert attachment["sha256"] == hashlib.sha256(data).hexdigest() == receipt["sha256"]
        [comment] = [c for c in comments if attachment in c["attachments"]]
        assert receipt["filename"] in comment["body"] and receipt["sha256"] in comment["body"]
    assert markers(helpdesk, ticket) == {r["file_id"]: 1 for r in got.values()}


def test_file_over_attachment_max_gets_a_private_link_comment(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: HelpdeskEmulator
) -> None:
    ticket = helpdesk.create_ticket()
    gw = helpdesk_gateway(GATEWAY_ATTACHMENT_MAX="1MiB")
    link = gw.link(ticket)
    data = os.urandom(MiB + 1)
    receipt = upload(link, "core.dump", data)
    assert receipt["route"] == "storage"

    wait_until(lambda: all_delivered(link, 1), "the link comment")
    [comment] = gateway_comments(helpdesk, ticket)
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


def test_routing_boundary_is_the_systems_default_attachment_max_on_s3(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: HelpdeskEmulator
) -> None:
    """At the system's real default: that many bytes is an attachment, one more is a link."""
    ticket = helpdesk.create_ticket()
    gw = helpdesk_gateway("s3")
    boundary = gw.settings.attachment_max
    link = gw.link(ticket)
    exact = os.urandom(boundary)
    over = exact + b"!"
    small = upload(link, "exact.bin", exact)
    large = upload(link, "over.bin", over)
    assert (small["route"], large["route"]) == ("attachment", "storage")

    wait_until(lambda: all_delivered(link, 2), "both files to be delivered")
    comments = gateway_comments(helpdesk, ticket)
    attachments = [a for c in comments for a in c["attachments"]]
    assert [(a["file_name"], a["sha256"]) for a in attachments] == [
        ("exact.bin", hashlib.sha256(exact).hexdigest())
    ]
    [with_link] = [c for c in comments if "over.bin" in c["body"]]
    got = httpx.get(download_link(with_link["body"]), timeout=120.0)
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(over).hexdigest()
    assert markers(helpdesk, ticket) == {small["file_id"]: 1, large["file_id"]: 1}


def test_twenty_files_in_quick_succession_share_few_comments(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: HelpdeskEmulator
) -> None:
    ticket = helpdesk.create_ticket()
    gw = helpdesk_gateway()
    link = gw.link(ticket)
    ids = [upload(link, f"log-{n:02}.txt", os.urandom(2048))["file_id"] for n in range(20)]

    wait_until(lambda: all_delivered(link, 20), "all twenty files")
    assert markers(helpdesk, ticket) == dict.fromkeys(ids, 1)
    comments = gateway_comments(helpdesk, ticket)
    assert 1 <= len(comments) <= 5, [c["body"][:60] for c in comments]
    attachments = [a for c in comments for a in c["attachments"]]
    assert sorted(a["file_name"] for a in attachments) == [f"log-{n:02}.txt" for n in range(20)]
