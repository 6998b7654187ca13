"""The local tickets view for staff: JSON as the contract says, HTML, auth, attachments."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http.rawhttp import wait_for
from tests.support.gateway import (
    GatewayProcess,
    gateway_env,
    staff_headers,
    start_gateway,
    ticket_comments,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("tickets")
    proc = start_gateway(work, gateway_env(work, GATEWAY_ATTACHMENT_MAX="1MiB"))
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def delivered(gw: GatewayProcess) -> dict[str, bytes]:
    link = gw.link("8008")
    files = {"small.log": os.urandom(5000), "large.bin": os.urandom(MiB + 1)}
    for name, data in files.items():
        assert httpx.put(f"{link}/{name}", content=data).status_code == 201
    shas = [hashlib.sha256(data).hexdigest() for data in files.values()]
    # Files that finish close together may share one comment: wait for both names.
    assert wait_for(
        lambda: all(sha in str(ticket_comments(gw, "8008")) for sha in shas), timeout=15
    )
    assert sum(len(c["attachments"]) for c in ticket_comments(gw, "8008")) == 1
    return files


def test_json_shape(gw: GatewayProcess, delivered: dict[str, bytes]) -> None:
    response = httpx.get(
        f"{gw.url}/tickets/8008", headers={"Accept": "application/json", **staff_headers(gw)}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["comments"], list) and len(body["comments"]) >= 1
    for comment in body["comments"]:
        assert isinstance(comment["body"], str)
        assert comment["public"] is False  # internal notes by default
        for attachment in comment["attachments"]:
            assert set(attachment) >= {"file_name", "size", "content_url"}
    text = "\n".join(c["body"] for c in body["comments"])
    for name, data in delivered.items():
        assert name in text
        assert hashlib.sha256(data).hexdigest() in text
        assert f"{len(data):,}" in text or str(len(data)) in text


def test_html_view(gw: GatewayProcess, delivered: dict[str, bytes]) -> None:
    response = httpx.get(f"{gw.url}/tickets/8008", headers=staff_headers(gw))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "small.log" in response.text and "large.bin" in response.text
    assert "internal note" in response.text
    # Styled under its CSP: a stylesheet from the gateway itself, no inline style.
    csp = response.headers["content-security-policy"]
    assert "style-src 'self'" in csp and "script-src" not in csp
    assert "<style" not in response.text
    sheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', response.text)
    assert sheet is not None
    css = httpx.get(f"{gw.url}{sheet.group(1)}")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "article.internal" in css.text


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Accept": "application/json"}]
)
def test_staff_token_required(
    gw: GatewayProcess, delivered: dict[str, bytes], headers: dict[str, str]
) -> None:
    response = httpx.get(f"{gw.url}/tickets/8008", headers=headers)
    assert response.status_code == 401
    assert "small.log" not in response.text
    attachment = ticket_comments(gw, "8008")[0]
    for a in attachment["attachments"]:
        assert httpx.get(a["content_url"], headers=headers).status_code == 401


def test_attachment_downloads_identical_bytes(
    gw: GatewayProcess, delivered: dict[str, bytes]
) -> None:
    attachments = [a for c in ticket_comments(gw, "8008") for a in c["attachments"]]
    assert [a["file_name"] for a in attachments] == ["small.log"]
    assert attachments[0]["size"] == len(delivered["small.log"])
    response = httpx.get(attachments[0]["content_url"], headers=staff_headers(gw))
    assert response.status_code == 200
    assert response.content == delivered["small.log"]
    assert "small.log" in response.headers["content-disposition"]


def test_unknown_and_invalid_tickets(gw: GatewayProcess) -> None:
    empty = httpx.get(
        f"{gw.url}/tickets/404404", headers={"Accept": "application/json", **staff_headers(gw)}
    )
    assert empty.status_code == 200 and empty.json()["comments"] == []
    bad = httpx.get(f"{gw.url}/tickets/..%2f..%2fsecret", headers=staff_headers(gw))
    assert bad.status_code == 404


def test_public_comments_when_configured(tmp_path: Path) -> None:
    proc = start_gateway(
        tmp_path / "gw", gateway_env(tmp_path / "gw", GATEWAY_PUBLIC_COMMENTS="true")
    )
    try:
        assert httpx.put(f"{proc.link('9009')}/a.txt", content=b"public").status_code == 201
        comments = ticket_comments(proc, "9009", wait_for=1)
        assert len(comments) == 1 and comments[0]["public"] is True
    finally:
        proc.kill()
