"""Jira Service Management Cloud (REST) as a :class:`~gateway.tickets.base.TicketSystem`.

A ticket is a customer request, named in links by its issue key (``SUP-123``)
or its numeric issue id. A comment with files is two steps: each file goes up
on its own as a *temporary attachment* of the service desk
(``POST /rest/servicedeskapi/servicedesk/{id}/attachTemporaryFile``, multipart
field ``file``, header ``X-Atlassian-Token: no-check``), then
``POST /rest/servicedeskapi/request/{key}/attachment`` turns those into
attachments of the request with the comment as ``additionalComment``. A comment
without files is ``POST /rest/servicedeskapi/request/{key}/comment``. Markers
are found by paging through ``GET /rest/servicedeskapi/request/{key}/comment``
(``start``/``limit``, ``isLastPage``).

Jira reads a comment body as wiki markup, where ``[text]`` is a link; square
brackets are escaped on the way in (``\\[``) and unescaped when markers are
looked for, so the ticket shows the marker as written.

Like the Zendesk client, this one does not loop retrying: every failure becomes
a :class:`TicketError` that says whether trying later helps (429 and 503 carry
``Retry-After``). A temporary attachment that Jira no longer knows (they are
short-lived) is uploaded again once within the call; if even that fails the
error is retryable, so a file is never parked because of it. Credentials
never appear in messages.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from gateway.settings import JiraSettings
from gateway.tickets.base import AttachmentSource, NewComment, TicketError
from gateway.tickets.httpapi import (
    SizeMismatch,
    StreamedForm,
    basic_auth,
    default_client,
    describe,
    json_object,
    send,
    status_error,
)

# One comment's attachments add up to at most this many bytes, so the work to
# redo when temporary attachments expire stays bounded; a single larger file
# (GATEWAY_ATTACHMENT_MAX may allow it) still gets a comment of its own.
MAX_COMMENT_BYTES = 64 * 1024 * 1024
# Jira keeps a comment to 32,767 characters; a file's lines take at most about
# 1,250 (a 254-byte name, shown and percent-encoded in its signed link, the
# hash, the marker), so 25 fit.
MAX_COMMENT_FILES = 25
PAGE_LIMIT = 100

SYSTEM = "Jira"
CREDENTIALS = (
    "GATEWAY_JIRA_EMAIL, GATEWAY_JIRA_API_TOKEN and that the account is an agent of the "
    "service desk"
)
# What Jira means as final, and how to say it. Unlike Zendesk, a 409 is not
# a conflict that clears by itself.
REFUSALS = {
    404: "the request does not exist (deleted?) or this account cannot see it",
    409: "",
    413: (
        "larger than the Jira site's attachment size setting "
        "(lower GATEWAY_ATTACHMENT_MAX to match it)"
    ),
}
# An issue key (PROJECT-123) or a numeric issue id.
ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,254}-[1-9][0-9]{0,17}|[1-9][0-9]{0,17}")


class _TemporaryAttachmentsGone(Exception):
    """Jira refused the temporary attachment ids (expired or unknown)."""


def escape(body: str) -> str:
    """Plain text to Jira wiki markup that shows the same text (brackets only)."""
    return body.replace("[", "\\[").replace("]", "\\]")


def unescape(body: str) -> str:
    return body.replace("\\[", "[").replace("\\]", "]")


def _error_parts(data: dict[str, Any]) -> list[str]:
    """Jira's own error text: ``errorMessage`` (service desk) or ``errorMessages``/``errors``."""
    parts: list[str] = []
    if data.get("errorMessage"):
        parts.append(str(data["errorMessage"]))
    messages = data.get("errorMessages")
    if isinstance(messages, list):
        parts.extend(str(m) for m in messages if m)
    errors = data.get("errors")
    if isinstance(errors, dict):
        parts.extend(f"{k}: {v}" for k, v in errors.items())
    return parts


def _describe(response: httpx.Response) -> str:
    return describe(response, _error_parts)


def _status_error(what: str, response: httpx.Response) -> TicketError:
    return status_error(
        SYSTEM,
        what,
        response,
        _describe(response),
        credentials=CREDENTIALS,
        refusals=REFUSALS,
    )


def _issue(ticket: str) -> str:
    text = str(ticket).strip()
    if not ISSUE_KEY.fullmatch(text):
        raise TicketError(
            f"{ticket!r} is not a Jira issue key (like SUP-123) or issue id", retryable=False
        )
    return text


class JiraTickets:
    """The Jira Service Management implementation of the ticket seam.

    ``client`` is injected so the application shares one pool (and tests can
    point it anywhere); without one, a client is made and closed by :meth:`close`.
    """

    name = "jira"
    max_comment_attachments = MAX_COMMENT_BYTES
    max_comment_files = MAX_COMMENT_FILES

    def __init__(self, settings: JiraSettings, *, client: httpx.AsyncClient | None = None) -> None:
        self._base = settings.url.rstrip("/")
        self._desk = settings.service_desk_id
        self._auth = basic_auth(settings.email, settings.api_token)
        self._owns_client = client is None
        self.http = client or default_client()

    def __repr__(self) -> str:
        return f"JiraTickets(url={self._base!r}, service_desk_id={self._desk!r})"

    def url(self, path: str) -> str:
        return self._base + "/rest/servicedeskapi" + path

    # -- the seam -------------------------------------------------------------
    async def post_comment(self, ticket: str, comment: NewComment) -> None:
        key = _issue(ticket)
        body = escape(comment.body)
        if not comment.attachments:
            await self._request(
                "POST",
                self.url(f"/request/{key}/comment"),
                f"comment on {key}",
                json={"body": body, "public": comment.public},
            )
            return
        ids = await self._upload_all(comment.attachments)
        try:
            await self._attach(key, ids, body, comment.public)
        except _TemporaryAttachmentsGone:
            ids = await self._upload_all(comment.attachments)
            try:
                await self._attach(key, ids, body, comment.public)
            except _TemporaryAttachmentsGone as exc:
                raise TicketError(
                    f"Jira attachment to {key} failed: fresh temporary attachments were "
                    f"refused too ({exc})",
                    retryable=True,
                ) from None

    async def find_markers(self, ticket: str, markers: Sequence[str]) -> set[str]:
        key = _issue(ticket)
        wanted = set(markers)
        found: set[str] = set()
        start = 0
        while wanted - found:
            response = await self._request(
                "GET",
                self.url(f"/request/{key}/comment"),
                f"comment listing of {key}",
                params={"start": str(start), "limit": str(PAGE_LIMIT)},
            )
            data = json_object(response, SYSTEM, f"comment listing of {key}")
            values = data.get("values") or []
            for item in values:
                if isinstance(item, dict) and isinstance(item.get("body"), str):
                    text = unescape(item["body"])
                    found.update(m for m in wanted - found if m in text)
            if data.get("isLastPage", True) or not values:
                break
            start += len(values)
        return found

    async def ping(self) -> None:
        """The service desk itself: checks the URL, the credentials and the desk id at once."""
        response = await self._request(
            "GET", self.url(f"/servicedesk/{self._desk}"), "credentials check", check=False
        )
        if response.status_code == 404:
            raise TicketError(
                f"Jira credentials check failed: HTTP 404: service desk {self._desk} does not "
                "exist or this account cannot see it (check GATEWAY_JIRA_SERVICE_DESK_ID, and "
                "that GATEWAY_JIRA_EMAIL is an agent of that service desk)",
                retryable=False,
                status=404,
            )
        if not response.is_success:
            raise _status_error("credentials check", response)

    async def attachment_limit(self) -> int:
        """The site's attachment settings (``GET /rest/api/3/attachment/meta``)."""
        what = "attachment settings"
        response = await self._request("GET", self._base + "/rest/api/3/attachment/meta", what)
        data = json_object(response, SYSTEM, what)
        if data.get("enabled") is False:
            return 0
        limit = data.get("uploadLimit")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise TicketError(f"Jira {what}: response has no uploadLimit", retryable=True)
        return limit

    async def close(self) -> None:
        if self._owns_client:
            await self.http.aclose()

    # -- steps ----------------------------------------------------------------
    async def _upload_all(self, attachments: Sequence[AttachmentSource]) -> list[str]:
        return [await self._upload(a) for a in attachments]

    async def _upload(self, attachment: AttachmentSource) -> str:
        what = f"temporary attachment of {attachment.filename!r}"
        form = StreamedForm({}, [attachment], file_field="file")
        headers = {
            "X-Atlassian-Token": "no-check",
            # Once required while the call was experimental; harmless since.
            "X-ExperimentalApi": "opt-in",
            "Content-Type": form.content_type,
            "Content-Length": str(len(form)),
        }
        try:
            response = await self._request(
                "POST",
                self.url(f"/servicedesk/{self._desk}/attachTemporaryFile"),
                what,
                headers=headers,
                body=form.stream(),
            )
        except SizeMismatch as exc:
            raise TicketError(f"{SYSTEM} {what} failed: {exc}", retryable=False) from None
        temporary = json_object(response, SYSTEM, what).get("temporaryAttachments")
        first = temporary[0] if isinstance(temporary, list) and temporary else None
        ident = first.get("temporaryAttachmentId") if isinstance(first, dict) else None
        if not isinstance(ident, str | int) or ident == "":
            raise TicketError(f"Jira {what}: response has no temporaryAttachmentId", retryable=True)
        return str(ident)

    async def _attach(self, key: str, ids: list[str], body: str, public: bool) -> None:
        what = f"attachment to {key}"
        response = await self._request(
            "POST",
            self.url(f"/request/{key}/attachment"),
            what,
            json={
                "temporaryAttachmentIds": ids,
                "public": public,
                "additionalComment": {"body": body},
            },
            check=False,
        )
        if response.status_code == 400 and "temporary" in _describe(response).lower():
            raise _TemporaryAttachmentsGone(_describe(response))
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
        body: AsyncIterator[bytes] | None = None,
        check: bool = True,
    ) -> httpx.Response:
        response = await send(
            self.http, SYSTEM, what, method, url, authorization=self._auth,
            params=params, headers=headers, json=json, content=body,
        )  # fmt: skip
        if check and not response.is_success:
            raise _status_error(what, response)
        return response
