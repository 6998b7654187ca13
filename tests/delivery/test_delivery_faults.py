"""Nothing lost, nothing twice, for every ticket system: 429s, an outage that ends, crashes.

Each test runs once per registered helpdesk (``tests/support/helpdesk.py``).
The proof of "exactly one comment per file" is always the same: count each
file's marker (``[upload-gateway file ID]``) across all of the ticket's
comments in the emulator, and require exactly one per uploaded file. What the
gateway was told by the ticket system is read from its own metrics
(``gateway_ticket_errors_total`` by status), so no test needs to know the
system's paths. The tests that involve the store take the two stores in
turn across the systems rather than every pair.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial

import pytest

from tests.delivery.conftest import (
    HelpdeskGatewayFactory,
    all_delivered,
    markers,
    metric_sum,
    receipts,
    ticket_errors,
    upload,
    wait_until,
)
from tests.delivery.proxy import HoldingProxy
from tests.support.helpdesk import HelpdeskEmulator, each_helpdesk_with

# The store matters to exactly-once across a crash (outbox, leases), but not
# per ticket system: each system runs these once, the stores taken in turn.
ACROSS_STORES = pytest.mark.parametrize(
    ("helpdesk", "storage"), each_helpdesk_with("file", "s3"), indirect=["helpdesk"]
)


@pytest.fixture
def proxy(helpdesk: HelpdeskEmulator) -> Iterator[HoldingProxy]:
    p = HoldingProxy(helpdesk.url).start()
    yield p
    p.stop()


def test_429_storm_delivers_everything_exactly_once(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: HelpdeskEmulator
) -> None:
    tickets = [helpdesk.create_ticket() for _ in range(3)]
    gw = helpdesk_gateway()
    # The next requests of any kind are turned away with 429 and Retry-After.
    helpdesk.fail_next(429, count=5)
    links = {t: gw.link(t) for t in tickets}
    uploaded: dict[str, list[str]] = {t: [] for t in tickets}
    for wave in range(2):
        for ticket, link in links.items():
            receipt = upload(link, f"wave{wave}.log", os.urandom(1000 + wave))
            uploaded[ticket].append(receipt["file_id"])
        if wave == 0:
            wait_until(lambda: any(markers(helpdesk, t) for t in tickets), "a first delivery")

    for ticket, link in links.items():
        wait_until(partial(all_delivered, link, 2), f"ticket {ticket}'s files")
    for ticket in tickets:
        assert markers(helpdesk, ticket) == dict.fromkeys(uploaded[ticket], 1)
    assert ticket_errors(gw.url, 429) == 5


@ACROSS_STORES
def test_503_outage_with_a_gateway_sigkill_loses_nothing_and_duplicates_nothing(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: HelpdeskEmulator, storage: str
) -> None:
    ticket_a, ticket_b = helpdesk.create_ticket(), helpdesk.create_ticket()
    helpdesk.outage("503", retry_after=1)
    gw = helpdesk_gateway(storage)
    link_a, link_b = gw.link(ticket_a), gw.link(ticket_b)
    before = [upload(link_a, f"a{n}.bin", os.urandom(5000 + n))["file_id"] for n in range(3)]
    before.append(upload(link_b, "b0.bin", os.urandom(777))["file_id"])

    # The gateway has tried and been turned away; the receipts say so.
    wait_until(lambda: ticket_errors(gw.url, 503) >= 2, "503 answers")
    pending = wait_until(
        lambda: [r for r in receipts(link_a).values() if "503" in r.get("status_detail", "")],
        "a receipt explaining the retry",
    )
    assert all(r["status"] == "pending" for r in pending)
    assert metric_sum(gw.url, "gateway_deliveries_pending") == 4
    assert metric_sum(gw.url, "gateway_delivery_oldest_age_seconds") > 0

    gw.kill()
    gw.start()
    # More files arrive while the ticket API is still down.
    after = [upload(link_a, "a-late.bin", os.urandom(4321))["file_id"]]
    after.append(upload(link_b, "b-late.bin", os.urandom(1234))["file_id"])
    wait_until(lambda: ticket_errors(gw.url, 503) >= 1, "retries after restart")
    assert markers(helpdesk, ticket_a) == {} and markers(helpdesk, ticket_b) == {}

    helpdesk.outage(None)
    wait_until(lambda: all_delivered(link_a, 4), "ticket A's files")
    wait_until(lambda: all_delivered(link_b, 2), "ticket B's files")
    assert markers(helpdesk, ticket_a) == dict.fromkeys(before[:3] + after[:1], 1)
    assert markers(helpdesk, ticket_b) == dict.fromkeys(before[3:] + after[1:], 1)
    wait_until(lambda: metric_sum(gw.url, "gateway_deliveries_pending") == 0, "an empty outbox")
    assert metric_sum(gw.url, "gateway_delivery_oldest_age_seconds") == 0


def test_dropped_connections_end_and_everything_arrives_once(
    helpdesk_gateway: HelpdeskGatewayFactory, helpdesk: HelpdeskEmulator
) -> None:
    ticket = helpdesk.create_ticket()
    helpdesk.outage("drop")
    gw = helpdesk_gateway()
    link = gw.link(ticket)
    ids = [upload(link, f"d{n}.bin", os.urandom(2000 + n))["file_id"] for n in range(2)]
    wait_until(
        lambda: any(r.get("status_detail") for r in receipts(link).values()),
        "a receipt explaining the retry",
    )
    assert {r["status"] for r in receipts(link).values()} == {"pending"}
    helpdesk.outage(None)
    wait_until(lambda: all_delivered(link, 2), "delivery after the outage")
    assert markers(helpdesk, ticket) == dict.fromkeys(ids, 1)


@ACROSS_STORES
def test_crash_after_the_comment_was_recorded_does_not_post_it_again(
    helpdesk_gateway: HelpdeskGatewayFactory,
    helpdesk: HelpdeskEmulator,
    proxy: HoldingProxy,
    storage: str,
) -> None:
    """SIGKILL the gateway while the ticket has the comment and the gateway has no answer yet."""
    ticket = helpdesk.create_ticket()
    gw = helpdesk_gateway(storage, via=proxy.url)
    proxy.arm_when(lambda: bool(markers(helpdesk, ticket)))
    link = gw.link(ticket)
    ids = [upload(link, f"f{n}.txt", os.urandom(999 + n))["file_id"] for n in range(2)]

    assert proxy.held.wait(60.0), "the gateway never posted the comment"
    # The ticket now shows the files; the gateway has not recorded the delivery.
    assert markers(helpdesk, ticket) == dict.fromkeys(ids, 1)
    assert {r["status"] for r in receipts(link).values()} == {"pending"}
    gw.kill()
    proxy.release()

    seen_before = len(proxy.seen)
    gw.start()
    wait_until(lambda: all_delivered(link, 2), "the deliveries to be recorded")
    assert markers(helpdesk, ticket) == dict.fromkeys(ids, 1)
    # The restarted gateway asked the ticket, and posted nothing.
    after = proxy.seen[seen_before:]
    assert any(method == "GET" for method, _ in after), after
    assert all(method == "GET" for method, _ in after), after
