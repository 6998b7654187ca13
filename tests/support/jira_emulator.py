"""A Jira Service Management Cloud REST emulator for tests.

It follows the request and response shapes of the Jira Service Management
Cloud REST API reference for the calls the gateway makes:

- ``GET /rest/servicedeskapi/servicedesk/{serviceDeskId}``: the service desk
  (``id``, ``projectId``, ``projectName``, ``projectKey``, ``_links``);
- ``POST /rest/servicedeskapi/servicedesk/{serviceDeskId}/attachTemporaryFile``:
  multipart, field ``file`` (one or more), refused without
  ``X-Atlassian-Token: no-check``; 201 with
  ``{"temporaryAttachments": [{"temporaryAttachmentId", "fileName"}]}``;
- ``POST /rest/servicedeskapi/request/{issueIdOrKey}/attachment`` with
  ``{"temporaryAttachmentIds", "public", "additionalComment": {"body"}}``: 201
  with ``{"comment": CommentDTO, "attachments": PagedDTO}``; the comment body
  gets a ``[^file]`` reference per attachment appended, as Jira does;
- ``POST /rest/servicedeskapi/request/{issueIdOrKey}/comment`` with
  ``{"body", "public"}``: 201 with the CommentDTO;
- ``GET /rest/servicedeskapi/request/{issueIdOrKey}/comment``: a page
  (``start``, ``limit``, ``size``, ``isLastPage``, ``values``, ``_links``),
  oldest first, ``public``/``internal`` filters;
- ``GET /rest/api/3/attachment/meta`` (the Jira platform API): the site's
  attachment settings, ``{"enabled", "uploadLimit"}`` in bytes.

Errors carry the service desk error shape ``{"errorMessage": ...}``. Auth is
Basic ``email:api_token``; anything else is 401. Faults: an outage (503 with
``Retry-After``, or dropped connections), injected statuses, a per-issue write
rate limit (429 with ``Retry-After`` and ``RateLimit-Reason:
jira-per-issue-on-write``), the site's attachment size (413 past it),
temporary attachments that expire, deleted and closed requests (a closed
request's workflow forbids edits: 400), comments longer than Jira's 32,767
characters (400).

The recording, outages, injected failures and the control API they share with
the other emulators are :mod:`tests.support.emulation`'s; a control API under
``/_emulator/`` also creates requests and reads back what was recorded. Run it
with ``python -m tests.support.jira_emulator``: it binds 127.0.0.1 on a free
port, prints ``PORT <n>`` and serves until killed; credentials come from
``JIRA_EMULATOR_CREDENTIALS`` (JSON with ``email``, ``api_token``,
``service_desk_id``, ``project_key``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.emulation import (
    BaseState,
    Faults,
    authorization,
    create_app,
    same_secret,
    serve,
)

MiB = 1024 * 1024
COMMENT_CHARS = 32_767  # Jira's limit on a text field such as a comment
AGENT_ACCOUNT = "5b10ac8d82e05b22cc7d4ef5"


@dataclass(frozen=True)
class Credentials:
    email: str
    api_token: str
    service_desk_id: str = "4"
    project_key: str = "SUP"

    @classmethod
    def generate(cls) -> Credentials:
        return cls(email="gateway@example.test", api_token="ATATT3x" + secrets.token_hex(20))


def _date(ts: float) -> dict[str, Any]:
    when = datetime.fromtimestamp(ts, UTC)
    return {
        "iso8601": when.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "jira": when.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "friendly": when.strftime("%d/%b/%y %I:%M %p"),
        "epochMillis": int(ts * 1000),
    }


def _user(email: str) -> dict[str, Any]:
    return {
        "accountId": AGENT_ACCOUNT,
        "emailAddress": email,
        "displayName": "Upload Gateway",
        "active": True,
        "timeZone": "UTC",
        "_links": {},
    }


@dataclass
class Attachment:
    id: int
    filename: str
    mime_type: str
    data: bytes
    created: float

    def to_json(self, base: str, email: str) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "author": _user(email),
            "created": _date(self.created),
            "size": len(self.data),
            "mimeType": self.mime_type,
            "_links": {
                "jiraRest": f"{base}/rest/api/2/attachment/{self.id}",
                "content": f"{base}/servicedesk/customershim/secure/attachment/{self.id}/"
                f"{self.filename}",
            },
        }


@dataclass
class Temporary:
    id: str
    attachment: Attachment
    expires_at: float


@dataclass
class Comment:
    id: int
    body: str
    public: bool
    created: float
    attachments: list[Attachment] = field(default_factory=list)

    def to_json(self, base: str, key: str, email: str) -> dict[str, Any]:
        return {
            "_expands": ["attachment", "renderedBody"],
            "id": str(self.id),
            "body": self.body,
            "public": self.public,
            "author": _user(email),
            "created": _date(self.created),
            "_links": {"self": f"{base}/rest/servicedeskapi/request/{key}/comment/{self.id}"},
        }


@dataclass
class CustomerRequest:
    issue_id: int
    key: str
    status: str  # "open" or "closed"
    comments: list[Comment] = field(default_factory=list)


@dataclass
class JiraFaults(Faults):
    write_limit: int = 1000  # writes per issue per window
    write_window: float = 60.0
    attachment_limit: int = 10 * MiB  # the site's attachment size setting
    attachments_enabled: bool = True
    page_limit: int = 100  # the most comments one listing page holds
    temporary_ttl: float = 3600.0


class State(BaseState):
    faults_type = JiraFaults
    faults: JiraFaults

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.requests_by_key: dict[str, CustomerRequest] = {}
        self.temporary: dict[str, Temporary] = {}
        self.writes: dict[str, deque[float]] = {}
        self._ids = 10_000
        self._numbers = 0

    def error(self, status: int, message: str, detail: str = "") -> Response:
        if status == 401:
            return _error(401, "Client must be authenticated to access this resource.")
        return _error(status, detail or message)

    def snapshot(self, base: str) -> dict[str, Any]:
        return {
            **super().snapshot(base),
            "temporary": len(self.temporary),
            "faults": {k: v for k, v in asdict(self.faults).items() if k != "fail_next"},
        }

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def find(self, id_or_key: str) -> CustomerRequest | None:
        found = self.requests_by_key.get(id_or_key)
        if found is not None:
            return found
        for item in self.requests_by_key.values():
            if str(item.issue_id) == id_or_key:
                return item
        return None

    def authenticate(self, header: str | None) -> bool:
        found = authorization(header)
        expected = f"{self.credentials.email}:{self.credentials.api_token}"
        return found is not None and found[0] == "basic" and same_secret(found[1], expected)

    @staticmethod
    def comment_view(comment: Comment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "body": comment.body,
            "public": comment.public,
            "attachments": [
                {
                    "file_name": a.filename,
                    "mime_type": a.mime_type,
                    "size": len(a.data),
                    "sha256": hashlib.sha256(a.data).hexdigest(),
                }
                for a in comment.attachments
            ],
        }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"errorMessage": message, "i18nErrorMessage": {"i18nKey": "", "parameters": []}},
        status_code=status,
        headers=headers,
    )


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _state(request: Request) -> State:
    state: State = request.app.state.emulator
    return state


def _not_found(id_or_key: str) -> JSONResponse:
    return _error(
        404, f"Request '{id_or_key}' does not exist or you do not have permission to see it."
    )


def _write_limited(state: State, key: str) -> JSONResponse | None:
    """Jira's per-issue write limit: too many writes to one issue get 429."""
    now = time.monotonic()
    window = state.writes.setdefault(key, deque())
    while window and window[0] <= now - state.faults.write_window:
        window.popleft()
    if len(window) >= state.faults.write_limit:
        wait = max(1, math.ceil(window[0] + state.faults.write_window - now))
        state.rate_limited += 1
        return _error(
            429,
            "Rate limit exceeded.",
            {"Retry-After": str(wait), "RateLimit-Reason": "jira-per-issue-on-write"},
        )
    window.append(now)
    return None


# -- the Jira Service Management API ------------------------------------------------


async def service_desk(request: Request) -> Response:
    state = _state(request)
    desk = request.path_params["desk"]
    if desk != state.credentials.service_desk_id:
        return _error(404, f"Service desk with id {desk} does not exist.")
    base = _base(request)
    return JSONResponse(
        {
            "id": desk,
            "projectId": "10000",
            "projectName": "Support",
            "projectKey": state.credentials.project_key,
            "_links": {"self": f"{base}/rest/servicedeskapi/servicedesk/{desk}"},
        }
    )


async def attachment_meta(request: Request) -> Response:
    faults = _state(request).faults
    return JSONResponse(
        {"enabled": faults.attachments_enabled, "uploadLimit": faults.attachment_limit}
    )


async def attach_temporary_file(request: Request) -> Response:
    state = _state(request)
    desk = request.path_params["desk"]
    if request.headers.get("x-atlassian-token", "").lower() != "no-check":
        return Response("XSRF check failed", status_code=403, media_type="text/plain")
    if desk != state.credentials.service_desk_id:
        return _error(404, f"Service desk with id {desk} does not exist.")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return _error(415, "Expected multipart/form-data.")
    if not state.faults.attachments_enabled:
        return _error(403, "Attachments are disabled on this site.")
    limit = state.faults.attachment_limit
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > limit + 64 * 1024:
        return _error(413, f"The field file exceeds its maximum permitted size of {limit} bytes.")
    form = await request.form(max_files=100)
    try:
        files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        if not files:
            return _error(400, "The multipart/form-data field 'file' is required.")
        made: list[Temporary] = []
        for upload in files:
            data = await upload.read()
            if len(data) > limit:
                return _error(
                    413, f"The field file exceeds its maximum permitted size of {limit} bytes."
                )
            attachment = Attachment(
                id=state.next_id(),
                filename=upload.filename or "file",
                mime_type=upload.content_type or "application/octet-stream",
                data=data,
                created=time.time(),
            )
            temporary = Temporary(
                id="temp" + str(secrets.randbits(62)),
                attachment=attachment,
                expires_at=time.time() + state.faults.temporary_ttl,
            )
            state.temporary[temporary.id] = temporary
            made.append(temporary)
    finally:
        await form.close()
    return JSONResponse(
        {
            "temporaryAttachments": [
                {"temporaryAttachmentId": t.id, "fileName": t.attachment.filename} for t in made
            ]
        },
        status_code=201,
    )


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        data = await request.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _too_long(text: str) -> JSONResponse | None:
    if len(text) > COMMENT_CHARS:
        return _error(
            400,
            f"The entered text is too long. It exceeds the allowed limit of {COMMENT_CHARS:,} "
            "characters.",
        )
    return None


def _closed(item: CustomerRequest) -> JSONResponse | None:
    if item.status == "closed":
        return _error(
            400, f"Request {item.key} is closed: its workflow does not allow it to be edited."
        )
    return None


async def _write_target(
    request: Request,
) -> tuple[State, CustomerRequest, dict[str, Any]] | Response:
    """The request a write names and the JSON object sent, or the refusal."""
    state = _state(request)
    id_or_key = request.path_params["key"]
    item = state.find(id_or_key)
    if item is None:
        return _not_found(id_or_key)
    data = await _json_body(request)
    if data is None:
        return _error(400, "The request body must be a JSON object.")
    return state, item, data


async def create_attachment(request: Request) -> Response:
    found = await _write_target(request)
    if isinstance(found, Response):
        return found
    state, item, data = found
    if (refused := _closed(item)) is not None:
        return refused
    ids = data.get("temporaryAttachmentIds")
    if not isinstance(ids, list) or not ids:
        return _error(400, "temporaryAttachmentIds must name at least one temporary attachment.")
    now = time.time()
    for ident in ids:
        temporary = state.temporary.get(str(ident))
        if temporary is None or now >= temporary.expires_at:
            return _error(400, f"The temporary attachment {ident} does not exist or has expired.")
    extra = data.get("additionalComment")
    text = str(extra.get("body") or "") if isinstance(extra, dict) else ""
    if (refused := _too_long(text)) is not None:
        return refused
    if (limited := _write_limited(state, item.key)) is not None:
        return limited
    attachments = [state.temporary.pop(str(ident)).attachment for ident in ids]
    public = bool(data.get("public", True))
    refs = " ".join(f"[^{a.filename}]" for a in attachments)
    comment = Comment(
        id=state.next_id(),
        body=f"{text}\n\n{refs}" if text else refs,
        public=public,
        created=now,
        attachments=attachments,
    )
    item.comments.append(comment)
    base, email = _base(request), state.credentials.email
    return JSONResponse(
        {
            "comment": comment.to_json(base, item.key, email),
            "attachments": {
                "_expands": [],
                "size": len(attachments),
                "start": 0,
                "limit": len(attachments),
                "isLastPage": True,
                "_links": {"base": f"{base}/rest/servicedeskapi", "context": ""},
                "values": [a.to_json(base, email) for a in attachments],
            },
        },
        status_code=201,
    )


async def create_comment(request: Request) -> Response:
    found = await _write_target(request)
    if isinstance(found, Response):
        return found
    state, item, data = found
    body = data.get("body")
    if not isinstance(body, str) or not body.strip():
        return _error(400, "The comment body can not be empty.")
    if (refused := _closed(item) or _too_long(body)) is not None:
        return refused
    if (limited := _write_limited(state, item.key)) is not None:
        return limited
    comment = Comment(
        id=state.next_id(), body=body, public=bool(data.get("public", True)), created=time.time()
    )
    item.comments.append(comment)
    return JSONResponse(
        comment.to_json(_base(request), item.key, state.credentials.email), status_code=201
    )


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "true").lower() != "false"


async def list_comments(request: Request) -> Response:
    state = _state(request)
    id_or_key = request.path_params["key"]
    item = state.find(id_or_key)
    if item is None:
        return _not_found(id_or_key)
    try:
        start = max(0, int(request.query_params.get("start", "0")))
        limit = max(1, int(request.query_params.get("limit", "50")))
    except ValueError:
        return _error(400, "start and limit must be numbers.")
    limit = min(limit, state.faults.page_limit)
    want_public, want_internal = _flag(request, "public"), _flag(request, "internal")
    shown = [c for c in item.comments if (want_public if c.public else want_internal)]
    page = shown[start : start + limit]
    base = _base(request)
    here = f"{base}/rest/servicedeskapi/request/{item.key}/comment"
    links: dict[str, str] = {
        "base": f"{base}/rest/servicedeskapi",
        "context": "",
        "self": f"{here}?start={start}&limit={limit}",
    }
    last = start + limit >= len(shown)
    if not last:
        links["next"] = f"{here}?start={start + limit}&limit={limit}"
    if start > 0:
        links["prev"] = f"{here}?start={max(0, start - limit)}&limit={limit}"
    return JSONResponse(
        {
            "_expands": [],
            "size": len(page),
            "start": start,
            "limit": limit,
            "isLastPage": last,
            "_links": links,
            "values": [c.to_json(base, item.key, state.credentials.email) for c in page],
        }
    )


# -- the control API ---------------------------------------------------------------------


async def control_create_request(request: Request) -> Response:
    """A new customer request: ``{"status"?}`` gives ``{"key", "issueId"}``."""
    state = _state(request)
    data = await _json_body(request) or {}
    state._numbers += 1
    key = f"{state.credentials.project_key}-{state._numbers}"
    item = CustomerRequest(
        issue_id=state.next_id(), key=key, status=str(data.get("status") or "open")
    )
    item.comments.append(
        Comment(state.next_id(), "I need to send you a large file.", True, time.time())
    )
    state.requests_by_key[key] = item
    return JSONResponse({"key": key, "issueId": str(item.issue_id)}, status_code=201)


async def control_update_request(request: Request) -> Response:
    """``{"status": "closed"|"open"}``, or DELETE to delete the request."""
    state = _state(request)
    key = request.path_params["key"]
    item = state.requests_by_key.get(key)
    if item is None:
        return _error(404, "no such request")
    if request.method == "DELETE":
        del state.requests_by_key[key]
        return JSONResponse({"deleted": key})
    data = await _json_body(request) or {}
    item.status = str(data.get("status") or item.status)
    return JSONResponse({"key": key, "status": item.status})


async def control_comments(request: Request) -> Response:
    state = _state(request)
    item = state.requests_by_key.get(request.path_params["key"])
    if item is None:
        return _error(404, "no such request")
    return JSONResponse({"comments": [state.comment_view(c) for c in item.comments]})


async def control_expire_temporary(request: Request) -> Response:
    state = _state(request)
    past = time.time() - 1
    for temporary in state.temporary.values():
        temporary.expires_at = past
    return JSONResponse({"expired": len(state.temporary)})


API = "/rest/servicedeskapi"
API_ROUTES = [
    Route("/rest/api/3/attachment/meta", attachment_meta, methods=["GET"]),
    Route(f"{API}/servicedesk/{{desk}}", service_desk, methods=["GET"]),
    Route(
        f"{API}/servicedesk/{{desk}}/attachTemporaryFile", attach_temporary_file, methods=["POST"]
    ),
    Route(f"{API}/request/{{key}}/attachment", create_attachment, methods=["POST"]),
    Route(f"{API}/request/{{key}}/comment", create_comment, methods=["POST"]),
    Route(f"{API}/request/{{key}}/comment", list_comments, methods=["GET"]),
]

CONTROL_ROUTES = [
    Route("/_emulator/requests", control_create_request, methods=["POST"]),
    Route("/_emulator/requests/{key}", control_update_request, methods=["POST", "DELETE"]),
    Route("/_emulator/requests/{key}/comments", control_comments, methods=["GET"]),
    Route("/_emulator/expire_temporary", control_expire_temporary, methods=["POST"]),
]


def build(credentials: Credentials, connections: Any = None) -> Any:
    return create_app(State(credentials), API_ROUTES, CONTROL_ROUTES, connections=connections)


def main() -> None:
    raw = os.environ.get("JIRA_EMULATOR_CREDENTIALS")
    credentials = Credentials(**json.loads(raw)) if raw else Credentials.generate()
    serve(lambda connections: build(credentials, connections))


if __name__ == "__main__":
    main()
