"""Zendesk Support API v2 as a :class:`~gateway.tickets.base.TicketSystem`.

A comment with files is two steps in Zendesk: each file goes up on its own
(``POST /api/v2/uploads?filename=NAME``, raw body) and yields an upload token;
then ``PUT /api/v2/tickets/{id}`` adds the comment naming those tokens. Upload
tokens live about 60 minutes and work once, so when the update says a token is
invalid the files are uploaded again and the update retried once: a file is
never dropped from a comment silently.

This client does not loop retrying. It translates every failure into a
:class:`TicketError` that says whether trying later can help (and what the
server's ``Retry-After`` asked for); the delivery outbox owns backoff. The only
in-call retries are the single re-upload above and a single token refresh when
a client-credentials OAuth token is refused.

Credentials never appear in messages: errors name the status, the call, and
Zendesk's own error text, and requests are logged by the outbox, not here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx

from gateway.settings import ZendeskSettings
from gateway.tickets.base import AttachmentSource, NewComment, TicketError
from gateway.tickets.httpapi import (
    SizeMismatch,
    basic_auth,
    default_client,
    describe,
    exactly,
    json_object,
    network_error,
    same_origin,
    send,
    status_error,
)

# Zendesk accepts attachments of up to 50 MB each. A comment carries at most
# this many bytes of attachments in total, so one comment's uploads stay a
# bounded amount of work to redo when its tokens expire; with the default
# GATEWAY_ATTACHMENT_MAX of 20 MiB that is two files per comment.
MAX_FILE_BYTES = 50_000_000
MAX_COMMENT_BYTES = 50_000_000

SYSTEM = "Zendesk"

# Renew a client-credentials token this long (at most) before it runs out.
_RENEW_MARGIN = 60.0


class _UploadsRejected(Exception):
    """The ticket update refused an upload token (expired, used or unknown)."""


class _Auth:
    """Produces the Authorization header; refreshable kinds renew on demand."""

    refreshable = False

    async def header(self, client: ZendeskTickets) -> str:
        raise NotImplementedError

    def invalidate(self) -> None:
        """Forget a refused token so the next header() fetches a fresh one."""


class _Bearer(_Auth):
    def __init__(self, token: str) -> None:
        self._value = f"Bearer {token}"

    async def header(self, client: ZendeskTickets) -> str:
        return self._value


class _Basic(_Auth):
    def __init__(self, email_addr: str, token: str) -> None:
        self._value = basic_auth(f"{email_addr}/token", token)

    async def header(self, client: ZendeskTickets) -> str:
        return self._value


class _ClientCredentials(_Auth):
    refreshable = True

    def __init__(self, client_id: str, client_secret: str) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._token: str | None = None
        self._renew_at: float | None = None  # clock time; None: until refused
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._token = None

    def _fresh(self, now: float) -> bool:
        return self._token is not None and (self._renew_at is None or now < self._renew_at)

    async def header(self, client: ZendeskTickets) -> str:
        if not self._fresh(client.clock()):
            async with self._lock:
                if not self._fresh(client.clock()):
                    await self._exchange(client)
        return f"Bearer {self._token}"

    async def _exchange(self, client: ZendeskTickets) -> None:
        started = client.clock()
        payload = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "scope": "read write",
        }
        try:
            response = await client.http.post(client.url("/oauth/tokens"), json=payload)
        except httpx.TransportError as exc:
            raise network_error(SYSTEM, "token exchange", exc) from exc
        if response.status_code != 200:
            raise _status_error("token exchange", response)
        try:
            data = response.json()
            token = data["access_token"]
            if not isinstance(token, str) or not token:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise TicketError(
                "Zendesk token exchange: response has no access_token",
                retryable=True,
                status=response.status_code,
            ) from None
        expires_in = data.get("expires_in")
        self._token = token
        if isinstance(expires_in, int | float) and expires_in > 0:
            margin = min(_RENEW_MARGIN, expires_in / 10)
            self._renew_at = started + expires_in - margin
        else:
            self._renew_at = None


def _auth_for(settings: ZendeskSettings) -> _Auth:
    if settings.oauth_token:
        return _Bearer(settings.oauth_token)
    if settings.client_id and settings.client_secret:
        return _ClientCredentials(settings.client_id, settings.client_secret)
    if settings.email and settings.api_token:
        return _Basic(settings.email, settings.api_token)
    raise ValueError("Zendesk settings carry no usable credentials")


def _error_parts(data: dict[str, Any]) -> list[str]:
    """Zendesk's own error text: ``error``, ``description`` and ``details``."""
    parts: list[str] = []
    error = data.get("error")
    if isinstance(error, dict):
        parts.extend(str(error[k]) for k in ("title", "message") if error.get(k))
    elif error:
        parts.append(str(error))
    for key in ("description", "error_description"):
        if data.get(key):
            parts.append(str(data[key]))
    details = data.get("details")
    if isinstance(details, dict):
        for field, problems in details.items():
            if isinstance(problems, list):
                for problem in problems:
                    said = problem.get("description") if isinstance(problem, dict) else problem
                    parts.append(f"{field}: {said}")
    return parts


def _status_error(what: str, response: httpx.Response) -> TicketError:
    return status_error(SYSTEM, what, response, describe(response, _error_parts))


class ZendeskTickets:
    """The Zendesk implementation of the ticket seam.

    ``client`` is injected so the application shares one pool (and tests can
    point it anywhere); without one, a client with sane timeouts and limits is
    made and closed by :meth:`close`. ``clock`` times the OAuth token's life.
    """

    name = "zendesk"
    max_comment_attachments = MAX_COMMENT_BYTES

    def __init__(
        self,
        settings: ZendeskSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = settings.url.rstrip("/")
        self._auth = _auth_for(settings)
        self._owns_client = client is None
        self.http = client or default_client()
        self.clock = clock

    def __repr__(self) -> str:
        return f"ZendeskTickets(url={self._base!r})"

    def url(self, path: str) -> str:
        return self._base + path

    # -- the seam -------------------------------------------------------------
    async def post_comment(self, ticket: str, comment: NewComment) -> None:
        ticket_id = _ticket_id(ticket)
        for attachment in comment.attachments:
            if attachment.size > MAX_FILE_BYTES:
                raise TicketError(
                    f"{attachment.filename!r} is {attachment.size} bytes; Zendesk takes "
                    f"attachments of at most {MAX_FILE_BYTES} bytes",
                    retryable=False,
                )
        tokens = await self._upload_all(comment.attachments)
        try:
            await self._update(ticket_id, comment, tokens, may_reupload=bool(tokens))
        except _UploadsRejected:
            tokens = await self._upload_all(comment.attachments)
            await self._update(ticket_id, comment, tokens, may_reupload=False)

    async def find_markers(self, ticket: str, markers: Sequence[str]) -> set[str]:
        ticket_id = _ticket_id(ticket)
        wanted = set(markers)
        found: set[str] = set()
        if not wanted:
            return found
        # Newest first: a marker we look for is most likely on a recent comment.
        # Comments added while paging only shift older ones to later pages, so
        # one may be seen twice but none is missed.
        url: str | None = self.url(f"/api/v2/tickets/{ticket_id}/comments")
        params: dict[str, str] | None = {"sort_order": "desc", "per_page": "100"}
        while url is not None:
            response = await self._request("GET", url, "comment listing", params=params)
            data = json_object(response, SYSTEM, "comment listing")
            for item in data.get("comments") or []:
                if not isinstance(item, dict):
                    continue
                texts = [item.get(k) for k in ("body", "plain_body", "html_body")]
                text = "\n".join(t for t in texts if isinstance(t, str))
                found.update(m for m in wanted - found if m in text)
            if found == wanted:
                break
            next_page = data.get("next_page")
            url = (
                same_origin(self._base, next_page, SYSTEM, "comment listing")
                if isinstance(next_page, str)
                else None
            )
            params = None
        return found

    async def ping(self) -> None:
        response = await self._request("GET", self.url("/api/v2/users/me"), "credentials check")
        user = json_object(response, SYSTEM, "credentials check").get("user")
        # Zendesk answers an unauthenticated /users/me with an anonymous user.
        if not isinstance(user, dict) or user.get("id") is None:
            raise TicketError(
                "Zendesk credentials check failed: the API treats us as anonymous: "
                "unauthorized, check the Zendesk credentials",
                retryable=False,
                status=response.status_code,
            )

    async def close(self) -> None:
        if self._owns_client:
            await self.http.aclose()

    # -- steps ----------------------------------------------------------------
    async def _upload_all(self, attachments: Sequence[AttachmentSource]) -> list[str]:
        tokens: list[str] = []
        for attachment in attachments:
            tokens.append(await self._upload(attachment))
        return tokens

    async def _upload(self, attachment: AttachmentSource) -> str:
        what = f"upload of {attachment.filename!r}"
        headers = {
            "Content-Type": attachment.content_type or "application/octet-stream",
            "Content-Length": str(attachment.size),
        }
        try:
            response = await self._request(
                "POST",
                self.url("/api/v2/uploads"),
                what,
                params={"filename": attachment.filename},
                headers=headers,
                body=lambda: exactly(attachment),
            )
        except SizeMismatch as exc:
            raise TicketError(f"Zendesk {what} failed: {exc}", retryable=False) from None
        if response.status_code != 201 and response.status_code != 200:
            raise _status_error(what, response)
        upload = json_object(response, SYSTEM, what).get("upload")
        token = upload.get("token") if isinstance(upload, dict) else None
        if not isinstance(token, str) or not token:
            raise TicketError(f"Zendesk {what}: response has no upload token", retryable=True)
        return token

    async def _update(
        self, ticket_id: int, comment: NewComment, tokens: list[str], *, may_reupload: bool
    ) -> None:
        payload: dict[str, Any] = {"body": comment.body, "public": comment.public}
        if tokens:
            payload["uploads"] = tokens
        what = f"update of ticket {ticket_id}"
        response = await self._request(
            "PUT",
            self.url(f"/api/v2/tickets/{ticket_id}"),
            what,
            json={"ticket": {"comment": payload}},
            check=False,
        )
        if response.status_code == 422 and may_reupload and "upload" in response.text.lower():
            raise _UploadsRejected
        if not response.is_success:
            raise _status_error(what, response)

    # -- HTTP -----------------------------------------------------------------
    async def _request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        body: Callable[[], AsyncIterator[bytes]] | None = None,
        check: bool = True,
    ) -> httpx.Response:
        """Send once (twice if a refreshable OAuth token is refused); translate failures."""
        for attempt in (1, 2):
            response = await send(
                self.http, SYSTEM, what, method, url,
                authorization=await self._auth.header(self), params=params, headers=headers,
                json=json, content=body() if body is not None else None,
            )  # fmt: skip
            if response.status_code == 401 and self._auth.refreshable and attempt == 1:
                self._auth.invalidate()
                continue
            break
        if check and not response.is_success:
            raise _status_error(what, response)
        return response


def _ticket_id(ticket: str) -> int:
    text = str(ticket).strip()
    if not text.isdigit() or not text.isascii():
        raise TicketError(f"{ticket!r} is not a Zendesk ticket id (digits only)", retryable=False)
    return int(text)
