"""ServiceNow (Table API and Attachment API) as a :class:`~gateway.tickets.base.TicketSystem`.

A ticket id in a link is a record number of the configured table (``INC0010001``
for ``incident``; a 32-character sys_id works too). Each call first resolves it
with ``GET /api/now/table/{table}?sysparm_query=number=...``, which also says
whether the record is still active: a closed (inactive) record is refused
before anything is written, so the receipt says ``failed`` with the reason.

A comment is a journal entry on the record: ``work_notes`` (internal), or
``comments`` (customer-visible) when public comments are configured, written
with ``PATCH /api/now/table/{table}/{sys_id}``. Files go first, one
``POST /api/now/attachment/file?table_name=&table_sys_id=&file_name=`` each
(raw body, streamed), then the note that names them. The record's
``sys_mod_count`` before and after the update shows whether the note was
recorded at all (an ACL may drop a field it does not let us write without an
error); if it was not, the update is reported as refused.

Markers are looked for in the record's journal entries
(``GET /api/now/table/sys_journal_field?sysparm_query=element_id=...``, newest
first, paged with ``sysparm_limit``/``sysparm_offset``). Auth is Basic (user
and password) or a Bearer OAuth token. A one-row read of the table is the
readiness check.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.settings import SERVICENOW_ATTACHMENT_LIMIT, ServiceNowSettings
from gateway.tickets.base import AttachmentSource, NewComment, TicketError
from gateway.tickets.httpapi import (
    SizeMismatch,
    basic_auth,
    default_client,
    describe,
    exactly,
    json_body,
    network_error,
    send,
    status_error,
)

SYSTEM = "ServiceNow"
PAGE = 100
_NUMBER = re.compile(r"[A-Za-z0-9_-]{1,40}")
_SYS_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Record:
    sys_id: str
    number: str
    active: bool
    mod_count: int | None


def _error_parts(data: dict[str, Any]) -> list[str]:
    """ServiceNow's own error text: ``error.message`` and ``error.detail``."""
    error = data.get("error")
    if not isinstance(error, dict):
        return [str(data)]
    return [str(error[k]) for k in ("message", "detail") if error.get(k)]


def _describe(response: httpx.Response) -> str:
    return describe(response, _error_parts)


def _mod_count(value: Any) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _result(data: Any, what: str) -> Any:
    if not isinstance(data, dict) or "result" not in data:
        raise TicketError(f"{SYSTEM} {what}: the response has no result", retryable=True)
    return data["result"]


class ServiceNowTickets:
    """The ServiceNow implementation of the ticket seam.

    ``client`` is injected so the application shares one pool (and tests can
    point it anywhere); without one, a client is made and closed by :meth:`close`.
    """

    name = "servicenow"
    max_comment_attachments = SERVICENOW_ATTACHMENT_LIMIT

    def __init__(
        self, settings: ServiceNowSettings, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self._base = settings.url.rstrip("/")
        self.table = settings.table
        if settings.oauth_token:
            self._auth = f"Bearer {settings.oauth_token}"
        elif settings.user and settings.password:
            self._auth = basic_auth(settings.user, settings.password)
        else:
            raise ValueError("ServiceNow settings carry no usable credentials")
        self._owns_client = client is None
        self.http = client or default_client()

    def __repr__(self) -> str:
        return f"ServiceNowTickets(url={self._base!r}, table={self.table!r})"

    def url(self, path: str) -> str:
        return self._base + path

    # -- the seam -------------------------------------------------------------
    async def post_comment(self, ticket: str, comment: NewComment) -> None:
        record = await self.resolve(ticket)
        if not record.active:
            raise TicketError(
                f"{SYSTEM} record {record.number} is closed (inactive); reopen it to receive files",
                retryable=False,
                status=409,
            )
        for attachment in comment.attachments:
            if attachment.size > SERVICENOW_ATTACHMENT_LIMIT:
                raise TicketError(
                    f"{attachment.filename!r} is {attachment.size} bytes; ServiceNow takes "
                    f"attachments of at most {SERVICENOW_ATTACHMENT_LIMIT} bytes",
                    retryable=False,
                )
        for attachment in comment.attachments:
            await self._attach(record, attachment)
        await self._note(record, comment)

    async def find_markers(self, ticket: str, markers: Sequence[str]) -> set[str]:
        wanted = set(markers)
        found: set[str] = set()
        if not wanted:
            return found
        record = await self.resolve(ticket)
        what = f"journal listing of {record.number}"
        offset = 0
        while found != wanted:
            params = {
                "sysparm_query": (
                    f"element_id={record.sys_id}^elementINwork_notes,comments"
                    "^ORDERBYDESCsys_created_on"
                ),
                "sysparm_fields": "element,value,sys_created_on",
                "sysparm_limit": str(PAGE),
                "sysparm_offset": str(offset),
            }
            response = await self._request(
                "GET", self.url("/api/now/table/sys_journal_field"), what, params=params
            )
            entries = _result(json_body(response, SYSTEM, what), what)
            if not isinstance(entries, list):
                raise TicketError(f"{SYSTEM} {what}: result is not a list", retryable=True)
            for entry in entries:
                value = entry.get("value") if isinstance(entry, dict) else None
                if isinstance(value, str):
                    found.update(m for m in wanted - found if m in value)
            if len(entries) < PAGE:
                break
            offset += len(entries)
        return found

    async def ping(self) -> None:
        params = {"sysparm_limit": "1", "sysparm_fields": "sys_id"}
        what = f"credentials check (read of table {self.table})"
        response = await self._request(
            "GET", self.url(f"/api/now/table/{self.table}"), what, params=params
        )
        _result(json_body(response, SYSTEM, what), what)

    async def close(self) -> None:
        if self._owns_client:
            await self.http.aclose()

    # -- steps ----------------------------------------------------------------
    async def resolve(self, ticket: str) -> Record:
        """The record behind a ticket id: its sys_id, number, whether it is active."""
        text = str(ticket).strip()
        if not _NUMBER.fullmatch(text):
            raise TicketError(f"{ticket!r} is not a {SYSTEM} record number", retryable=False)
        field = "sys_id" if _SYS_ID.fullmatch(text) else "number"
        params = {
            "sysparm_query": f"{field}={text}",
            "sysparm_fields": "sys_id,number,active,sys_mod_count",
            "sysparm_limit": "1",
        }
        what = f"lookup of {self.table} {text}"
        response = await self._request(
            "GET", self.url(f"/api/now/table/{self.table}"), what, params=params
        )
        rows = _result(json_body(response, SYSTEM, what), what)
        if not isinstance(rows, list):
            raise TicketError(f"{SYSTEM} {what}: result is not a list", retryable=True)
        if not rows or not isinstance(rows[0], dict) or not rows[0].get("sys_id"):
            raise TicketError(
                f"{SYSTEM} {what}: no such record in table {self.table} (deleted, or not "
                "readable by this user)",
                retryable=False,
                status=404,
            )
        row = rows[0]
        return Record(
            sys_id=str(row["sys_id"]),
            number=str(row.get("number") or text),
            active=str(row.get("active", "true")).lower() != "false",
            mod_count=_mod_count(row.get("sys_mod_count")),
        )

    async def _attached_before(self, record: Record, attachment: AttachmentSource) -> bool:
        """Whether the record already holds these very bytes under this name.

        Files go up before the note that names them, so a crash (or a failed
        note) between the two leaves them on the record; the next attempt
        finds them by name and size and, if the bytes hash the same, does
        not attach them twice.
        """
        if not attachment.sha256 or "^" in attachment.filename:
            return False
        what = f"attachment listing of {record.number}"
        params = {
            "sysparm_query": (
                f"table_name={self.table}^table_sys_id={record.sys_id}"
                f"^size_bytes={attachment.size}^file_name={attachment.filename}"
            ),
            "sysparm_fields": "sys_id,size_bytes",
            "sysparm_limit": "10",
        }
        response = await self._request(
            "GET", self.url("/api/now/attachment"), what, params=params, record=record
        )
        rows = _result(json_body(response, SYSTEM, what), what)
        for row in rows if isinstance(rows, list) else []:
            sys_id = row.get("sys_id") if isinstance(row, dict) else None
            if isinstance(sys_id, str) and _SYS_ID.fullmatch(sys_id):
                if await self._sha256_of(sys_id, what) == attachment.sha256:
                    return True
        return False

    async def _sha256_of(self, sys_id: str, what: str) -> str:
        digest = hashlib.sha256()
        url = self.url(f"/api/now/attachment/{sys_id}/file")
        headers = {"Accept": "*/*", "Authorization": self._auth}
        try:
            async with self.http.stream("GET", url, headers=headers) as response:
                if not response.is_success:
                    await response.aread()
                    raise status_error(SYSTEM, what, response, _describe(response))
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
        except httpx.TransportError as exc:
            raise network_error(SYSTEM, what, exc) from exc
        return digest.hexdigest()

    async def _attach(self, record: Record, attachment: AttachmentSource) -> None:
        if await self._attached_before(record, attachment):
            return
        what = f"upload of {attachment.filename!r} to {record.number}"
        params = {
            "table_name": self.table,
            "table_sys_id": record.sys_id,
            "file_name": attachment.filename,
        }
        headers = {
            "Content-Type": attachment.content_type or "application/octet-stream",
            "Content-Length": str(attachment.size),
        }
        try:
            response = await self._request(
                "POST",
                self.url("/api/now/attachment/file"),
                what,
                params=params,
                headers=headers,
                content=exactly(attachment),
                record=record,
            )
        except SizeMismatch as exc:
            raise TicketError(f"{SYSTEM} {what} failed: {exc}", retryable=False) from None
        meta = _result(json_body(response, SYSTEM, what), what)
        size = meta.get("size_bytes") if isinstance(meta, dict) else None
        if size is not None and str(size) != str(attachment.size):
            raise TicketError(
                f"{SYSTEM} {what}: stored {size} of {attachment.size} bytes", retryable=True
            )

    async def _note(self, record: Record, comment: NewComment) -> None:
        field = "comments" if comment.public else "work_notes"
        what = f"{field} update of {record.number}"
        response = await self._request(
            "PATCH",
            self.url(f"/api/now/table/{self.table}/{record.sys_id}"),
            what,
            params={"sysparm_fields": "sys_id,sys_mod_count"},
            json={field: comment.body},
            record=record,
        )
        row = _result(json_body(response, SYSTEM, what), what)
        after = _mod_count(row.get("sys_mod_count")) if isinstance(row, dict) else None
        if record.mod_count is not None and after is not None and after <= record.mod_count:
            raise TicketError(
                f"{SYSTEM} {what}: the update was accepted but no {field} entry was recorded "
                f"(is {record.number} closed, or {field} read-only for this user?)",
                retryable=False,
                status=403,
            )

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
        content: AsyncIterator[bytes] | None = None,
        record: Record | None = None,
    ) -> httpx.Response:
        response = await send(
            self.http, SYSTEM, what, method, url, authorization=self._auth,
            params=params, headers=headers, json=json, content=content,
        )  # fmt: skip
        if not response.is_success:
            missing = f"record {record.number} does not exist or was deleted" if record else None
            raise status_error(SYSTEM, what, response, _describe(response), not_found=missing)
        return response
