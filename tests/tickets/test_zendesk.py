"""The Zendesk client against the running emulator (tests/support/zendesk_emulator.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from gateway.settings import ZendeskSettings
from gateway.tickets.base import AttachmentSource, NewComment, TicketError, TicketSystem
from gateway.tickets.zendesk import MAX_COMMENT_BYTES, ZendeskTickets
from tests.support.zendesk import ZendeskEmulator

T = TypeVar("T")
MiB = 1024 * 1024


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def source(
    name: str, data: bytes, chunk: int = 64 * 1024, content_type: str = "application/octet-stream"
) -> AttachmentSource:
    async def open_() -> AsyncIterator[bytes]:
        for i in range(0, len(data), chunk):
            yield data[i : i + chunk]

    return AttachmentSource(name, len(data), content_type, open_)


async def with_client(
    settings: ZendeskSettings,
    body: Callable[[ZendeskTickets], Awaitable[T]],
    *,
    clock: Callable[[], float] | None = None,
    hooks: dict[str, list[Any]] | None = None,
) -> T:
    async with httpx.AsyncClient(timeout=30.0, event_hooks=hooks or {}) as http:
        kwargs: dict[str, Any] = {"client": http}
        if clock is not None:
            kwargs["clock"] = clock
        tickets = ZendeskTickets(settings, **kwargs)
        try:
            return await body(tickets)
        finally:
            await tickets.close()


def post(settings: ZendeskSettings, ticket: str, comment: NewComment) -> None:
    async def go(t: ZendeskTickets) -> None:
        await t.post_comment(ticket, comment)

    run(with_client(settings, go))


def post_error(settings: ZendeskSettings, ticket: str, comment: NewComment) -> TicketError:
    with pytest.raises(TicketError) as info:
        post(settings, ticket, comment)
    return info.value


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_implements_the_seam(zendesk_api: ZendeskEmulator) -> None:
    tickets = ZendeskTickets(zendesk_api.settings())
    assert isinstance(tickets, TicketSystem)
    assert tickets.name == "zendesk"
    assert tickets.max_comment_attachments == MAX_COMMENT_BYTES
    run(tickets.close())


def test_small_attachment_lands_with_identical_bytes_over_oauth(
    zendesk_api: ZendeskEmulator,
) -> None:
    zendesk_api.create_ticket(101, "customer@example.test")
    data = os.urandom(200_000)
    comment = NewComment(
        "Uploaded report.bin [gw:abc]", public=False, attachments=[source("report.bin", data)]
    )
    post(zendesk_api.settings("oauth"), "101", comment)

    latest = zendesk_api.comments(101)[-1]
    assert latest["body"] == "Uploaded report.bin [gw:abc]"
    assert latest["public"] is False
    [attachment] = latest["attachments"]
    assert attachment["file_name"] == "report.bin"
    assert attachment["size"] == len(data)
    assert attachment["sha256"] == sha(data)
    state = zendesk_api.state()
    assert set(state["auth_kinds"]) == {"bearer"}
    # What Zendesk's own API hands back downloads the identical bytes.
    listed = run(
        with_client(
            zendesk_api.settings(),
            lambda t: t.http.get(
                f"{zendesk_api.url}/api/v2/tickets/101/comments",
                headers={"Authorization": f"Bearer {zendesk_api.credentials.oauth_token}"},
            ),
        )
    )
    content_url = listed.json()["comments"][-1]["attachments"][0]["content_url"]
    assert sha(zendesk_api.download(content_url)) == sha(data)


def test_several_attachments_share_one_comment_and_public_flag(
    zendesk_api: ZendeskEmulator,
) -> None:
    zendesk_api.create_ticket(102)
    files = {f"f{i}.txt": os.urandom(1000 + i) for i in range(3)}
    comment = NewComment(
        "three files",
        public=True,
        attachments=[source(n, d, content_type="text/plain") for n, d in files.items()],
    )
    post(zendesk_api.settings(), "102", comment)
    latest = zendesk_api.comments(102)[-1]
    assert latest["public"] is True
    assert {a["file_name"]: a["sha256"] for a in latest["attachments"]} == {
        n: sha(d) for n, d in files.items()
    }
    assert {a["content_type"] for a in latest["attachments"]} == {"text/plain"}
    assert zendesk_api.state()["counts"]["PUT /api/v2/tickets/{ticket_id}"] == 1


def test_client_credentials_are_exchanged_cached_and_renewed(
    zendesk_api: ZendeskEmulator,
) -> None:
    zendesk_api.create_ticket(103)
    zendesk_api.set_oauth_ttl(3600)
    now = [1000.0]

    async def go(t: ZendeskTickets) -> None:
        await t.ping()
        await t.post_comment("103", NewComment("one", public=False))
        assert zendesk_api.state()["oauth_exchanges"] == 1  # cached
        now[0] += 3590  # inside the renewal margin before expires_in runs out
        await t.post_comment("103", NewComment("two", public=False))
        assert zendesk_api.state()["oauth_exchanges"] == 2
        zendesk_api.revoke_oauth()  # the server forgets the token: one refresh on 401
        await t.post_comment("103", NewComment("three", public=False))
        assert zendesk_api.state()["oauth_exchanges"] == 3

    run(with_client(zendesk_api.settings("client_credentials"), go, clock=lambda: now[0]))
    assert [c["body"] for c in zendesk_api.comments(103)[1:]] == ["one", "two", "three"]
    state = zendesk_api.state()
    assert state["statuses"]["401"] == 1
    api_calls = [r for r in state["requests"] if r["endpoint"] != "POST /oauth/tokens"]
    assert {r["auth"] for r in api_calls} == {"bearer"}


def test_attachment_is_restreamed_when_the_refreshed_token_retries_the_upload(
    zendesk_api: ZendeskEmulator,
) -> None:
    zendesk_api.create_ticket(104)
    data = os.urandom(300_000)

    async def go(t: ZendeskTickets) -> None:
        await t.ping()
        zendesk_api.revoke_oauth()
        await t.post_comment("104", NewComment("after revoke", False, [source("a.bin", data)]))

    run(with_client(zendesk_api.settings("client_credentials"), go))
    assert zendesk_api.comments(104)[-1]["attachments"][0]["sha256"] == sha(data)


def test_api_token_basic_auth(zendesk_api: ZendeskEmulator) -> None:
    zendesk_api.create_ticket(105)
    settings = zendesk_api.settings("api_token")

    async def go(t: ZendeskTickets) -> None:
        await t.ping()
        await t.post_comment("105", NewComment("basic", False, [source("b.txt", b"hello")]))

    run(with_client(settings, go))
    assert zendesk_api.comments(105)[-1]["attachments"][0]["sha256"] == sha(b"hello")
    assert set(zendesk_api.state()["auth_kinds"]) == {"basic"}


@pytest.mark.parametrize(
    "auth, override",
    [
        ("oauth", {"oauth_token": "not-the-token"}),
        ("api_token", {"api_token": "wrong-api-token"}),
        ("client_credentials", {"client_secret": "wrong-client-secret"}),
    ],
)
def test_wrong_credentials_are_not_retryable(
    zendesk_api: ZendeskEmulator, auth: str, override: dict[str, str]
) -> None:
    zendesk_api.create_ticket(106)
    settings = zendesk_api.settings(auth, **override)
    error = post_error(settings, "106", NewComment("x", False, [source("x.txt", b"x")]))
    assert error.retryable is False
    assert error.status == 401
    assert "unauthorized" in error.message
    with pytest.raises(TicketError) as ping_info:
        run(with_client(settings, lambda t: t.ping()))
    assert ping_info.value.retryable is False
    assert ping_info.value.status == 401
    assert zendesk_api.comments(106)[-1]["body"] != "x"


def test_rate_limit_is_retryable_with_retry_after(zendesk_api: ZendeskEmulator) -> None:
    zendesk_api.create_ticket(107)
    zendesk_api.set_update_limit(2, window=600)
    settings = zendesk_api.settings()
    post(settings, "107", NewComment("1", False))
    post(settings, "107", NewComment("2", False))
    error = post_error(settings, "107", NewComment("3", False))
    assert error.retryable is True
    assert error.status == 429
    assert error.retry_after is not None and 500 < error.retry_after <= 600
    assert zendesk_api.state()["rate_limited"] == 1
    assert [c["body"] for c in zendesk_api.comments(107)[1:]] == ["1", "2"]


def test_503_outage_is_retryable_with_retry_after(zendesk_api: ZendeskEmulator) -> None:
    zendesk_api.create_ticket(108)
    zendesk_api.outage("503", retry_after=7)
    error = post_error(zendesk_api.settings(), "108", NewComment("x", False))
    assert (error.retryable, error.status, error.retry_after) == (True, 503, 7.0)
    with pytest.raises(TicketError) as ping_info:
        run(with_client(zendesk_api.settings(), lambda t: t.ping()))
    assert ping_info.value.retryable is True
    zendesk_api.outage(None)
    post(zendesk_api.settings(), "108", NewComment("after outage", False))
    assert zendesk_api.comments(108)[-1]["body"] == "after outage"


def test_other_5xx_is_retryable(zendesk_api: ZendeskEmulator) -> None:
    zendesk_api.create_ticket(109)
    zendesk_api.fail_next(500, path="/api/v2/tickets/109", method="PUT")
    error = post_error(zendesk_api.settings(), "109", NewComment("x", False))
    assert (error.retryable, error.status, error.retry_after) == (True, 500, None)


def test_dropped_connection_is_retryable(zendesk_api: ZendeskEmulator) -> None:
    zendesk_api.create_ticket(110)
    zendesk_api.outage("drop")
    error = post_error(
        zendesk_api.settings(),
        "110",
        NewComment("x", False, [source("d.bin", os.urandom(2 * MiB))]),
    )
    assert error.retryable is True
    assert error.status is None
    assert zendesk_api.state()["dropped"] >= 1
    zendesk_api.outage(None)
    assert len(zendesk_api.comments(110)) == 1  # only the ticket's description


def test_expired_upload_token_is_reuploaded_not_dropped(zendesk_api: ZendeskEmulator) -> None:
    zendesk_api.create_ticket(111)
    data = os.urandom(100_000)
    expired: list[int] = []

    async def expire_before_first_update(request: httpx.Request) -> None:
        if request.method == "PUT" and not expired:
            expired.append(zendesk_api.expire_tokens())

    run(
        with_client(
            zendesk_api.settings(),
            lambda t: t.post_comment("111", NewComment("late", False, [source("late.bin", data)])),
            hooks={"request": [expire_before_first_update]},
        )
    )
    assert expired == [1]
    latest = zendesk_api.comments(111)[-1]
    assert latest["body"] == "late"
    assert [a["sha256"] for a in latest["attachments"]] == [sha(data)]
    counts = zendesk_api.state()["counts"]
    assert counts["POST /api/v2/uploads"] == 2
    assert counts["PUT /api/v2/tickets/{ticket_id}"] == 2
    assert zendesk_api.state()["statuses"]["422"] == 1


def test_tokens_expiring_again_give_a_clear_non_retryable_error(
    zendesk_api: ZendeskEmulator,
) -> None:
    zendesk_api.create_ticket(112)
    zendesk_api.set_token_ttl(0)  # every token is dead on arrival
    error = post_error(
        zendesk_api.settings(), "112", NewComment("x", False, [source("x.bin", b"abc")])
    )
    assert error.retryable is False
    assert error.status == 422
    assert "upload" in error.message.lower()
    assert zendesk_api.state()["counts"]["POST /api/v2/uploads"] == 2


def test_closed_ticket_is_not_retryable_and_not_reuploaded(zendesk_api: ZendeskEmulator) -> None:
    zendesk_api.create_ticket(113, status="closed")
    error = post_error(
        zendesk_api.settings(), "113", NewComment("x", False, [source("x.bin", b"abc")])
    )
    assert (error.retryable, error.status) == (False, 422)
    assert "closed" in error.message
    assert zendesk_api.state()["counts"]["POST /api/v2/uploads"] == 1


def test_find_markers_after_posting_and_not_before(zendesk_api: ZendeskEmulator) -> None:
    zendesk_api.create_ticket(114)
    zendesk_api.set_update_limit(1000)
    markers = ["[gw:file-1]", "[gw:file-2]"]

    async def go(t: ZendeskTickets) -> None:
        assert await t.find_markers("114", markers) == set()
        await t.post_comment("114", NewComment("Delivered x [gw:file-1]", False))
        # Push the marker's comment past the first page of the newest-first listing.
        for i in range(120):
            await t.post_comment("114", NewComment(f"filler {i}", False))
        assert await t.find_markers("114", markers) == {"[gw:file-1]"}
        assert await t.find_markers("114", []) == set()

    run(with_client(zendesk_api.settings(), go))
    assert zendesk_api.state()["counts"]["GET /api/v2/tickets/{ticket_id}/comments"] >= 3


def test_unknown_ticket_is_404_not_retryable(zendesk_api: ZendeskEmulator) -> None:
    error = post_error(zendesk_api.settings(), "999999", NewComment("x", False))
    assert (error.retryable, error.status) == (False, 404)
    assert "RecordNotFound" in error.message
    with pytest.raises(TicketError) as info:
        run(with_client(zendesk_api.settings(), lambda t: t.find_markers("999999", ["m"])))
    assert (info.value.retryable, info.value.status) == (False, 404)


def test_ticket_id_must_be_digits(zendesk_api: ZendeskEmulator) -> None:
    error = post_error(zendesk_api.settings(), "../users/me", NewComment("x", False))
    assert error.retryable is False
    assert zendesk_api.state()["requests"] == []


def test_attachment_shorter_than_declared_is_refused(zendesk_api: ZendeskEmulator) -> None:
    zendesk_api.create_ticket(115)

    async def short() -> AsyncIterator[bytes]:
        yield b"only this"

    liar = AttachmentSource("short.bin", 100, "application/octet-stream", short)
    error = post_error(zendesk_api.settings(), "115", NewComment("x", False, [liar]))
    assert error.retryable is False
    assert "short.bin" in error.message
    assert len(zendesk_api.comments(115)) == 1


def test_streams_a_30_mib_attachment_in_1_mib_chunks(zendesk_api: ZendeskEmulator) -> None:
    zendesk_api.create_ticket(116)
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    pulled = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(30):
            piece = block[i:] + block[:i]  # every MiB different
            digest.update(piece)
            pulled.append(len(piece))
            yield piece

    big = AttachmentSource("big.bin", 30 * MiB, "application/octet-stream", chunks)
    post(zendesk_api.settings(), "116", NewComment("big", False, [big]))
    [attachment] = zendesk_api.comments(116)[-1]["attachments"]
    assert attachment["size"] == 30 * MiB
    assert attachment["sha256"] == digest.hexdigest()
    assert pulled == [MiB] * 30
    [upload] = [
        r for r in zendesk_api.state()["requests"] if r["endpoint"] == "POST /api/v2/uploads"
    ]
    assert upload["content_length"] == str(30 * MiB)
    assert upload["transfer_encoding"] is None


def test_no_secret_appears_in_any_error(zendesk_api: ZendeskEmulator) -> None:
    creds = zendesk_api.credentials
    secrets_ = [
        creds.oauth_token,
        creds.client_secret,
        creds.api_token,
        "not-the-token",
        "wrong-client-secret",
        "wrong-api-token",
    ]
    zendesk_api.create_ticket(117)
    errors: list[TicketError] = []
    for settings in (
        zendesk_api.settings("oauth", oauth_token="not-the-token"),
        zendesk_api.settings("client_credentials", client_secret="wrong-client-secret"),
        zendesk_api.settings("api_token", api_token="wrong-api-token"),
    ):
        errors.append(post_error(settings, "117", NewComment("x", False, [source("a", b"a")])))
    for mode in ("503", "drop"):
        zendesk_api.outage(mode)
        for auth in ("oauth", "client_credentials", "api_token"):
            errors.append(post_error(zendesk_api.settings(auth), "117", NewComment("x", False)))
    zendesk_api.outage(None)
    errors.append(post_error(zendesk_api.settings(), "4040404", NewComment("x", False)))
    assert len(errors) == 10
    for error in errors:
        text = f"{error} {error!r} {error.message} {error.__cause__!r}"
        for secret in secrets_:
            assert secret not in text
        assert "authorization" not in text.lower()
    for auth in ("oauth", "client_credentials", "api_token"):
        settings = zendesk_api.settings(auth)
        shown = repr(settings) + repr(ZendeskTickets(settings))
        assert not any(s in shown for s in secrets_)
