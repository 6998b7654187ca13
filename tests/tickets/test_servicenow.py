"""The ServiceNow client against the running emulator (tests/support/servicenow_emulator.py)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from gateway.settings import SERVICENOW_ATTACHMENT_LIMIT
from gateway.tickets.base import AttachmentSource, NewComment, TicketError, TicketSystem
from gateway.tickets.servicenow import ServiceNowTickets
from tests.support.servicenow_emulator import ServiceNowEmulator
from tests.tickets.test_zendesk import run, sha, source

T = TypeVar("T")


async def with_client(
    emulator: ServiceNowEmulator,
    body: Callable[[ServiceNowTickets], Awaitable[T]],
    *,
    auth: str = "basic",
    hooks: dict[str, list[Any]] | None = None,
    **settings: Any,
) -> T:
    async with httpx.AsyncClient(timeout=60.0, event_hooks=hooks or {}) as http:
        tickets = ServiceNowTickets(emulator.settings(auth, **settings), client=http)
        try:
            return await body(tickets)
        finally:
            await tickets.close()


def post(emulator: ServiceNowEmulator, ticket: str, comment: NewComment, **kw: Any) -> None:
    async def go(t: ServiceNowTickets) -> None:
        await t.post_comment(ticket, comment)

    run(with_client(emulator, go, **kw))


def post_error(
    emulator: ServiceNowEmulator, ticket: str, comment: NewComment, **kw: Any
) -> TicketError:
    with pytest.raises(TicketError) as info:
        post(emulator, ticket, comment, **kw)
    return info.value


def find(emulator: ServiceNowEmulator, ticket: str, markers: list[str]) -> set[str]:
    return run(with_client(emulator, lambda t: t.find_markers(ticket, markers)))


def test_implements_the_seam(servicenow_api: ServiceNowEmulator) -> None:
    tickets = ServiceNowTickets(servicenow_api.settings())
    assert isinstance(tickets, TicketSystem)
    assert tickets.name == "servicenow"
    assert tickets.max_comment_attachments == SERVICENOW_ATTACHMENT_LIMIT == 1024**3
    run(tickets.close())


@pytest.mark.parametrize("auth", ["basic", "oauth"])
def test_files_then_one_work_note_with_identical_bytes(
    servicenow_api: ServiceNowEmulator, auth: str
) -> None:
    number = servicenow_api.create_ticket()
    files = {"dump 1.bin": os.urandom(250_000), "notes.txt": b"hello\n"}
    body = "2 files were uploaded:\n  [upload-gateway file A]\n  [upload-gateway file B]\n"
    comment = NewComment(body, public=False, attachments=[source(n, d) for n, d in files.items()])
    post(servicenow_api, number, comment, auth=auth)

    [note] = servicenow_api.comments(number)
    assert (note["body"], note["public"]) == (body, False)
    assert {a["file_name"]: (a["size"], a["sha256"]) for a in note["attachments"]} == {
        n: (len(d), sha(d)) for n, d in files.items()
    }
    state = servicenow_api.state()
    assert set(state["auth_kinds"]) == {"basic" if auth == "basic" else "bearer"}
    methods = [(r["method"], r["endpoint"]) for r in state["requests"]]
    assert methods == [
        ("GET", "GET /api/now/table/{table}"),
        ("POST", "POST /api/now/attachment/file"),
        ("POST", "POST /api/now/attachment/file"),
        ("PATCH", "PATCH /api/now/table/{table}/{sys_id}"),
    ]
    assert find(servicenow_api, number, ["[upload-gateway file B]", "[x]"]) == {
        "[upload-gateway file B]"
    }


def test_a_public_comment_goes_to_comments(servicenow_api: ServiceNowEmulator) -> None:
    number = servicenow_api.create_ticket()
    post(servicenow_api, number, NewComment("see the link [m1]\n", public=True))
    [entry] = servicenow_api.state()["journal"]
    assert entry["element"] == "comments"
    assert servicenow_api.comments(number)[0]["public"] is True
    assert find(servicenow_api, number, ["[m1]"]) == {"[m1]"}


def test_a_sys_id_works_as_the_ticket_id(servicenow_api: ServiceNowEmulator) -> None:
    number = servicenow_api.create_ticket()
    sys_id = servicenow_api.record(number)["sys_id"]
    post(servicenow_api, sys_id, NewComment("by sys_id\n", public=False))
    assert [c["body"] for c in servicenow_api.comments(number)] == ["by sys_id\n"]


def test_markers_are_found_on_any_page(servicenow_api: ServiceNowEmulator) -> None:
    number = servicenow_api.create_ticket()
    sys_id = servicenow_api.record(number)["sys_id"]
    c = servicenow_api.credentials
    with httpx.Client(base_url=servicenow_api.url, auth=(c["user"], c["password"])) as client:
        for i in range(130):
            client.patch(f"/api/now/table/incident/{sys_id}", json={"work_notes": f"[m{i}]"})
    wanted = ["[m0]", "[m29]", "[m30]", "[m129]", "[m130]"]
    assert find(servicenow_api, number, wanted) == set(wanted) - {"[m130]"}
    pages = [r for r in servicenow_api.state()["requests"] if "sys_journal_field" in r["path"]]
    assert len(pages) == 2  # 100 a page, newest first: [m0] and [m29] are on the second


def test_a_closed_record_is_refused_before_anything_is_written(
    servicenow_api: ServiceNowEmulator,
) -> None:
    number = servicenow_api.create_ticket()
    servicenow_api.close_ticket(number)
    comment = NewComment("x", public=False, attachments=[source("a.bin", b"abc")])
    error = post_error(servicenow_api, number, comment)
    assert not error.retryable and f"{number} is closed" in error.message
    assert servicenow_api.attachment_count(number) == 0


def test_a_note_an_acl_drops_silently_is_reported(servicenow_api: ServiceNowEmulator) -> None:
    number = servicenow_api.create_ticket()

    async def close_before_update(request: httpx.Request) -> None:
        if request.method == "PATCH":
            servicenow_api.close_ticket(number)  # between the lookup and the update

    error = post_error(
        servicenow_api,
        number,
        NewComment("x", public=False),
        hooks={"request": [close_before_update]},
    )
    assert not error.retryable and "no work_notes entry was recorded" in error.message


@pytest.mark.parametrize("how", ["deleted", "unknown"])
def test_a_deleted_record_is_a_refusal_that_names_it(
    servicenow_api: ServiceNowEmulator, how: str
) -> None:
    number = servicenow_api.create_ticket()
    if how == "deleted":
        servicenow_api.delete_ticket(number)
    else:
        number = "INC0999999"
    error = post_error(servicenow_api, number, NewComment("x", public=False))
    assert (error.status, error.retryable) == (404, False)
    assert f"incident {number}: no such record" in error.message
    with pytest.raises(TicketError) as info:
        find(servicenow_api, number, ["[m]"])
    assert info.value.status == 404


def test_an_attachment_over_the_instance_limit_is_refused(
    servicenow_api: ServiceNowEmulator,
) -> None:
    number = servicenow_api.create_ticket()
    servicenow_api.set_max_size(1000)
    comment = NewComment("x", public=False, attachments=[source("big.bin", b"z" * 1001)])
    error = post_error(servicenow_api, number, comment)
    assert (error.status, error.retryable) == (400, False)
    assert "max_size" in error.message
    assert servicenow_api.comments(number) == []


def test_ping_reads_the_table_and_reports_bad_credentials(
    servicenow_api: ServiceNowEmulator,
) -> None:
    run(with_client(servicenow_api, lambda t: t.ping()))
    with pytest.raises(TicketError) as info:
        run(with_client(servicenow_api, lambda t: t.ping(), password="wrong"))
    assert (info.value.status, info.value.retryable) == (401, False)
    assert "User Not Authenticated" in info.value.message
    assert "wrong" not in info.value.message


@pytest.mark.parametrize(
    ("fault", "status", "retry_after"),
    [("429", 429, 6.0), ("503", 503, 6.0), ("drop", None, None), ("403", 403, None)],
)
def test_failures_are_translated_with_the_servers_wait(
    servicenow_api: ServiceNowEmulator, fault: str, status: int | None, retry_after: float | None
) -> None:
    number = servicenow_api.create_ticket()
    if fault in ("503", "drop"):
        servicenow_api.outage(fault, retry_after=6)
    else:
        servicenow_api.outage(None, retry_after=6)
        servicenow_api.fail_next(int(fault), method="PATCH")
    error = post_error(servicenow_api, number, NewComment("x", public=False))
    servicenow_api.outage(None)
    assert error.retryable is (fault != "403")
    assert (error.status, error.retry_after) == (status, retry_after)
    if fault == "403":
        assert "unauthorized, check the ServiceNow credentials" in error.message
    assert servicenow_api.comments(number) == []


def hashed(name: str, data: bytes) -> AttachmentSource:
    plain = source(name, data)
    return dataclasses.replace(plain, sha256=sha(data))


def test_a_note_that_failed_after_its_files_does_not_attach_them_twice(
    servicenow_api: ServiceNowEmulator,
) -> None:
    number = servicenow_api.create_ticket()
    data = os.urandom(80_000)
    comment = NewComment("[m1]\n", public=False, attachments=[hashed("x.bin", data)])
    servicenow_api.fail_next(500, method="PATCH")
    assert post_error(servicenow_api, number, comment).retryable
    assert servicenow_api.attachment_count(number) == 1 and servicenow_api.comments(number) == []

    post(servicenow_api, number, comment)
    assert servicenow_api.attachment_count(number) == 1
    [note] = servicenow_api.comments(number)
    assert [a["sha256"] for a in note["attachments"]] == [sha(data)]


def test_same_name_and_size_but_other_bytes_is_attached_again(
    servicenow_api: ServiceNowEmulator,
) -> None:
    number = servicenow_api.create_ticket()
    first, second = b"a" * 1000, b"b" * 1000
    post(
        servicenow_api, number, NewComment("[m1]\n", public=False, attachments=[hashed("f", first)])
    )
    post(
        servicenow_api,
        number,
        NewComment("[m2]\n", public=False, attachments=[hashed("f", second)]),
    )
    assert servicenow_api.attachment_count(number) == 2
    assert [[a["sha256"] for a in c["attachments"]] for c in servicenow_api.comments(number)] == [
        [sha(first)],
        [sha(second)],
    ]
