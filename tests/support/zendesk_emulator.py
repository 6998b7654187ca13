"""A Zendesk Support API v2 emulator for tests and benchmarks.

It follows the request and response shapes Zendesk documents for the calls the
gateway makes (uploads, ticket updates with comments, comment listing, the
current user, OAuth client-credentials tokens), keeps everything in memory, and
adds a JSON control API under ``/_emulator/`` so tests can create tickets,
inject faults (outages, dropped connections, rate limits, expired upload
tokens) and read back exactly what was recorded.

The recording, outages (503, or dropped connections: the transport aborted,
no HTTP response at all), injected failures and the shared control routes are
:mod:`tests.support.emulation`'s; Zendesk's own per-ticket update limit is
``update_limit``/``update_window``.

Run it standalone with ``python -m tests.support.zendesk_emulator``; it binds
127.0.0.1 on a free port, prints ``PORT <n>`` on stdout and serves until
killed. Credentials come from the ``ZENDESK_EMULATOR_CREDENTIALS`` environment
variable (JSON with ``oauth_token``, ``client_id``, ``client_secret``,
``email``, ``api_token``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

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

AGENT_ID = 1001
AGENT_EMAIL = "agent@example.test"


@dataclass(frozen=True)
class Credentials:
    """What the emulator accepts. Tests get the same object from the fixture."""

    oauth_token: str
    client_id: str
    client_secret: str
    email: str
    api_token: str

    @classmethod
    def generate(cls) -> Credentials:
        return cls(
            oauth_token="oat_" + secrets.token_hex(16),
            client_id="gateway_test_client",
            client_secret="ocs_" + secrets.token_hex(16),
            email=AGENT_EMAIL,
            api_token="apt_" + secrets.token_hex(16),
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Attachment:
    id: int
    file_name: str
    content_type: str
    data: bytes
    token: str  # the download token in content_url, not the upload token

    def to_json(self, base: str) -> dict[str, Any]:
        url = f"{base}/attachments/token/{self.token}/?" + urlencode({"name": self.file_name})
        return {
            "id": self.id,
            "file_name": self.file_name,
            "content_url": url,
            "mapped_content_url": url,
            "content_type": self.content_type,
            "size": len(self.data),
            "width": None,
            "height": None,
            "inline": False,
            "deleted": False,
            "malware_access_override": False,
            "malware_scan_result": "malware_not_found",
            "url": f"{base}/api/v2/attachments/{self.id}.json",
            "thumbnails": [],
        }


@dataclass
class Upload:
    token: str
    expires_at: float
    attachments: list[Attachment]
    used: bool = False


@dataclass
class Comment:
    id: int
    body: str
    public: bool
    author_id: int
    created_at: float
    attachments: list[Attachment]

    def to_json(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "Comment",
            "author_id": self.author_id,
            "body": self.body,
            "html_body": f'<div class="zd-comment"><p>{self.body}</p></div>',
            "plain_body": self.body,
            "public": self.public,
            "attachments": [a.to_json(base) for a in self.attachments],
            "audit_id": self.id + 1,
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": _iso(self.created_at),
            "metadata": {"system": {}, "custom": {}},
        }


@dataclass
class Ticket:
    id: int
    subject: str
    status: str
    requester_id: int
    created_at: float
    updated_at: float
    comments: list[Comment] = field(default_factory=list)

    def to_json(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": f"{base}/api/v2/tickets/{self.id}.json",
            "subject": self.subject,
            "raw_subject": self.subject,
            "description": self.comments[0].body if self.comments else "",
            "status": self.status,
            "requester_id": self.requester_id,
            "submitter_id": self.requester_id,
            "assignee_id": None,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass
class ZendeskFaults(Faults):
    # Zendesk's limit on updates of one ticket (about 30 in 10 minutes).
    update_limit: int = 30
    update_window: float = 600.0
    upload_ttl: float = 3600.0
    oauth_ttl: int | None = 7200  # expires_in given to client-credentials tokens


class State(BaseState):
    """Everything the emulator holds; ``reset`` empties it between tests."""

    faults_type = ZendeskFaults
    faults: ZendeskFaults

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.tickets: dict[int, Ticket] = {}
        self.users: dict[int, dict[str, Any]] = {
            AGENT_ID: {"id": AGENT_ID, "email": self.credentials.email, "role": "admin"}
        }
        self.uploads: dict[str, Upload] = {}
        self.attachments_by_token: dict[str, Attachment] = {}
        # token -> expiry (unix time) or None
        self.issued_oauth: dict[str, float | None] = {}
        self.oauth_exchanges = 0
        self.updates: dict[int, deque[float]] = {}
        self._ids = 10_000

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def user_for_email(self, email: str) -> int:
        for uid, user in self.users.items():
            if user["email"] == email:
                return uid
        uid = self.next_id()
        self.users[uid] = {"id": uid, "email": email, "role": "end-user"}
        return uid

    # -- auth ----------------------------------------------------------------
    def authenticate(self, header: str | None) -> bool:
        found = authorization(header)
        if found is None:
            return False
        scheme, value = found
        if scheme == "bearer":
            if same_secret(value, self.credentials.oauth_token):
                return True
            if value in self.issued_oauth:
                expiry = self.issued_oauth[value]
                return expiry is None or time.time() < expiry
            return False
        expected = f"{self.credentials.email}/token:{self.credentials.api_token}"
        return scheme == "basic" and same_secret(value, expected)

    def error(self, status: int, message: str, detail: str = "") -> Response:
        if status == 401:
            return JSONResponse({"error": "Couldn't authenticate you"}, status_code=401)
        if status == 503:
            return _error(503, "ServiceUnavailable", "Maintenance")
        return _error(status, message.title().replace(" ", ""), detail or message)

    # -- recording -----------------------------------------------------------
    def snapshot(self, base: str) -> dict[str, Any]:
        return {
            **super().snapshot(base),
            "tickets": {
                str(t.id): {
                    **t.to_json(base),
                    "comments": [self.comment_view(c) for c in t.comments],
                }
                for t in self.tickets.values()
            },
            "uploads": len(self.uploads),
            "oauth_exchanges": self.oauth_exchanges,
            "faults": {
                "outage": self.faults.outage,
                "update_limit": self.faults.update_limit,
                "update_window": self.faults.update_window,
                "upload_ttl": self.faults.upload_ttl,
                "oauth_ttl": self.faults.oauth_ttl,
            },
        }

    @staticmethod
    def comment_view(comment: Comment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "body": comment.body,
            "public": comment.public,
            "author_id": comment.author_id,
            "created_at": _iso(comment.created_at),
            "attachments": [
                {
                    "id": a.id,
                    "file_name": a.file_name,
                    "content_type": a.content_type,
                    "size": len(a.data),
                    "sha256": hashlib.sha256(a.data).hexdigest(),
                }
                for a in comment.attachments
            ],
        }


def _error(status: int, error: str, description: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "description": description, **extra}, status_code=status)


def _not_found() -> JSONResponse:
    return _error(404, "RecordNotFound", "Not found")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# -- the Zendesk API ---------------------------------------------------------


async def users_me(request: Request) -> Response:
    state: State = request.app.state.emulator
    user = state.users[AGENT_ID]
    return JSONResponse(
        {
            "user": {
                **user,
                "name": "Gateway Agent",
                "url": f"{_base(request)}/api/v2/users/{AGENT_ID}.json",
            }
        }
    )


async def create_upload(request: Request) -> Response:
    state: State = request.app.state.emulator
    filename = request.query_params.get("filename")
    if not filename:
        return _error(400, "InvalidValue", "filename query parameter is required")
    content_type = request.headers.get("content-type", "application/binary")
    buf = bytearray()
    async for chunk in request.stream():
        buf.extend(chunk)
    attachment = Attachment(
        id=state.next_id(),
        file_name=filename,
        content_type=content_type,
        data=bytes(buf),
        token=secrets.token_urlsafe(18),
    )
    state.attachments_by_token[attachment.token] = attachment
    existing = request.query_params.get("token")
    if existing:
        upload = state.uploads.get(existing)
        if upload is None or upload.used or time.time() >= upload.expires_at:
            return _not_found()
        upload.attachments.append(attachment)
    else:
        upload = Upload(
            token=secrets.token_urlsafe(18),
            expires_at=time.time() + state.faults.upload_ttl,
            attachments=[attachment],
        )
        state.uploads[upload.token] = upload
    base = _base(request)
    return JSONResponse(
        {
            "upload": {
                "token": upload.token,
                "expires_at": _iso(upload.expires_at),
                "attachment": attachment.to_json(base),
                "attachments": [a.to_json(base) for a in upload.attachments],
            }
        },
        status_code=201,
    )


def _ticket_or_none(request: Request) -> Ticket | None:
    state: State = request.app.state.emulator
    raw = request.path_params["ticket_id"]
    raw = raw[:-5] if raw.endswith(".json") else raw
    if not raw.isdigit():
        return None
    return state.tickets.get(int(raw))


async def show_ticket(request: Request) -> Response:
    ticket = _ticket_or_none(request)
    if ticket is None:
        return _not_found()
    return JSONResponse({"ticket": ticket.to_json(_base(request))})


async def update_ticket(request: Request) -> Response:
    state: State = request.app.state.emulator
    ticket = _ticket_or_none(request)
    if ticket is None:
        return _not_found()
    now = time.monotonic()
    window = state.updates.setdefault(ticket.id, deque())
    while window and window[0] <= now - state.faults.update_window:
        window.popleft()
    if len(window) >= state.faults.update_limit:
        wait = max(1, math.ceil(window[0] + state.faults.update_window - now))
        state.rate_limited += 1
        return JSONResponse(
            {
                "error": "TooManyRequests",
                "description": "You have exceeded the rate limit of updates to this ticket",
            },
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
    try:
        payload = await request.json()
        data = payload["ticket"]
        if not isinstance(data, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return _error(400, "InvalidJSON", 'The request body must be {"ticket": {...}}')
    if ticket.status == "closed":
        return _error(
            422,
            "RecordInvalid",
            "Record validation errors",
            details={"status": [{"description": "Status: closed prevents ticket update"}]},
        )
    comment_data = data.get("comment")
    comment: Comment | None = None
    if comment_data is not None:
        if not isinstance(comment_data, dict):
            return _error(400, "InvalidJSON", "comment must be an object")
        tokens = comment_data.get("uploads") or []
        attachments: list[Attachment] = []
        for token in tokens:
            upload = state.uploads.get(token) if isinstance(token, str) else None
            if upload is None or upload.used or time.time() >= upload.expires_at:
                return _error(
                    422,
                    "RecordInvalid",
                    "Record validation errors",
                    details={
                        "uploads": [
                            {
                                "description": f"Uploads token {token} is invalid or has expired",
                                "error": "InvalidValue",
                            }
                        ]
                    },
                )
            attachments.extend(upload.attachments)
        for token in tokens:
            state.uploads[token].used = True
        body = comment_data.get("body") or comment_data.get("html_body") or ""
        if not body and not attachments:
            return _error(
                422,
                "RecordInvalid",
                "Record validation errors",
                details={"base": [{"description": "Comment: cannot be blank"}]},
            )
        comment = Comment(
            id=state.next_id(),
            body=str(body),
            public=bool(comment_data.get("public", True)),
            author_id=int(comment_data.get("author_id") or AGENT_ID),
            created_at=time.time(),
            attachments=attachments,
        )
        ticket.comments.append(comment)
    if isinstance(data.get("status"), str):
        ticket.status = data["status"]
    window.append(now)
    ticket.updated_at = time.time()
    base = _base(request)
    events: list[dict[str, Any]] = []
    if comment is not None:
        events.append(comment.to_json(base))
    audit = {
        "id": state.next_id(),
        "ticket_id": ticket.id,
        "created_at": _iso(ticket.updated_at),
        "author_id": AGENT_ID,
        "events": events,
    }
    return JSONResponse({"ticket": ticket.to_json(base), "audit": audit})


async def list_comments(request: Request) -> Response:
    ticket = _ticket_or_none(request)
    if ticket is None:
        return _not_found()
    try:
        page = max(1, int(request.query_params.get("page", "1")))
        per_page = min(100, max(1, int(request.query_params.get("per_page", "100"))))
    except ValueError:
        return _error(400, "InvalidPaginationParameter", "page and per_page must be numbers")
    ordered = list(ticket.comments)
    sort_order = request.query_params.get("sort_order", "asc")
    if sort_order == "desc":
        ordered.reverse()
    start = (page - 1) * per_page
    chunk = ordered[start : start + per_page]
    base = _base(request)
    here = f"{base}/api/v2/tickets/{ticket.id}/comments.json"

    def page_url(n: int) -> str:
        return here + "?" + urlencode({"page": n, "per_page": per_page, "sort_order": sort_order})

    return JSONResponse(
        {
            "comments": [c.to_json(base) for c in chunk],
            "next_page": page_url(page + 1) if start + per_page < len(ordered) else None,
            "previous_page": page_url(page - 1) if page > 1 else None,
            "count": len(ordered),
        }
    )


async def download_attachment(request: Request) -> Response:
    state: State = request.app.state.emulator
    attachment = state.attachments_by_token.get(request.path_params["token"])
    if attachment is None:
        return _not_found()
    return Response(
        attachment.data,
        media_type=attachment.content_type,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(attachment.file_name)}"
        },
    )


async def oauth_tokens(request: Request) -> Response:
    state: State = request.app.state.emulator
    try:
        if request.headers.get("content-type", "").startswith("application/json"):
            params = dict(await request.json())
        else:
            params = dict(await request.form())
    except (ValueError, TypeError):
        return JSONResponse({"error": "invalid_request"}, status_code=400)
    if params.get("grant_type") != "client_credentials":
        return JSONResponse(
            {"error": "unsupported_grant_type", "error_description": "grant type not supported"},
            status_code=400,
        )
    client_id = str(params.get("client_id", ""))
    client_secret = str(params.get("client_secret", ""))
    if not (
        secrets.compare_digest(client_id, state.credentials.client_id)
        and secrets.compare_digest(client_secret, state.credentials.client_secret)
    ):
        return JSONResponse(
            {
                "error": "invalid_client",
                "error_description": "Client authentication failed due to unknown client, "
                "no client authentication included, or unsupported authentication method.",
            },
            status_code=401,
        )
    token = "cct_" + secrets.token_hex(16)
    ttl = state.faults.oauth_ttl
    state.issued_oauth[token] = None if ttl is None else time.time() + ttl
    state.oauth_exchanges += 1
    body: dict[str, Any] = {
        "access_token": token,
        "token_type": "bearer",
        "scope": str(params.get("scope") or "read write"),
    }
    if ttl is not None:
        body["expires_in"] = ttl
    return JSONResponse(body)


# -- the control API ---------------------------------------------------------


async def control_create_ticket(request: Request) -> Response:
    state: State = request.app.state.emulator
    data = await request.json()
    ticket_id = int(data["id"])
    requester = state.user_for_email(str(data.get("requester_email") or "customer@example.test"))
    now = time.time()
    ticket = Ticket(
        id=ticket_id,
        subject=str(data.get("subject") or f"Ticket {ticket_id}"),
        status=str(data.get("status") or "open"),
        requester_id=requester,
        created_at=now,
        updated_at=now,
    )
    description = data.get("description", "I need help with a large file.")
    if description:
        ticket.comments.append(Comment(state.next_id(), str(description), True, requester, now, []))
    state.tickets[ticket_id] = ticket
    return JSONResponse({"ticket": ticket.to_json(_base(request))}, status_code=201)


async def control_comments(request: Request) -> Response:
    state: State = request.app.state.emulator
    ticket = state.tickets.get(int(request.path_params["ticket_id"]))
    if ticket is None:
        return _not_found()
    return JSONResponse({"comments": [state.comment_view(c) for c in ticket.comments]})


async def control_expire_uploads(request: Request) -> Response:
    state: State = request.app.state.emulator
    past = time.time() - 1
    for upload in state.uploads.values():
        upload.expires_at = past
    return JSONResponse({"expired": len(state.uploads)})


async def control_revoke_oauth(request: Request) -> Response:
    """Revoke the tokens handed out by /oauth/tokens (the static token stays valid)."""
    state: State = request.app.state.emulator
    revoked = len(state.issued_oauth)
    state.issued_oauth.clear()
    return JSONResponse({"revoked": revoked})


API_ROUTES = [
    Route("/api/v2/users/me{ext:path}", users_me, methods=["GET"]),
    Route("/api/v2/uploads{ext:path}", create_upload, methods=["POST"]),
    Route("/api/v2/tickets/{ticket_id}/comments{ext:path}", list_comments, methods=["GET"]),
    Route("/api/v2/tickets/{ticket_id}", show_ticket, methods=["GET"]),
    Route("/api/v2/tickets/{ticket_id}", update_ticket, methods=["PUT"]),
    Route("/oauth/tokens", oauth_tokens, methods=["POST"]),
    Route("/attachments/token/{token}/", download_attachment, methods=["GET"]),
]

CONTROL_ROUTES = [
    Route("/_emulator/tickets", control_create_ticket, methods=["POST"]),
    Route("/_emulator/tickets/{ticket_id:int}/comments", control_comments, methods=["GET"]),
    Route("/_emulator/expire_uploads", control_expire_uploads, methods=["POST"]),
    Route("/_emulator/revoke_oauth", control_revoke_oauth, methods=["POST"]),
]

# Paths that need no Authorization header (as in Zendesk: the token endpoint
# authenticates by client secret, attachment URLs by their random token).
_PUBLIC_PATHS = ("/oauth/tokens", "/attachments/token/{token}/")


def build(credentials: Credentials, connections: Any = None) -> Any:
    """The emulator app; ``connections`` lists uvicorn's live protocols (for drop mode)."""
    return create_app(
        State(credentials), API_ROUTES, CONTROL_ROUTES,
        public_paths=_PUBLIC_PATHS, connections=connections,
    )  # fmt: skip


def main() -> None:
    raw = os.environ.get("ZENDESK_EMULATOR_CREDENTIALS")
    credentials = Credentials(**json.loads(raw)) if raw else Credentials.generate()
    if not raw:
        print(json.dumps(credentials.__dict__), file=sys.stderr, flush=True)
    serve(lambda connections: build(credentials, connections))


if __name__ == "__main__":
    main()
