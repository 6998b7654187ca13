"""The page against a gateway that delivers to Zendesk (the emulator), on SeaweedFS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_upload import MiB, expect_delivered, make_file, open_page, sha256
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway

pytestmark = pytest.mark.browser


@pytest.fixture
def zendesk_gateway(tmp_path: Path, seaweed: Any, zendesk_api: Any) -> Iterator[GatewayProcess]:
    env = gateway_env(
        tmp_path / "gw",
        GATEWAY_STORAGE="s3",
        GATEWAY_S3_BUCKET=seaweed.make_bucket(),
        **seaweed.env(),
        **zendesk_api.env("oauth"),
    )
    proc = start_gateway(tmp_path / "gw", env)
    yield proc
    proc.kill()


def test_page_uploads_reach_zendesk_once_each(
    zendesk_gateway: GatewayProcess, zendesk_api: Any, page: Page, tmp_path: Path
) -> None:
    zendesk_api.create_ticket(7301, requester_email="partner@example.com")
    small = make_file(tmp_path, "trace.log", 700_000)
    large = make_file(tmp_path, "core.dump", 21 * MiB + 3)
    open_page(page, zendesk_gateway.link("7301"))
    page.set_input_files("#files", [str(small), str(large)])
    expect(page.locator("li.row")).to_have_count(2)
    expect_delivered(page, small, "Delivered to the ticket", zendesk_gateway)
    expect_delivered(page, large, "Stored, link posted on the ticket", zendesk_gateway)

    deadline = time.monotonic() + 30
    while True:
        comments = zendesk_api.comments(7301)
        body = "\n".join(c["body"] for c in comments)
        if (sha256(small) in body and sha256(large) in body) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # Exactly one mention per file, private notes, the small file attached byte for byte.
    assert body.count(sha256(small)) == 1, body
    assert body.count(sha256(large)) == 1, body
    ours = [c for c in comments if "[upload-gateway file" in c["body"]]
    assert ours and all(c["public"] is False for c in ours)
    attached = [a for c in comments for a in c["attachments"]]
    assert [(a["file_name"], a["sha256"]) for a in attached] == [(small.name, sha256(small))]
    assert "/files/" in body  # the large file's download link
