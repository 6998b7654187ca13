"""``POST /api/zendesk/webhook`` on a real gateway, signed as Zendesk signs it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gateway.tickets.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook
from tests.delivery.conftest import GatewayFactory
from tests.support.gateway import GatewayProcess
from tests.support.zendesk import ZendeskEmulator

SECRET = "dGhpcyBpcyBhIHRlc3Qgc2lnbmluZyBzZWNyZXQ"
UPLOAD_LINK = re.compile(r"(http://127\.0\.0\.1:\d+/u/[A-Za-z0-9._~-]+)")


def timestamp(offset: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%SZ")


def send(
    gw: GatewayProcess,
    payload: Mapping[str, object],
    *,
    secret: str = SECRET,
    ts: str | None = None,
    body: bytes | None = None,
) -> tuple[httpx.Response, dict[str, str], bytes]:
    raw = body if body is not None else json.dumps(payload).encode()
    ts = ts or timestamp()
    headers = {
        SIGNATURE_HEADER: sign_webhook(raw, secret, ts),
        TIMESTAMP_HEADER: ts,
        "Content-Type": "application/json",
    }
    response = httpx.post(f"{gw.url}/api/zendesk/webhook", content=raw, headers=headers)
    return response, headers, raw


def metric(gw: GatewayProcess, line: str) -> float:
    text = httpx.get(f"{gw.url}/metrics").text
    match = re.search(rf"^{re.escape(line)} (\S+)$", text, re.MULTILINE)
    assert match, line
    return float(match.group(1))


@pytest.fixture
def webhook_gateway(zendesk_gateway: GatewayFactory) -> GatewayProcess:
    return zendesk_gateway("file", GATEWAY_ZENDESK_WEBHOOK_SECRET=SECRET)


def test_signed_webhook_posts_a_working_upload_link_as_a_public_comment(
    webhook_gateway: GatewayProcess, zendesk_api: ZendeskEmulator
) -> None:
    gw = webhook_gateway
    zendesk_api.create_ticket(701, "partner@example.test")
    payload = {"ticket_id": "701", "requester_email": "partner@example.test"}
    response, _, _ = send(gw, payload)
    assert response.status_code == 200, response.text
    assert response.json()["ticket"] == "701"

    comments = zendesk_api.comments(701)
    [posted] = [c for c in comments if "/u/" in c["body"]]
    assert posted["public"] is True
    match = UPLOAD_LINK.search(posted["body"])
    assert match, posted["body"]
    listing = httpx.get(f"{match.group(1)}/files")
    assert listing.status_code == 200 and listing.json()["ticket"] == "701"
    assert metric(gw, 'gateway_links_minted_total{via="webhook"}') == 1

    # A numeric placeholder value works too.
    again, _, _ = send(gw, {"ticket_id": 701})
    assert again.status_code == 200


def test_forged_stale_and_replayed_webhooks_are_refused(
    webhook_gateway: GatewayProcess, zendesk_api: ZendeskEmulator
) -> None:
    gw = webhook_gateway
    zendesk_api.create_ticket(702)
    payload = {"ticket_id": "702"}

    forged, _, _ = send(gw, payload, secret="not-the-secret")
    assert forged.status_code == 401
    assert "signature" in forged.json()["error"]["message"]

    stale, _, _ = send(gw, payload, ts=timestamp(timedelta(hours=-1)))
    assert stale.status_code == 401
    assert "timestamp" in stale.json()["error"]["message"]

    unsigned = httpx.post(f"{gw.url}/api/zendesk/webhook", json=payload)
    assert unsigned.status_code == 401

    first, headers, raw = send(gw, payload)
    assert first.status_code == 200
    replay = httpx.post(f"{gw.url}/api/zendesk/webhook", content=raw, headers=headers)
    assert replay.status_code == 409
    assert "already processed" in replay.json()["error"]["message"]

    # Only the one genuine request reached the ticket.
    assert len([c for c in zendesk_api.comments(702) if "/u/" in c["body"]]) == 1
    assert metric(gw, 'gateway_links_minted_total{via="webhook"}') == 1


def test_bad_bodies_and_ticket_errors_are_clear(
    webhook_gateway: GatewayProcess, zendesk_api: ZendeskEmulator
) -> None:
    gw = webhook_gateway
    no_ticket, _, _ = send(gw, {"requester_email": "x@example.test"})
    assert no_ticket.status_code == 400
    assert "ticket_id" in no_ticket.json()["error"]["message"]

    huge, _, _ = send(gw, {}, body=b'{"ticket_id": "1", "pad": "' + b"x" * 70_000 + b'"}')
    assert huge.status_code == 413

    unknown, headers, raw = send(gw, {"ticket_id": "7999"})
    assert unknown.status_code == 502
    assert "404" in unknown.json()["error"]["message"]

    # A failed attempt does not count as used: Zendesk's retry of it may succeed.
    zendesk_api.create_ticket(7999)
    retried = httpx.post(f"{gw.url}/api/zendesk/webhook", content=raw, headers=headers)
    assert retried.status_code == 200

    zendesk_api.outage("503", retry_after=7)
    # A different body: the same one within the same second would be a replay.
    down, _, _ = send(gw, {"ticket_id": "7999", "requester_email": "b@example.test"})
    zendesk_api.outage(None)
    assert down.status_code == 503
    assert down.headers["retry-after"] == "7"


def test_webhook_is_off_without_a_secret(
    zendesk_gateway: GatewayFactory, zendesk_api: ZendeskEmulator
) -> None:
    gw = zendesk_gateway("file")
    zendesk_api.create_ticket(703)
    response, _, _ = send(gw, {"ticket_id": "703"})
    assert response.status_code == 404
    assert [c for c in zendesk_api.comments(703) if "/u/" in c["body"]] == []
