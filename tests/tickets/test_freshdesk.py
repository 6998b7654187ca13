"""The Freshdesk client against the running emulator (tests/support/freshdesk_emulator.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from gateway.settings import FRESHDESK_ATTACHMENT_LIMIT
from gateway.tickets.base import AttachmentSource, NewComment, TicketError, TicketSystem
from gateway.tickets.freshdesk import FreshdeskTickets, note_html
from tests.support.freshdesk_emulator import FreshdeskEmulator
from tests.tickets.test_zendesk import run, sha, source

T = TypeVar("T")


async def with_client(
    emulator: FreshdeskEmulator, body: Callable[[FreshdeskTickets], Awaitable[T]], **settings: Any
) -> T:
    async with httpx.AsyncClient(timeout=60.0) as http:
        tickets = FreshdeskTickets(emulator.settings(**settings), client=http)
        try:
            return await body(tickets)
        finally:
            await tickets.close()


def post(emulator: FreshdeskEmulator, ticket: str, comment: NewComment, **settings: Any) -> None:
    async def go(t: FreshdeskTickets) -> None:
        await t.post_comment(ticket, comment)

    run(with_client(emulator, go, **settings))


def post_error(emulator: FreshdeskEmulator, ticket: str, comment: NewComment) -> TicketError:
    with pytest.raises(TicketError) as info:
        post(emulator, ticket, comment)
    return info.value


def find(emulator: FreshdeskEmulator, ticket: str, markers: list[str]) -> set[str]:
    return run(with_client(emulator, lambda t: t.find_markers(ticket, markers)))


def test_implements_the_seam(freshdesk_api: FreshdeskEmulator) -> None:
    tickets = FreshdeskTickets(freshdesk_api.settings())
    assert isinstance(tickets, TicketSystem)
    assert tickets.name == "freshdesk"
    assert tickets.max_comment_attachments == FRESHDESK_ATTACHMENT_LIMIT == 20_000_000
    run(tickets.close())


def test_files_land_on_one_private_note_with_identical_bytes_and_text(
    freshdesk_api: FreshdeskEmulator,
) -> None:
    ticket = freshdesk_api.create_ticket()
    files = {"report <1> & co.bin": os.urandom(300_000), "résumé.txt": b"plain\n"}
    body = "2 files: a < b & c\n  [upload-gateway file X1]\n\n  [upload-gateway file X2]\n"
    comment = NewComment(body, public=False, attachments=[source(n, d) for n, d in files.items()])
    post(freshdesk_api, ticket, comment)

    [note] = freshdesk_api.comments(ticket)
    assert note["public"] is False
    assert note["body"] == body.strip()
    assert {a["file_name"]: (a["size"], a["sha256"]) for a in note["attachments"]} == {
        n: (len(d), sha(d)) for n, d in files.items()
    }
    [request] = [r for r in freshdesk_api.state()["requests"] if r["method"] == "POST"]
    assert request["content_type"].startswith("multipart/form-data")
    assert request["auth"] == "basic"
    assert find(freshdesk_api, ticket, ["[upload-gateway file X2]", "[nope]"]) == {
        "[upload-gateway file X2]"
    }


@pytest.mark.parametrize("public", [False, True])
def test_a_link_comment_is_a_json_note_private_unless_public(
    freshdesk_api: FreshdeskEmulator, public: bool
) -> None:
    ticket = freshdesk_api.create_ticket()
    post(freshdesk_api, ticket, NewComment("Download: http://x/files/a?b=1&c=2\n", public=public))
    [note] = freshdesk_api.comments(ticket)
    assert (note["public"], note["attachments"]) == (public, [])
    assert note["body"] == "Download: http://x/files/a?b=1&c=2"
    [request] = [r for r in freshdesk_api.state()["requests"] if r["method"] == "POST"]
    assert request["content_type"] == "application/json"


def test_note_html_escapes_and_keeps_line_breaks() -> None:
    assert note_html("a<b>\n& c\n") == "a&lt;b&gt;<br>&amp; c"


def test_markers_are_found_on_any_page(freshdesk_api: FreshdeskEmulator) -> None:
    ticket = freshdesk_api.create_ticket()
    with httpx.Client(base_url=freshdesk_api.url, auth=(freshdesk_api.api_key, "X")) as client:
        for i in range(130):
            client.post(f"/api/v2/tickets/{ticket}/notes", json={"body": f"[m{i}]"})
    wanted = ["[m0]", "[m99]", "[m100]", "[m129]", "[m130]"]
    assert find(freshdesk_api, ticket, wanted) == set(wanted) - {"[m130]"}
    pages = [r for r in freshdesk_api.state()["requests"] if r["path"].endswith("/conversations")]
    assert len(pages) == 2  # 100 a page, following the Link header


def test_deleted_ticket_is_a_refusal_that_names_it(freshdesk_api: FreshdeskEmulator) -> None:
    ticket = freshdesk_api.create_ticket()
    freshdesk_api.delete_ticket(ticket)
    error = post_error(freshdesk_api, ticket, NewComment("x", public=False))
    assert (error.status, error.retryable) == (404, False)
    assert f"ticket {ticket} does not exist or was deleted" in error.message
    with pytest.raises(TicketError) as info:
        find(freshdesk_api, ticket, ["[m]"])
    assert info.value.status == 404 and not info.value.retryable


def test_a_closed_ticket_still_takes_the_note(freshdesk_api: FreshdeskEmulator) -> None:
    ticket = freshdesk_api.create_ticket()
    freshdesk_api.close_ticket(ticket)
    post(freshdesk_api, ticket, NewComment("late file\n", public=False))
    assert [n["body"] for n in freshdesk_api.comments(ticket)] == ["late file"]


def test_more_than_20_mb_on_one_note_is_refused_before_sending(
    freshdesk_api: FreshdeskEmulator,
) -> None:
    ticket = freshdesk_api.create_ticket()

    async def endless() -> AsyncIterator[bytes]:
        raise AssertionError("must not be read")
        yield b""

    big = [AttachmentSource(f"{i}.bin", 10_000_001, "", endless) for i in range(2)]
    error = post_error(freshdesk_api, ticket, NewComment("x", public=False, attachments=big))
    assert not error.retryable and "20000000" in error.message
    assert freshdesk_api.state()["requests"] == []


def test_a_short_store_read_fails_loudly(freshdesk_api: FreshdeskEmulator) -> None:
    ticket = freshdesk_api.create_ticket()
    liar = source("short.bin", b"abc")
    liar = AttachmentSource(liar.filename, 10, liar.content_type, liar.open)
    error = post_error(freshdesk_api, ticket, NewComment("x", public=False, attachments=[liar]))
    assert not error.retryable and "ended after 3 of 10 bytes" in error.message
    assert freshdesk_api.comments(ticket) == []


def test_ping_checks_the_key(freshdesk_api: FreshdeskEmulator) -> None:
    run(with_client(freshdesk_api, lambda t: t.ping()))
    with pytest.raises(TicketError) as info:
        run(with_client(freshdesk_api, lambda t: t.ping(), api_key="wrong"))
    assert (info.value.status, info.value.retryable) == (401, False)
    assert "invalid_credentials" in info.value.message and "wrong" not in info.value.message


@pytest.mark.parametrize(
    ("fault", "status", "retry_after"),
    [("429", 429, 9.0), ("503", 503, 9.0), ("drop", None, None), ("500", 500, None)],
)
def test_transient_failures_are_retryable_with_the_servers_wait(
    freshdesk_api: FreshdeskEmulator, fault: str, status: int | None, retry_after: float | None
) -> None:
    ticket = freshdesk_api.create_ticket()
    if fault in ("503", "drop"):
        freshdesk_api.outage(fault, retry_after=9)
    else:
        freshdesk_api.outage(None, retry_after=9)
        freshdesk_api.fail_next(int(fault), path="/notes")
    error = post_error(freshdesk_api, ticket, NewComment("x", public=False))
    freshdesk_api.outage(None)
    assert error.retryable
    assert (error.status, error.retry_after) == (status, retry_after)
    assert freshdesk_api.comments(ticket) == []


def test_a_ticket_id_must_be_a_number(freshdesk_api: FreshdeskEmulator) -> None:
    error = post_error(freshdesk_api, "SUP-1", NewComment("x", public=False))
    assert not error.retryable and "digits only" in error.message
