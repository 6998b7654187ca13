"""What only Zendesk has, end to end: its other auth kinds deliver too.

What every ticket system must do (routing, names, bytes, coalescing) is in
test_delivery.py, parametrised over the registered helpdesks.
"""

from __future__ import annotations

import pytest

from tests.delivery.conftest import GatewayFactory, all_delivered, markers, upload, wait_until
from tests.support.zendesk import ZendeskEmulator


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
