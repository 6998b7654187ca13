"""A Freshdesk API v2 emulator for tests, with its control client.

It follows the shapes Freshdesk documents for the calls the gateway makes:

- Basic auth with the API key as the user name (any password, ``X`` by
  convention); a refusal is 401 ``{"code": "invalid_credentials", "message"}``.
- ``GET /api/v2/agents/me``: the agent behind the key.
- ``POST /api/v2/tickets/{id}/notes``: JSON ``{"body", "private"}`` or
  ``multipart/form-data`` with ``body``, ``private`` and ``attachments[]``;
  201 with the note. ``body`` is HTML and mandatory; attachments of more than
  20 MB together are refused (400, ``errors[].field == "attachments"``).
  Validation failures are 400 ``{"description": "Validation failed",
  "errors": [{"field", "message", "code"}]}``.
- ``GET /api/v2/tickets/{id}/conversations?page=&per_page=``: a JSON list,
  30 a page by default and at most 100 (more is a 400), with a
  ``Link: <...>; rel="next"`` header while more pages follow.
- ``GET /api/v2/tickets/{id}``; a deleted ticket (or an unknown id) is 404.
- Every API response carries ``X-RateLimit-Total``, ``X-RateLimit-Remaining``
  and ``X-RateLimit-Used-CurrentRequest``; over the limit is 429 with
  ``Retry-After``.

Notes are stored with their HTML body and the ``body_text`` Freshdesk derives
from it. Run standalone with ``python -m tests.support.freshdesk_emulator``;
the accepted API key comes from ``FRESHDESK_EMULATOR_API_KEY``.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.emulation import (
    BaseState,
    EmulatorClient,
    authorization,
    create_app,
    same_secret,
    serve,
    spawn,
)

AGENT_ID = 43000001
ATTACHMENTS_LIMIT = 20_000_000  # "The total size of these attachments cannot exceed 20MB"
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
RATE_TOTAL = 700  # what X-RateLimit-Total says when no limit is set for a test
STATUS_OPEN, STATUS_CLOSED = 2, 5


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def body_text(body: str) -> str:
    """The text of an HTML body, as Freshdesk gives it back in ``body_text``."""
    text = re.sub(r"<br\s*/?>", "\n", body, flags=re.IGNORECASE)
    text = re.sub(r"</(p|div)>", "\n", text, flags=re.IGNORECASE)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text).strip()


@dataclass
class Attachment:
    id: int
    name: str
    content_type: str
    data: bytes
    created_at: float

    def to_json(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "content_type": self.content_type,
            "size": len(self.data),
            "attachment_url": f"{base}/_files/{self.id}",
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.created_at),
        }


@dataclass
class Note:
    id: int
    ticket_id: int
    body: str
    private: bool
    incoming: bool
    user_id: int
    created_at: float
    attachments: list[Attachment] = field(default_factory=list)

    def to_json(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "body": self.body,
            "body_text": body_text(self.body),
            "incoming": self.incoming,
            "private": self.private,
            "user_id": self.user_id,
            "support_email": None,
            "source": 2,
            "category": 2,
            "ticket_id": self.ticket_id,
            "to_emails": [],
            "from_email": None,
            "cc_emails": [],
            "bcc_emails": [],
            "attachments": [a.to_json(base) for a in self.attachments],
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.created_at),
        }


@dataclass
class Ticket:
    id: int
    subject: str
    status: int
    created_at: float
    deleted: bool = False
    notes: list[Note] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "status": self.status,
            "priority": 1,
            "source": 2,
            "requester_id": AGENT_ID + 1,
            "deleted": self.deleted,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.created_at),
        }


class State(BaseState):
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.tickets: dict[int, Ticket] = {}
        self.files: dict[int, Attachment] = {}
        self._ids = itertools.count(1000)
        self._ticket_ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def authenticate(self, header: str | None) -> bool:
        found = authorization(header)
        if found is None or found[0] != "basic":
            return False
        user, _, _password = found[1].partition(":")
        return same_secret(user, self.api_key)

    def error(self, status: int, message: str, detail: str = "") -> Response:
        if status == 401:
            body: dict[str, Any] = {
                "code": "invalid_credentials",
                "message": "You have to be logged in to perform this action.",
            }
        elif status == 403:
            body = {
                "code": "access_denied",
                "message": "You are not authorized to perform this action.",
            }
        elif status == 404:
            return Response(status_code=404)
        elif status == 429:
            body = {"message": "You have exceeded the limit of requests per minute"}
        else:
            body = {"description": message, "errors": [{"message": detail or message}]}
        return JSONResponse(body, status_code=status)

    def rate_headers(self) -> dict[str, str]:
        total = self.faults.rate_limit or RATE_TOTAL
        used = len(self.window) if self.faults.rate_limit else 0
        return {
            "X-RateLimit-Total": str(total),
            "X-RateLimit-Remaining": str(max(0, total - used)),
            "X-RateLimit-Used-CurrentRequest": "1",
        }

    def snapshot(self, base: str) -> dict[str, Any]:
        return {
            **super().snapshot(base),
            "tickets": {
                str(t.id): {**t.to_json(), "notes": [n.to_json(base) for n in t.notes]}
                for t in self.tickets.values()
            },
        }


def _validation(*errors: tuple[str, str, str]) -> JSONResponse:
    return JSONResponse(
        {
            "description": "Validation failed",
            "errors": [{"field": f, "message": m, "code": c} for f, m, c in errors],
        },
        status_code=400,
    )


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _ticket(request: Request) -> Ticket | None:
    state: State = request.app.state.emulator
    raw = str(request.path_params["ticket_id"])
    ticket = state.tickets.get(int(raw)) if raw.isdigit() else None
    return None if ticket is None or ticket.deleted else ticket


# -- the Freshdesk API ------------------------------------------------------------------


async def agents_me(request: Request) -> Response:
    return JSONResponse(
        {
            "id": AGENT_ID,
            "available": True,
            "occasional": False,
            "ticket_scope": 1,
            "contact": {"name": "Upload Gateway", "email": "gateway@example.test", "active": True},
            "created_at": _iso(0),
            "updated_at": _iso(0),
        }
    )


async def show_ticket(request: Request) -> Response:
    ticket = _ticket(request)
    if ticket is None:
        return Response(status_code=404)
    return JSONResponse(ticket.to_json())


def _truthy(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


async def create_note(request: Request) -> Response:
    state: State = request.app.state.emulator
    ticket = _ticket(request)
    if ticket is None:
        return Response(status_code=404)
    content_type = request.headers.get("content-type", "")
    attachments: list[Attachment] = []
    now = time.time()
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=100, max_fields=100)
        body = form.get("body")
        private_raw: Any = form.get("private", "true")
        for item in form.getlist("attachments[]"):
            if not isinstance(item, UploadFile):
                said = "It should contain elements of type valid file format only"
                return _validation(("attachments", said, "datatype_mismatch"))
            attachments.append(
                Attachment(
                    id=state.next_id(),
                    name=item.filename or "attachment",
                    content_type=item.content_type or "application/octet-stream",
                    data=await item.read(),
                    created_at=now,
                )
            )
        unknown = [k for k in form if k not in ("body", "private", "attachments[]", "incoming")]
    elif content_type.startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            return JSONResponse(
                {"code": "invalid_json", "message": "Request body has invalid json format"},
                status_code=400,
            )
        if not isinstance(data, dict):
            return JSONResponse(
                {"code": "invalid_json", "message": "Request body has invalid json format"},
                status_code=400,
            )
        body = data.get("body")
        private_raw = data.get("private", True)
        unknown = [k for k in data if k not in ("body", "private", "incoming", "notify_emails")]
    else:
        return JSONResponse(
            {
                "code": "invalid_content_type",
                "message": f"Content-Type header is set to {content_type}. "
                "It should be set to application/json",
            },
            status_code=415,
        )
    if unknown:
        said = "Unexpected/invalid field in request"
        return _validation(*[(k, said, "invalid_field") for k in unknown])
    if not isinstance(body, str) or not body.strip():
        return _validation(("body", "It should be a/an String", "missing_field"))
    private = _truthy(private_raw)
    if private is None:
        return _validation(("private", "It should be a boolean value", "datatype_mismatch"))
    total = sum(len(a.data) for a in attachments)
    if total > ATTACHMENTS_LIMIT:
        return _validation(
            ("attachments", "The cumulative attachment size cannot exceed 20 MB", "invalid_size")
        )
    note = Note(
        id=state.next_id(),
        ticket_id=ticket.id,
        body=body,
        private=private,
        incoming=False,
        user_id=AGENT_ID,
        created_at=now,
        attachments=attachments,
    )
    for attachment in attachments:
        state.files[attachment.id] = attachment
    ticket.notes.append(note)
    return JSONResponse(note.to_json(_base(request)), status_code=201)


def _page_args(request: Request) -> tuple[int, int] | JSONResponse:
    errors = []
    values = {}
    for name, default, top in (("page", 1, None), ("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)):
        raw = request.query_params.get(name, str(default))
        if not raw.isdigit() or int(raw) < 1 or (top is not None and int(raw) > top):
            limit = f" less than or equal to {top}" if top else ""
            errors.append((name, f"It should be a Positive Integer{limit}", "invalid_value"))
        else:
            values[name] = int(raw)
    if errors:
        return _validation(*errors)
    return values["page"], values["per_page"]


async def list_conversations(request: Request) -> Response:
    ticket = _ticket(request)
    if ticket is None:
        return Response(status_code=404)
    args = _page_args(request)
    if isinstance(args, JSONResponse):
        return args
    page, per_page = args
    start = (page - 1) * per_page
    chunk = ticket.notes[start : start + per_page]
    headers = {}
    if start + per_page < len(ticket.notes):
        here = f"{_base(request)}/api/v2/tickets/{ticket.id}/conversations"
        query = urlencode({"page": page + 1, "per_page": per_page})
        headers["Link"] = f'<{here}?{query}>; rel="next"'
    return JSONResponse([n.to_json(_base(request)) for n in chunk], headers=headers)


async def download(request: Request) -> Response:
    state: State = request.app.state.emulator
    attachment = state.files.get(int(request.path_params["file_id"]))
    if attachment is None:
        return Response(status_code=404)
    return Response(attachment.data, media_type=attachment.content_type)


# -- the control API --------------------------------------------------------------------


async def control_create_ticket(request: Request) -> Response:
    state: State = request.app.state.emulator
    data = await request.json()
    ticket_id = int(data.get("id") or next(state._ticket_ids))
    state.tickets[ticket_id] = Ticket(
        id=ticket_id,
        subject=str(data.get("subject") or f"Ticket {ticket_id}"),
        status=int(data.get("status") or STATUS_OPEN),
        created_at=time.time(),
    )
    return JSONResponse(state.tickets[ticket_id].to_json(), status_code=201)


async def control_ticket_change(request: Request) -> Response:
    """``{"deleted": bool}`` and/or ``{"status": int}`` on an existing ticket."""
    state: State = request.app.state.emulator
    ticket = state.tickets.get(int(request.path_params["ticket_id"]))
    if ticket is None:
        return JSONResponse({"error": "no such ticket"}, status_code=404)
    data = await request.json()
    if "deleted" in data:
        ticket.deleted = bool(data["deleted"])
    if "status" in data:
        ticket.status = int(data["status"])
    return JSONResponse(ticket.to_json())


async def control_comments(request: Request) -> Response:
    state: State = request.app.state.emulator
    ticket = state.tickets.get(int(request.path_params["ticket_id"]))
    if ticket is None:
        return JSONResponse({"error": "no such ticket"}, status_code=404)
    return JSONResponse(
        {
            "comments": [
                {
                    "body": body_text(n.body),
                    "public": not n.private,
                    "attachments": [
                        {
                            "file_name": a.name,
                            "size": len(a.data),
                            "sha256": hashlib.sha256(a.data).hexdigest(),
                        }
                        for a in n.attachments
                    ],
                }
                for n in ticket.notes
            ]
        }
    )


API_ROUTES = [
    Route("/api/v2/agents/me", agents_me, methods=["GET"]),
    Route("/api/v2/tickets/{ticket_id}", show_ticket, methods=["GET"]),
    Route("/api/v2/tickets/{ticket_id}/notes", create_note, methods=["POST"]),
    Route("/api/v2/tickets/{ticket_id}/conversations", list_conversations, methods=["GET"]),
    Route("/_files/{file_id:int}", download, methods=["GET"]),
]

CONTROL_ROUTES = [
    Route("/_emulator/tickets", control_create_ticket, methods=["POST"]),
    Route("/_emulator/tickets/{ticket_id:int}", control_ticket_change, methods=["POST"]),
    Route("/_emulator/tickets/{ticket_id:int}/comments", control_comments, methods=["GET"]),
]


def build(api_key: str, connections: Any = None) -> Any:
    return create_app(
        State(api_key), API_ROUTES, CONTROL_ROUTES,
        public_paths=("/_files/{file_id:int}",), connections=connections,
    )  # fmt: skip


# -- the control client -------------------------------------------------------------------


class FreshdeskEmulator(EmulatorClient):
    """A running emulator: the test-side helpdesk Protocol plus Freshdesk extras."""

    name = "freshdesk"

    def __init__(self, process: Any, url: str, log_path: Path, api_key: str) -> None:
        super().__init__(process, url, log_path)
        self.api_key = api_key

    def env(self) -> dict[str, str]:
        return {
            "GATEWAY_TICKETS": "freshdesk",
            "GATEWAY_FRESHDESK_URL": self.url,
            "GATEWAY_FRESHDESK_API_KEY": self.api_key,
        }

    def settings(self, **overrides: Any) -> Any:
        from gateway.settings import FreshdeskSettings

        return FreshdeskSettings(**{"url": self.url, "api_key": self.api_key, **overrides})

    def create_ticket(self) -> str:
        return str(self._post("tickets")["id"])

    def delete_ticket(self, ticket: str) -> None:
        self._post(f"tickets/{int(ticket)}", {"deleted": True})

    def close_ticket(self, ticket: str) -> None:
        self._post(f"tickets/{int(ticket)}", {"status": STATUS_CLOSED})

    def comments(self, ticket: str) -> list[dict[str, Any]]:
        return list(self._get(f"tickets/{int(ticket)}/comments")["comments"])


def start_freshdesk_emulator(log_dir: Path) -> FreshdeskEmulator:
    api_key = secrets.token_urlsafe(20)
    process, url, log_path = spawn(
        "tests.support.freshdesk_emulator", "freshdesk", log_dir,
        {"FRESHDESK_EMULATOR_API_KEY": api_key},
    )  # fmt: skip
    return FreshdeskEmulator(process, url, log_path, api_key)


@pytest.fixture(scope="session")
def freshdesk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshdeskEmulator]:
    emulator = start_freshdesk_emulator(tmp_path_factory.mktemp("freshdesk"))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def freshdesk_api(freshdesk: FreshdeskEmulator) -> FreshdeskEmulator:
    """The session's emulator, emptied of tickets and faults for this test."""
    freshdesk.reset()
    return freshdesk


def main() -> None:
    import os

    api_key = os.environ.get("FRESHDESK_EMULATOR_API_KEY") or "test-api-key"
    serve(lambda connections: build(api_key, connections))


if __name__ == "__main__":
    main()
