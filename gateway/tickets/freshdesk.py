"""Freshdesk API v2 as a :class:`~gateway.tickets.base.TicketSystem`.

A comment is a note on the ticket (``POST /api/v2/tickets/{id}/notes``),
private unless public comments are configured. A note without files is JSON;
a note with files is ``multipart/form-data`` with ``body``, ``private`` and one
``attachments[]`` part per file, streamed from the store with an exact
Content-Length. Freshdesk takes at most 20 MB of attachments on one note, so
:attr:`FreshdeskTickets.max_comment_attachments` makes the outbox split larger
batches. Note bodies are HTML: the plain-text comment is escaped and its lines
joined with ``<br>``; Freshdesk gives the text back as ``body_text``.

Markers are looked for in the ticket's conversations
(``GET /api/v2/tickets/{id}/conversations``, 100 a page, following the
``Link: <...>; rel="next"`` header). The API key goes as the Basic-auth user
with ``X`` as the password. ``GET /api/v2/agents/me`` is the readiness check.
Failures are translated by :mod:`gateway.tickets.httpapi`; a 404 names the
ticket as missing or deleted.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from gateway.settings import FRESHDESK_ATTACHMENT_LIMIT, FreshdeskSettings
from gateway.tickets.base import NewComment, TicketError
from gateway.tickets.httpapi import (
    SizeMismatch,
    StreamedForm,
    basic_auth,
    default_client,
    describe,
    json_body,
    next_link,
    same_origin,
    send,
    status_error,
)

SYSTEM = "Freshdesk"
PER_PAGE = 100


def note_html(text: str) -> str:
    """The plain-text comment as a note body: escaped, one ``<br>`` per line break."""
    return "<br>".join(html.escape(line, quote=False) for line in text.rstrip("\n").split("\n"))


def _error_parts(data: dict[str, Any]) -> list[str]:
    """Freshdesk's own error text: ``description``/``message`` and each field error."""
    parts = [str(data[k]) for k in ("code", "description", "message") if data.get(k)]
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            field = error.get("field")
            said = error.get("message") or error.get("code")
            parts.append(f"{field}: {said}" if field else str(said))
    return parts


def _ticket_id(ticket: str) -> int:
    text = str(ticket).strip()
    if not text.isdigit() or not text.isascii():
        raise TicketError(
            f"{ticket!r} is not a Freshdesk ticket number (digits only)", retryable=False
        )
    return int(text)


class FreshdeskTickets:
    """The Freshdesk implementation of the ticket seam.

    ``client`` is injected so the application shares one pool (and tests can
    point it anywhere); without one, a client is made and closed by :meth:`close`.
    """

    name = "freshdesk"
    max_comment_attachments = FRESHDESK_ATTACHMENT_LIMIT

    def __init__(
        self, settings: FreshdeskSettings, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self._base = settings.url.rstrip("/")
        self._auth = basic_auth(settings.api_key, "X")
        self._owns_client = client is None
        self.http = client or default_client()

    def __repr__(self) -> str:
        return f"FreshdeskTickets(url={self._base!r})"

    def url(self, path: str) -> str:
        return self._base + path

    # -- the seam -------------------------------------------------------------
    async def post_comment(self, ticket: str, comment: NewComment) -> None:
        ticket_id = _ticket_id(ticket)
        what = f"note on ticket {ticket_id}"
        total = sum(a.size for a in comment.attachments)
        if total > FRESHDESK_ATTACHMENT_LIMIT:
            raise TicketError(
                f"{SYSTEM} {what}: {total} bytes of attachments; Freshdesk takes at most "
                f"{FRESHDESK_ATTACHMENT_LIMIT} bytes on one note",
                retryable=False,
            )
        body = note_html(comment.body)
        private = not comment.public
        url = self.url(f"/api/v2/tickets/{ticket_id}/notes")
        if not comment.attachments:
            await self._request(
                "POST", url, what, ticket_id, json={"body": body, "private": private}
            )
            return
        form = StreamedForm(
            {"body": body, "private": "true" if private else "false"},
            comment.attachments,
            file_field="attachments[]",
        )
        headers = {"Content-Type": form.content_type, "Content-Length": str(len(form))}
        try:
            await self._request(
                "POST", url, what, ticket_id, headers=headers, content=form.stream()
            )
        except SizeMismatch as exc:
            raise TicketError(f"{SYSTEM} {what} failed: {exc}", retryable=False) from None

    async def find_markers(self, ticket: str, markers: Sequence[str]) -> set[str]:
        ticket_id = _ticket_id(ticket)
        wanted = set(markers)
        found: set[str] = set()
        what = f"conversation listing of ticket {ticket_id}"
        url: str | None = self.url(f"/api/v2/tickets/{ticket_id}/conversations")
        params: dict[str, str] | None = {"per_page": str(PER_PAGE), "page": "1"}
        while url is not None and found != wanted:
            response = await self._request("GET", url, what, ticket_id, params=params)
            items = json_body(response, SYSTEM, what)
            if not isinstance(items, list):
                raise TicketError(f"{SYSTEM} {what}: expected a JSON list", retryable=True)
            for item in items:
                if not isinstance(item, dict):
                    continue
                texts = [item.get("body_text"), item.get("body")]
                text = "\n".join(html.unescape(t) for t in texts if isinstance(t, str))
                found.update(m for m in wanted - found if m in text)
            following = next_link(response)
            url = same_origin(self._base, following, SYSTEM, what) if following else None
            params = None
        return found

    async def ping(self) -> None:
        response = await self._request("GET", self.url("/api/v2/agents/me"), "credentials check")
        agent = json_body(response, SYSTEM, "credentials check")
        if not isinstance(agent, dict) or agent.get("id") is None:
            raise TicketError(
                f"{SYSTEM} credentials check: /api/v2/agents/me named no agent", retryable=True
            )

    async def close(self) -> None:
        if self._owns_client:
            await self.http.aclose()

    # -- HTTP -----------------------------------------------------------------
    async def _request(
        self,
        method: str,
        url: str,
        what: str,
        ticket_id: int | None = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        content: AsyncIterator[bytes] | None = None,
    ) -> httpx.Response:
        response = await send(
            self.http, SYSTEM, what, method, url, authorization=self._auth,
            params=params, headers=headers, json=json, content=content,
        )  # fmt: skip
        if not response.is_success:
            missing = (
                f"ticket {ticket_id} does not exist or was deleted"
                if ticket_id is not None
                else None
            )
            raise status_error(
                SYSTEM, what, response, describe(response, _error_parts), not_found=missing
            )
        return response
