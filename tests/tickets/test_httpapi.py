"""What every HTTP ticket client shares (gateway/tickets/httpapi.py), as pure functions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.tickets.base import AttachmentSource, TicketError
from gateway.tickets.httpapi import (
    SizeMismatch,
    exactly,
    network_error,
    next_link,
    same_origin,
    status_error,
)


def response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "https://x/"))


@pytest.mark.parametrize(
    ("status", "retryable", "retry_after", "says"),
    [
        (401, False, None, "unauthorized, check the Acme credentials"),
        (403, False, None, "unauthorized, check the Acme credentials"),
        (429, True, 12.0, "HTTP 429 (slow down)"),
        (503, True, 12.0, "HTTP 503"),
        (500, True, None, "HTTP 500"),
        (409, True, None, "HTTP 409"),
        (408, True, None, "HTTP 408"),
        (400, False, None, "HTTP 400"),
        (422, False, None, "HTTP 422"),
    ],
)
def test_statuses_are_translated_once_for_every_system(
    status: int, retryable: bool, retry_after: float | None, says: str
) -> None:
    error = status_error("Acme", "note", response(status, {"Retry-After": "12"}), "slow down")
    assert (error.status, error.retryable, error.retry_after) == (status, retryable, retry_after)
    assert error.message.startswith(f"Acme note failed: HTTP {status} (slow down)")
    assert says in error.message


def test_a_404_can_name_what_is_missing() -> None:
    named = status_error("Acme", "note", response(404), "", not_found="ticket 7 was deleted")
    assert named.message == "Acme note failed: HTTP 404: ticket 7 was deleted"
    assert not named.retryable
    assert status_error("Acme", "note", response(404), "").message == "Acme note failed: HTTP 404"


def test_a_system_can_name_its_credentials_and_its_own_refusals() -> None:
    def error(status: int) -> TicketError:
        return status_error(
            "Acme", "note", response(status), "", credentials="ACME_TOKEN",
            refusals={409: "", 413: "too large for Acme"},
        )  # fmt: skip

    assert error(401).message == "Acme note failed: HTTP 401: unauthorized, check ACME_TOKEN"
    assert (error(409).message, error(409).retryable) == ("Acme note failed: HTTP 409", False)
    assert error(413).message == "Acme note failed: HTTP 413: too large for Acme"
    assert not error(413).retryable
    assert error(500).retryable and error(408).retryable


def test_network_errors_are_retryable() -> None:
    error = network_error("Acme", "ping", httpx.ConnectError("refused"))
    assert error.retryable and error.status is None
    assert error.message == "Acme ping failed: ConnectError: refused"


def test_links_are_followed_only_to_our_own_host() -> None:
    paged = response(
        200, {"Link": '<https://x/api?page=2>; rel="next", <https://x/api?page=9>; rel="last"'}
    )
    assert next_link(paged) == "https://x/api?page=2"
    assert next_link(response(200)) is None
    assert same_origin("https://x", "https://x/api?page=2", "Acme", "listing")
    with pytest.raises(TicketError) as info:
        same_origin("https://x", "https://evil.example/api?page=2", "Acme", "listing")
    assert not info.value.retryable


@pytest.mark.parametrize(("declared", "problem"), [(5, "longer than 5"), (9, "ended after 6 of 9")])
def test_a_store_that_gives_other_than_the_size_is_caught(declared: int, problem: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    async def drain() -> None:
        async for _ in exactly(AttachmentSource("f", declared, "", chunks)):
            pass

    with pytest.raises(SizeMismatch, match=problem):
        asyncio.run(drain())
