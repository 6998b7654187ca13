"""What is Freshdesk's and ServiceNow's own, end to end: a gateway process, the emulator.

What every ticket system must do (routing, names, bytes, coalescing, outages,
a crash between posting and recording) is in test_delivery.py and
test_delivery_faults.py, parametrised over the registered helpdesks. Here:
a deleted ticket, refused credentials in ``/readyz``, the clamp of
``GATEWAY_ATTACHMENT_MAX`` said at start-up, the staff API's ``comment``
option, and the systems' own ticket ids through ``gateway link``.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.delivery.conftest import (
    HelpdeskGatewayFactory,
    all_delivered,
    failed_receipt,
    markers,
    upload,
    wait_until,
)
from tests.support.freshdesk_emulator import FreshdeskEmulator
from tests.support.servicenow_emulator import ServiceNowEmulator

pytestmark = pytest.mark.parametrize("helpdesk", ["freshdesk", "servicenow"], indirect=True)

Emulator = FreshdeskEmulator | ServiceNowEmulator


def test_a_deleted_ticket_fails_visibly(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: Emulator
) -> None:
    ticket = helpdesk.create_ticket()
    helpdesk.delete_ticket(ticket)
    gw = helpdesk_gateway()
    link = gw.link(ticket)
    receipt = upload(link, "orphan.txt", b"nobody to read me\n")
    failed = failed_receipt(link, receipt["file_id"])
    assert "refused" in failed["status_detail"] and ticket in failed["status_detail"]


def test_readiness_checks_the_credentials(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: Emulator
) -> None:
    good = helpdesk_gateway()
    ready = httpx.get(f"{good.url}/readyz", timeout=30.0)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["tickets"] == "ok"

    wrong = (
        {"GATEWAY_FRESHDESK_API_KEY": "not-the-key"}
        if helpdesk.name == "freshdesk"
        else {"GATEWAY_SERVICENOW_PASSWORD": "not-the-password"}
    )
    bad = helpdesk_gateway(**wrong)
    refused = httpx.get(f"{bad.url}/readyz", timeout=30.0)
    assert refused.status_code == 503
    check = refused.json()["checks"]["tickets"]
    assert check.startswith("unauthorized:") and "HTTP 401" in check
    assert "not-the" not in check
    wait_until(
        lambda: "configuration error: " + helpdesk.name in bad.log_tail(200),
        "the start-up line about refused credentials",
    )
    assert "not-the" not in bad.log_tail(500)
    assert "configuration error" not in good.log_tail(500)


def test_start_up_says_when_attachment_max_is_clamped(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: Emulator
) -> None:
    limit = {"freshdesk": 20_000_000, "servicenow": 1024**3}[helpdesk.name]
    gw = helpdesk_gateway(GATEWAY_ATTACHMENT_MAX="5GiB")
    assert gw.settings.attachment_max == limit
    wait_until(lambda: "takes attachments of at most" in gw.log_tail(200), "the clamp log line")
    line = next(x for x in gw.log_tail(200).splitlines() if "takes attachments of at most" in x)
    assert "GATEWAY_ATTACHMENT_MAX" in line and f"at most {limit:,} bytes" in line


def test_the_staff_api_can_post_the_link_on_the_ticket(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: Emulator
) -> None:
    """What a helpdesk automation calls: the link lands on the ticket for the requester."""
    ticket = helpdesk.create_ticket()
    gw = helpdesk_gateway()
    headers = {"Authorization": f"Bearer {gw.env['GATEWAY_STAFF_TOKEN']}"}
    minted = httpx.post(
        f"{gw.url}/api/links", json={"ticket": ticket, "comment": "public"}, headers=headers
    )
    assert minted.status_code == 201, minted.text
    assert minted.json()["comment"] == "public"
    [comment] = helpdesk.comments(ticket)
    assert comment["public"] is True and minted.json()["url"] in comment["body"]
    assert httpx.get(minted.json()["url"]).status_code == 200  # the upload page

    helpdesk.delete_ticket(ticket)
    refused = httpx.post(
        f"{gw.url}/api/links", json={"ticket": ticket, "comment": "private"}, headers=headers
    )
    assert refused.status_code == 502
    assert refused.json()["error"]["code"] == "tickets_refused"
    bad = httpx.post(
        f"{gw.url}/api/links", json={"ticket": ticket, "comment": "loud"}, headers=headers
    )
    assert bad.status_code == 400 and "'comment'" in bad.json()["error"]["message"]


def test_gateway_link_mints_for_the_systems_ticket_ids(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: Emulator
) -> None:
    ticket = helpdesk.create_ticket()  # "1" for Freshdesk, "INC0010001" for ServiceNow
    gw = helpdesk_gateway()
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "link", "--ticket", ticket],
        env=gw.env, cwd=gw.workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip().splitlines()[-1]
    assert url.startswith(gw.url + "/u/")
    receipt = upload(url, "via-cli.txt", b"minted on the command line\n")
    assert receipt["ticket"] == ticket
    wait_until(lambda: all_delivered(url, 1), "delivery through the CLI's link")
    assert markers(helpdesk, ticket) == {receipt["file_id"]: 1}
