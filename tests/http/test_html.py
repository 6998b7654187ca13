"""The page templates: autoescaped everywhere, shipped in the package, the filters they use."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest

from gateway.http import html
from gateway.signing import UploadLink

HOSTILE = "<script>alert('x')</script>\"&"
LINK = UploadLink(ticket=HOSTILE, expires_at=1_800_000_000, max_size=5 * 1024**4, link_id="l")
RECEIPT = {"file_id": HOSTILE, "filename": HOSTILE, "size": 1234, "sha256": HOSTILE,
           "status": "delivered", "route": "storage"}  # fmt: skip
PAGES: list[tuple[str, dict[str, Any]]] = [
    ("upload.html", {"token": HOSTILE, "link": LINK, "now": 1_700_000_000, "chunk": 1,
                     "link_concurrency": 8}),
    ("notice.html", {"heading": HOSTILE, "text": HOSTILE}),
    ("result.html", {"token": HOSTILE, "link": LINK, "receipts": [RECEIPT]}),
    ("ticket.html", {"ticket": HOSTILE, "comments": [
        {"id": 1, "body": HOSTILE, "public": False, "created_at": 0, "attachments": [
            {"file_name": HOSTILE, "size": 10, "content_url": HOSTILE}]}]}),
    ("signin_refused.html", {"message": HOSTILE}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "context"), PAGES, ids=[name for name, _ in PAGES])
def test_every_value_is_escaped(name: str, context: dict[str, Any]) -> None:
    page = html.render(name, **context)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#34;&amp;" in page


def test_upload_page_states_link_and_limits() -> None:
    page = html.render("upload.html", token="tok", link=LINK, now=LINK.expires_at - 3 * 86400,
                       chunk=16777216, link_concurrency=4)  # fmt: skip
    assert 'data-tus-endpoint="/u/tok/tus/"' in page
    assert 'data-max-size="5497558138880"' in page and 'data-link-concurrency="4"' in page
    assert 'title="5,497,558,138,880 bytes">5 TiB<' in page
    assert "(in 3 days)" in page and 'datetime="2027-01-15T08:00:00Z"' in page
    assert page.count('<script type="module"') == 1


def test_result_page_counts_files() -> None:
    one = html.render("result.html", token="t", link=LINK, receipts=[RECEIPT])
    two = html.render("result.html", token="t", link=LINK, receipts=[RECEIPT, RECEIPT])
    assert "<title>File received</title>" in one and "<title>2 files received</title>" in two
    assert "Stored, link posted on the ticket" in one


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (2 * 86400, "in 2 days"),
        (3600, "in 1 hour"),
        (61, "in 1 minute"),
        (5, "in less than a minute"),
    ],
)
def test_remaining(seconds: float, text: str) -> None:
    assert html.remaining(seconds) == text


def test_templates_ship_with_the_package() -> None:
    folder = resources.files("gateway") / "templates"
    names = {entry.name for entry in folder.iterdir()}
    assert {"_base.html", "upload.html", "ticket.html", "login.html"} <= names
