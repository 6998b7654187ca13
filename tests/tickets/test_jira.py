"""The Jira Service Management client against the running emulator."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from gateway.delivery import comments
from gateway.links import Links
from gateway.settings import JiraSettings, Settings
from gateway.tickets.base import (
    AttachmentLimited,
    AttachmentSource,
    NewComment,
    TicketError,
    TicketSystem,
)
from gateway.tickets.jira import (
    MAX_COMMENT_BYTES,
    MAX_COMMENT_FILES,
    JiraTickets,
    escape,
    unescape,
)
from gateway.uploads.records import FileRecord
from tests.support.jira import JiraEmulator

T = TypeVar("T")
MARK = "[upload-gateway file abc123]"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def source(name: str, data: bytes, chunk: int = 64 * 1024) -> AttachmentSource:
    async def open_() -> AsyncIterator[bytes]:
        for i in range(0, len(data), chunk):
            yield data[i : i + chunk]

    return AttachmentSource(name, len(data), "application/octet-stream", open_)


async def with_client(
    settings: JiraSettings,
    body: Callable[[JiraTickets], Awaitable[T]],
    hooks: dict[str, list[Any]] | None = None,
) -> T:
    async with httpx.AsyncClient(timeout=30.0, event_hooks=hooks or {}) as http:
        tickets = JiraTickets(settings, client=http)
        try:
            return await body(tickets)
        finally:
            await tickets.close()


def post(
    settings: JiraSettings,
    ticket: str,
    comment: NewComment,
    hooks: dict[str, list[Any]] | None = None,
) -> None:
    async def go(t: JiraTickets) -> None:
        await t.post_comment(ticket, comment)

    run(with_client(settings, go, hooks))


def post_error(settings: JiraSettings, ticket: str, comment: NewComment) -> TicketError:
    with pytest.raises(TicketError) as info:
        post(settings, ticket, comment)
    return info.value


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_implements_the_seam(jira_api: JiraEmulator) -> None:
    tickets = JiraTickets(jira_api.settings())
    assert isinstance(tickets, TicketSystem)
    assert (tickets.name, tickets.max_comment_attachments) == ("jira", MAX_COMMENT_BYTES)
    assert jira_api.credentials.api_token not in repr(tickets)
    run(tickets.close())


@pytest.mark.parametrize("ticket", ["SUP-123", "INC0010001", "4242", "ACME_2-7"])
def test_issue_keys_and_other_ticket_ids_mint_links(ticket: str) -> None:
    links = Links(Settings(secret=b"s" * 40))
    link = links.mint(ticket)
    assert links.check_upload(link.token).ticket == ticket


def test_files_land_as_attachments_of_one_private_comment(jira_api: JiraEmulator) -> None:
    key = jira_api.create_ticket()
    files = {"report.bin": os.urandom(200_000), "résumé [v2].txt": b"hello\n"}
    comment = NewComment(
        f"two files\n{MARK}", public=False, attachments=[source(n, d) for n, d in files.items()]
    )
    post(jira_api.settings(), key, comment)

    latest = jira_api.comments(key)[-1]
    assert latest["public"] is False
    assert latest["body"].startswith(f"two files\n{MARK}")
    assert [(a["file_name"], a["size"], a["sha256"]) for a in latest["attachments"]] == [
        (n, len(d), sha(d)) for n, d in files.items()
    ]
    # What Jira stores is wiki markup that shows the brackets as written.
    raw = jira_api.raw_comments(key)[-1]["body"]
    assert escape(MARK) in raw
    counts = jira_api.state()["counts"]
    assert counts["POST /rest/servicedeskapi/servicedesk/{desk}/attachTemporaryFile"] == 2
    assert counts["POST /rest/servicedeskapi/request/{key}/attachment"] == 1


def test_comment_without_files_and_public_flag(jira_api: JiraEmulator) -> None:
    key = jira_api.create_ticket()
    post(jira_api.settings(), key, NewComment(f"a link {MARK}", public=True))
    latest = jira_api.comments(key)[-1]
    assert (latest["body"], latest["public"], latest["attachments"]) == (
        f"a link {MARK}",
        True,
        [],
    )
    assert jira_api.state()["counts"]["POST /rest/servicedeskapi/request/{key}/comment"] == 1


def test_find_markers_pages_through_every_comment(jira_api: JiraEmulator) -> None:
    key = jira_api.create_ticket()
    settings = jira_api.settings()
    for n in range(7):
        post(settings, key, NewComment(f"[upload-gateway file m{n}]", public=n % 2 == 0))
    jira_api.set_faults(page_limit=2)

    async def go(t: JiraTickets) -> set[str]:
        return await t.find_markers(key, ["[upload-gateway file m0]", "[upload-gateway file m6]",
                                          "[upload-gateway file nope]"])  # fmt: skip

    assert run(with_client(settings, go)) == {
        "[upload-gateway file m0]",
        "[upload-gateway file m6]",
    }
    listings = [r for r in jira_api.state()["requests"] if r["method"] == "GET"]
    assert len(listings) == 4  # 8 comments, 2 a page


def test_temporary_attachments_that_expired_are_uploaded_again(jira_api: JiraEmulator) -> None:
    key = jira_api.create_ticket()
    data = os.urandom(3000)
    expired: list[int] = []

    async def expire_once(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/attachTemporaryFile") and not expired:
            expired.append(jira_api.expire_temporary())

    post(
        jira_api.settings(),
        key,
        NewComment(MARK, public=False, attachments=[source("late.bin", data)]),
        hooks={"response": [expire_once]},
    )
    assert expired == [1]
    [attachment] = jira_api.comments(key)[-1]["attachments"]
    assert attachment["sha256"] == sha(data)
    counts = jira_api.state()["counts"]
    assert counts["POST /rest/servicedeskapi/servicedesk/{desk}/attachTemporaryFile"] == 2


def test_temporary_attachments_refused_twice_is_retryable(jira_api: JiraEmulator) -> None:
    key = jira_api.create_ticket()
    jira_api.set_faults(temporary_ttl=0)
    error = post_error(
        jira_api.settings(), key, NewComment(MARK, False, [source("x.bin", b"x" * 10)])
    )
    assert error.retryable and "temporary" in error.message


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_is_retryable_with_retry_after(jira_api: JiraEmulator, status: int) -> None:
    key = jira_api.create_ticket()
    jira_api.outage(None, retry_after=17)
    jira_api.fail_next(status, path="/comment", method="POST")
    error = post_error(jira_api.settings(), key, NewComment(MARK, public=False))
    assert (error.retryable, error.status, error.retry_after) == (True, status, 17.0)


def test_per_issue_write_limit_is_a_429_with_its_wait(jira_api: JiraEmulator) -> None:
    key = jira_api.create_ticket()
    jira_api.set_faults(write_limit=1, write_window=40)
    post(jira_api.settings(), key, NewComment("first", public=False))
    error = post_error(jira_api.settings(), key, NewComment("second", public=False))
    assert error.status == 429 and error.retryable
    assert error.retry_after is not None and 1 <= error.retry_after <= 40


def test_wrong_credentials_are_unauthorized_and_not_retryable(jira_api: JiraEmulator) -> None:
    key = jira_api.create_ticket()
    settings = jira_api.settings(api_token="wrong-token")
    error = post_error(settings, key, NewComment(MARK, public=False))
    assert (error.status, error.retryable) == (401, False)
    assert "unauthorized" in error.message and "wrong-token" not in error.message

    async def ping(t: JiraTickets) -> None:
        await t.ping()

    with pytest.raises(TicketError) as info:
        run(with_client(settings, ping))
    assert info.value.status == 401 and "GATEWAY_JIRA_API_TOKEN" in info.value.message


def test_ping_checks_the_service_desk(jira_api: JiraEmulator) -> None:
    async def ping(t: JiraTickets) -> None:
        await t.ping()

    run(with_client(jira_api.settings(), ping))
    with pytest.raises(TicketError) as info:
        run(with_client(jira_api.settings(service_desk_id="77"), ping))
    assert info.value.status == 404 and not info.value.retryable
    assert "GATEWAY_JIRA_SERVICE_DESK_ID" in info.value.message


def test_deleted_closed_and_oversized_are_refusals(jira_api: JiraEmulator) -> None:
    settings = jira_api.settings()
    deleted = jira_api.create_ticket()
    jira_api.delete_ticket(deleted)
    gone = post_error(settings, deleted, NewComment(MARK, public=False))
    assert (gone.status, gone.retryable) == (404, False)
    assert "does not exist" in gone.message

    closed = jira_api.create_ticket()
    jira_api.close_ticket(closed)
    refused = post_error(settings, closed, NewComment(MARK, False, [source("a", b"abc")]))
    assert (refused.status, refused.retryable) == (400, False)
    assert "closed" in refused.message

    jira_api.set_faults(attachment_limit=1024)
    big = post_error(
        settings, jira_api.create_ticket(), NewComment(MARK, False, [source("b", b"b" * 1025)])
    )
    assert (big.status, big.retryable) == (413, False)
    assert "GATEWAY_ATTACHMENT_MAX" in big.message


def test_bad_ticket_id_is_refused_without_a_request(jira_api: JiraEmulator) -> None:
    error = post_error(jira_api.settings(), "not a key", NewComment(MARK, public=False))
    assert not error.retryable and "issue key" in error.message
    assert jira_api.state()["requests"] == []


def test_network_failure_is_retryable(jira_api: JiraEmulator) -> None:
    key = jira_api.create_ticket()
    jira_api.outage("drop")
    try:
        error = post_error(jira_api.settings(), key, NewComment(MARK, public=False))
    finally:
        jira_api.outage(None)
    assert error.retryable and error.status is None


def test_escape_round_trip() -> None:
    text = "• a.log — 3 bytes\n  [upload-gateway file X1]\n"
    assert unescape(escape(text)) == text
    assert "[" not in escape(text).replace("\\[", "")


def test_attachment_limit_reads_the_site_setting(jira_api: JiraEmulator) -> None:
    async def limit(t: JiraTickets) -> int:
        return await t.attachment_limit()

    assert isinstance(JiraTickets(jira_api.settings()), AttachmentLimited)
    assert run(with_client(jira_api.settings(), limit)) == 10 * 1024 * 1024
    jira_api.set_faults(attachment_limit=12345)
    assert run(with_client(jira_api.settings(), limit)) == 12345
    jira_api.set_faults(attachments_enabled=False)
    assert run(with_client(jira_api.settings(), limit)) == 0
    with pytest.raises(TicketError) as info:
        run(with_client(jira_api.settings(api_token="nope"), limit))
    assert info.value.status == 401


def test_the_longest_comment_of_max_files_fits_jiras_limit() -> None:
    """The most files a comment names, with the longest names and links, fit in 32,767 characters.

    The worst name is 254 bytes of two-byte UTF-8: shown as is, and
    percent-encoded (six characters each) in the download link.
    """
    links = Links(Settings(secret=b"s" * 40, public_url="https://uploads.example-company.com"))
    lines = []
    for n in range(MAX_COMMENT_FILES):
        name = "é" * 125 + f"{n:02}.x"
        record = FileRecord(
            file_id=f"{n:022}",
            ticket="SUP-1",
            filename=name,
            size=10**13,
            sha256="f" * 64,
            route="storage",
            content_type="application/octet-stream",
            link_id="l" * 22,
            protocol="tus",
            created_at=0.0,
        )
        url, expires = links.download_url(record.file_id, name)
        lines.append(comments.CommentLine(file=record, download_url=url, link_expires_at=expires))
    body = escape(comments.render(lines))
    assert len(name.encode()) == 254
    assert 20_000 < len(body) <= 32_767, len(body)
