"""What is Jira's own, end to end: its refusals, its readiness check, its attachment cap.

A gateway process delivers to the Jira Service Management emulator. Refused
credentials and a wrong service desk are configuration errors in ``/readyz``
and the logs, never retried in a loop; a deleted or closed request gives a
``failed`` receipt that says why; the attachment cap is clamped and said at
start-up.
"""

from __future__ import annotations

import os

import httpx
import pytest

from tests.delivery.conftest import (
    HelpdeskGatewayFactory,
    MiB,
    all_delivered,
    failed_receipt,
    gateway_comments,
    markers,
    ticket_errors,
    upload,
    wait_until,
)
from tests.support.jira import JiraEmulator

# The shared gateway factory, pointed at the Jira emulator only.
pytestmark = pytest.mark.parametrize("helpdesk", ["jira"], indirect=True)


def test_wrong_api_token_is_a_configuration_error_not_a_retry_loop(
    helpdesk_gateway: HelpdeskGatewayFactory, jira_api: JiraEmulator
) -> None:
    ticket = jira_api.create_ticket()
    gw = helpdesk_gateway(GATEWAY_JIRA_API_TOKEN="not-the-token")
    link = gw.link(ticket)
    receipt = upload(link, "x.txt", b"some bytes")

    status = failed_receipt(link, receipt["file_id"])
    assert "unauthorized" in status["status_detail"]
    assert "not-the-token" not in status["status_detail"]
    ready = httpx.get(f"{gw.url}/readyz", timeout=15.0)
    assert ready.status_code == 503
    assert ready.json()["checks"]["tickets"].startswith("unauthorized")
    assert "GATEWAY_JIRA_API_TOKEN" in ready.json()["checks"]["tickets"]
    assert "unauthorized" in gw.log_tail(200)
    # Parked, not hammered: a refusal waits long before the next try.
    refused = ticket_errors(gw.url, 401)
    assert ticket_errors(gw.url, 401) == refused

    gw.kill()
    gw.env["GATEWAY_JIRA_API_TOKEN"] = jira_api.credentials.api_token
    gw.start()
    wait_until(lambda: all_delivered(link, 1), "delivery after the fix", timeout=60.0)
    assert markers(jira_api, ticket) == {receipt["file_id"]: 1}
    assert httpx.get(f"{gw.url}/readyz", timeout=15.0).status_code == 200


def test_wrong_service_desk_is_named_in_readyz(
    helpdesk_gateway: HelpdeskGatewayFactory, jira_api: JiraEmulator
) -> None:
    gw = helpdesk_gateway(GATEWAY_JIRA_SERVICE_DESK_ID="77")
    ready = httpx.get(f"{gw.url}/readyz", timeout=15.0)
    assert ready.status_code == 503
    check = ready.json()["checks"]["tickets"]
    assert check.startswith("misconfigured") and "GATEWAY_JIRA_SERVICE_DESK_ID" in check


def test_deleted_and_closed_requests_give_failed_receipts_that_say_why(
    helpdesk_gateway: HelpdeskGatewayFactory, jira_api: JiraEmulator
) -> None:
    deleted, closed = jira_api.create_ticket(), jira_api.create_ticket()
    gw = helpdesk_gateway()
    link_deleted, link_closed = gw.link(deleted), gw.link(closed)
    jira_api.delete_ticket(deleted)
    jira_api.close_ticket(closed)
    gone = upload(link_deleted, "a.log", b"a" * 100)
    shut = upload(link_closed, "b.log", b"b" * 100)

    assert "does not exist" in failed_receipt(link_deleted, gone["file_id"])["status_detail"]
    assert "closed" in failed_receipt(link_closed, shut["file_id"])["status_detail"]
    # The ticket system is fine; only those requests refuse.
    assert httpx.get(f"{gw.url}/readyz", timeout=15.0).status_code == 200


def test_attachment_max_is_clamped_and_said_at_start_up(
    helpdesk_gateway: HelpdeskGatewayFactory, jira_api: JiraEmulator
) -> None:
    gw = helpdesk_gateway(GATEWAY_ATTACHMENT_MAX="5GiB")
    assert gw.settings.attachment_max == 2_000_000_000
    log = gw.log_tail(200)
    assert (
        "GATEWAY_ATTACHMENT_MAX is 5.0 GiB but GATEWAY_TICKETS=jira takes attachments of at "
        "most 2,000,000,000 bytes"
    ) in log
    # The site's own setting (10 MiB) is lower still: the boundary follows it.
    assert "takes attachments of at most 10,485,760 bytes (its own setting)" in log


def test_public_comments_when_asked(
    helpdesk_gateway: HelpdeskGatewayFactory, jira_api: JiraEmulator
) -> None:
    ticket = jira_api.create_ticket()
    gw = helpdesk_gateway(GATEWAY_PUBLIC_COMMENTS="true")
    link = gw.link(ticket)
    receipt = upload(link, "shown.bin", os.urandom(4096))
    assert receipt["route"] == "attachment"
    wait_until(lambda: all_delivered(link, 1), "delivery")
    [comment] = gateway_comments(jira_api, ticket)
    assert comment["public"] is True
    assert comment["attachments"][0]["sha256"] == receipt["sha256"]


def test_routing_boundary_follows_the_sites_attachment_setting(
    helpdesk_gateway: HelpdeskGatewayFactory, jira_api: JiraEmulator
) -> None:
    """The site takes less than GATEWAY_ATTACHMENT_MAX: the gateway routes by the site's size."""
    ticket = jira_api.create_ticket()
    jira_api.set_faults(attachment_limit=MiB)
    gw = helpdesk_gateway(GATEWAY_ATTACHMENT_MAX="8MiB")
    assert "takes attachments of at most 1,048,576 bytes (its own setting)" in gw.log_tail(200)
    link = gw.link(ticket)
    fits = upload(link, "fits.bin", os.urandom(MiB))
    over = upload(link, "over.bin", os.urandom(MiB + 1))
    assert (fits["route"], over["route"]) == ("attachment", "storage")
    wait_until(lambda: all_delivered(link, 2), "both files")
    attachments = [a for c in gateway_comments(jira_api, ticket) for a in c["attachments"]]
    assert [a["file_name"] for a in attachments] == ["fits.bin"]


def test_attachments_turned_off_on_the_site_make_every_file_a_link(
    helpdesk_gateway: HelpdeskGatewayFactory, jira_api: JiraEmulator
) -> None:
    ticket = jira_api.create_ticket()
    jira_api.set_faults(attachments_enabled=False)
    gw = helpdesk_gateway()
    link = gw.link(ticket)
    receipt = upload(link, "tiny.txt", b"tiny")
    assert receipt["route"] == "storage"
    wait_until(lambda: all_delivered(link, 1), "the link comment")
    [comment] = gateway_comments(jira_api, ticket)
    assert comment["attachments"] == [] and "Download: " in comment["body"]


def test_a_site_setting_unreadable_at_start_up_keeps_the_configured_boundary(
    helpdesk_gateway: HelpdeskGatewayFactory, jira_api: JiraEmulator
) -> None:
    jira_api.outage("503", retry_after=1)
    try:
        gw = helpdesk_gateway(GATEWAY_ATTACHMENT_MAX="3MiB")
    finally:
        jira_api.outage(None)
    assert "could not read the attachment size setting of jira" in gw.log_tail(200)
    link = gw.link(jira_api.create_ticket())
    assert upload(link, "three.bin", os.urandom(3 * MiB))["route"] == "attachment"
    wait_until(lambda: all_delivered(link, 1), "delivery")


def test_a_burst_of_files_is_split_into_comments_jira_can_hold(
    helpdesk_gateway: HelpdeskGatewayFactory, jira_api: JiraEmulator
) -> None:
    ticket = jira_api.create_ticket()
    gw = helpdesk_gateway(GATEWAY_ATTACHMENT_MAX="1KiB")
    link = gw.link(ticket)
    ids = [upload(link, f"part-{n:02}.log", os.urandom(2048))["file_id"] for n in range(30)]
    wait_until(lambda: all_delivered(link, 30), "all thirty files")
    assert markers(jira_api, ticket) == dict.fromkeys(ids, 1)
    comments = gateway_comments(jira_api, ticket)
    per_comment = [c["body"].count("[upload-gateway file ") for c in comments]
    assert len(comments) >= 2 and max(per_comment) <= 25, per_comment
    assert sum(per_comment) == 30
