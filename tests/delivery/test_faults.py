"""Nothing lost, nothing twice: delivery to Zendesk under 429s, outages, crashes, expiry.

The proof of "exactly one comment per file" is always the same: count each
file's marker (``[upload-gateway file ID]``) across all of the ticket's
comments in the emulator, and require exactly one per uploaded file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from functools import partial

import httpx
import pytest

from tests.delivery.conftest import (
    GatewayFactory,
    all_delivered,
    gateway_comments,
    markers,
    receipts,
    ticket_updates,
    upload,
    wait_until,
)
from tests.delivery.proxy import HoldingProxy
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


@pytest.fixture
def proxy(zendesk_api: ZendeskEmulator) -> Iterator[HoldingProxy]:
    p = HoldingProxy(zendesk_api.url).start()
    yield p
    p.stop()


def test_429_storm_delivers_everything_exactly_once(
    zendesk_gateway: GatewayFactory, zendesk_api: ZendeskEmulator
) -> None:
    tickets = [611, 612, 613]
    for ticket in tickets:
        zendesk_api.create_ticket(ticket)
    # One update per ticket every 3 seconds, and a burst of injected 429s on top.
    zendesk_api.set_rate_limit(1, window=3.0)
    zendesk_api.fail_next(429, count=5, path="/api/v2/tickets/", method="PUT")
    gw = zendesk_gateway("file")
    links = {t: gw.link(str(t)) for t in tickets}
    uploaded: dict[int, list[str]] = {t: [] for t in tickets}
    for wave in range(2):
        for ticket, link in links.items():
            receipt = upload(link, f"wave{wave}.log", os.urandom(1000 + wave))
            uploaded[ticket].append(receipt["file_id"])
        if wave == 0:
            # The second wave lands while each ticket's single update slot is used.
            wait_until(lambda: any(markers(zendesk_api, t) for t in tickets), "a first delivery")

    for ticket, link in links.items():
        wait_until(partial(all_delivered, link, 2), f"ticket {ticket}'s files")
    for ticket in tickets:
        assert markers(zendesk_api, ticket) == dict.fromkeys(uploaded[ticket], 1)
    assert requests_with_status(zendesk_api, 429, "PUT") >= 5


def test_503_outage_with_a_gateway_sigkill_loses_nothing_and_duplicates_nothing(
    zendesk_gateway: GatewayFactory, zendesk_api: ZendeskEmulator, storage: str
) -> None:
    zendesk_api.create_ticket(621)
    zendesk_api.create_ticket(622)
    zendesk_api.outage("503", retry_after=1)
    gw = zendesk_gateway(storage)
    link_a, link_b = gw.link("621"), gw.link("622")
    before = [upload(link_a, f"a{n}.bin", os.urandom(5000 + n))["file_id"] for n in range(3)]
    before.append(upload(link_b, "b0.bin", os.urandom(777))["file_id"])

    # The gateway has tried and been turned away; the receipts say so.
    wait_until(lambda: requests_with_status(zendesk_api, 503) >= 2, "503 answers")
    pending = wait_until(
        lambda: [r for r in receipts(link_a).values() if "503" in r.get("status_detail", "")],
        "a receipt explaining the retry",
    )
    assert all(r["status"] == "pending" for r in pending)
    assert metric(gw.url, "gateway_deliveries_pending") == 4
    assert metric(gw.url, "gateway_delivery_oldest_age_seconds") > 0

    gw.kill()
    gw.start()
    # More files arrive while the ticket API is still down.
    after = [upload(link_a, "a-late.bin", os.urandom(4321))["file_id"]]
    after.append(upload(link_b, "b-late.bin", os.urandom(1234))["file_id"])
    seen = requests_with_status(zendesk_api, 503)
    wait_until(lambda: requests_with_status(zendesk_api, 503) > seen, "retries after restart")
    assert markers(zendesk_api, 621) == {} and markers(zendesk_api, 622) == {}

    zendesk_api.outage(None)
    wait_until(lambda: all_delivered(link_a, 4), "ticket 621's files")
    wait_until(lambda: all_delivered(link_b, 2), "ticket 622's files")
    assert markers(zendesk_api, 621) == dict.fromkeys(before[:3] + after[:1], 1)
    assert markers(zendesk_api, 622) == dict.fromkeys(before[3:] + after[1:], 1)
    wait_until(lambda: metric(gw.url, "gateway_deliveries_pending") == 0, "an empty outbox")
    assert metric(gw.url, "gateway_delivery_oldest_age_seconds") == 0


def test_crash_after_the_comment_was_recorded_does_not_post_it_again(
    zendesk_gateway: GatewayFactory,
    zendesk_api: ZendeskEmulator,
    proxy: HoldingProxy,
    storage: str,
) -> None:
    """SIGKILL the gateway while Zendesk has the comment and the gateway has no answer yet."""
    zendesk_api.create_ticket(631)
    gw = zendesk_gateway(storage, GATEWAY_ZENDESK_URL=proxy.url)
    proxy.arm("PUT", "/api/v2/tickets/631")
    link = gw.link("631")
    ids = [upload(link, f"f{n}.txt", os.urandom(999 + n))["file_id"] for n in range(2)]

    assert proxy.held.wait(60.0), "the gateway never posted the comment"
    # Zendesk now shows the files; the gateway has not recorded the delivery.
    assert markers(zendesk_api, 631) == dict.fromkeys(ids, 1)
    assert {r["status"] for r in receipts(link).values()} == {"pending"}
    gw.kill()
    proxy.release()

    listings_before = zendesk_api.state()["counts"].get(
        "GET /api/v2/tickets/{ticket_id}/comments", 0
    )
    gw.start()
    wait_until(lambda: all_delivered(link, 2), "the deliveries to be recorded")
    assert markers(zendesk_api, 631) == dict.fromkeys(ids, 1)
    assert len(ticket_updates(zendesk_api, 631)) == 1
    # The restarted gateway asked the ticket rather than posting blindly.
    counts = zendesk_api.state()["counts"]
    assert counts["GET /api/v2/tickets/{ticket_id}/comments"] > listings_before


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

    failed = wait_until(
        lambda: (r := receipts(link)[receipt["file_id"]])["status"] == "failed" and r,
        "a failed status",
    )
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
