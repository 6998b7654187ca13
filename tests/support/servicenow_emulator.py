"""A ServiceNow (Table API + Attachment API) emulator for tests, with its control client.

It follows the shapes ServiceNow documents for the calls the gateway makes:

- Basic auth (user and password) or a Bearer OAuth token; a refusal is 401
  ``{"error": {"message": "User Not Authenticated", "detail"}, "status": "failure"}``.
- ``GET /api/now/table/{table}`` with ``sysparm_query`` (encoded query:
  ``field=value``, ``fieldINa,b``, ``^`` between conditions, ``ORDERBY``/
  ``ORDERBYDESC``), ``sysparm_fields``, ``sysparm_limit`` (default 10000) and
  ``sysparm_offset``: ``{"result": [...]}`` with ``X-Total-Count`` and a
  ``Link`` header (``rel="first"``, ``"prev"``, ``"next"``, ``"last"``).
  Every value is a string, as the Table API returns them.
- ``GET``/``PATCH``/``PUT /api/now/table/{table}/{sys_id}``: one record;
  writing ``work_notes`` or ``comments`` adds a journal entry (a row of
  ``sys_journal_field``) and bumps ``sys_mod_count``. On an inactive (closed)
  record the journal fields are read-only and silently not written, as a
  field ACL does. An unknown record is 404 ``No Record found``.
- ``POST /api/now/attachment/file?table_name=&table_sys_id=&file_name=``: the
  raw body is the file, ``Content-Type`` is mandatory; 201 with the metadata
  (``size_bytes`` as a string) and a ``Location`` header. Missing parameters
  are 400, an unknown record 404, a file over ``com.glide.attachment.max_size``
  (1024 MB unless a test lowers it) is 400.
- ``GET /api/now/attachment`` (metadata, ``sysparm_query``) and
  ``GET /api/now/attachment/{sys_id}/file`` (the bytes).
- A rate-limit rule (when a test sets one) puts ``X-RateLimit-Limit``,
  ``X-RateLimit-Reset`` and ``X-RateLimit-Rule`` on every response; over the
  limit is 429 with ``Retry-After`` and ``{"error": {"message": "Rate limit
  exceeded", "detail"}, "status": "failure"}``.

Run standalone with ``python -m tests.support.servicenow_emulator``; the
accepted credentials come from ``SERVICENOW_EMULATOR_CREDENTIALS`` (JSON with
``user``, ``password``, ``oauth_token``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.emulation import (
    BaseState,
    EmulatorClient,
    authorization,
    create_app,
    credentials_from_env,
    same_secret,
    serve,
    spawn,
)

MB = 1024 * 1024
DEFAULT_LIMIT = 10_000
JOURNAL_FIELDS = ("work_notes", "comments")
USER = "gateway.integration"
NO_RECORD = "Record doesn't exist or ACL restricts the record retrieval"
RATE_RULE = "9c2ef4d9c3f1301086a5f5e4e4013187"  # sys_id of the emulated rate-limit rule


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _sys_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Attachment:
    sys_id: str
    table_name: str
    table_sys_id: str
    file_name: str
    content_type: str
    data: bytes
    created: float
    after: int  # journal entries the record had when this was uploaded

    def to_json(self, base: str) -> dict[str, str]:
        return {
            "sys_id": self.sys_id,
            "table_name": self.table_name,
            "table_sys_id": self.table_sys_id,
            "file_name": self.file_name,
            "content_type": self.content_type,
            "size_bytes": str(len(self.data)),
            "size_compressed": "",
            "compressed": "false",
            "download_link": f"{base}/api/now/attachment/{self.sys_id}/file",
            "image_height": "",
            "image_width": "",
            "average_image_color": "",
            "sys_tags": "",
            "sys_mod_count": "0",
            "sys_created_by": USER,
            "sys_updated_by": USER,
            "sys_created_on": _when(self.created),
            "sys_updated_on": _when(self.created),
        }


@dataclass
class Journal:
    sys_id: str
    name: str  # the table
    element: str
    element_id: str
    value: str
    created: float
    seq: int

    def to_json(self) -> dict[str, str]:
        return {
            "sys_id": self.sys_id,
            "name": self.name,
            "element": self.element,
            "element_id": self.element_id,
            "value": self.value,
            "sys_created_on": _when(self.created),
            "sys_created_by": USER,
        }


@dataclass
class Row:
    """A record of a table: string fields, plus the journal kept apart."""

    fields: dict[str, str]
    journal: list[Journal] = field(default_factory=list)

    def to_json(self) -> dict[str, str]:
        return {**self.fields, "work_notes": "", "comments": ""}


def _parse_query(text: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, bool]]] | None:
    """An encoded query as (field, op, value) conditions and (field, descending) orders."""
    conditions: list[tuple[str, str, str]] = []
    orders: list[tuple[str, bool]] = []
    for part in filter(None, text.split("^")):
        if part.startswith("ORDERBYDESC"):
            orders.append((part[len("ORDERBYDESC") :], True))
        elif part.startswith("ORDERBY"):
            orders.append((part[len("ORDERBY") :], False))
        elif "IN" in part and "=" not in part.split("IN", 1)[0] and "=" not in part:
            name, values = part.split("IN", 1)
            conditions.append((name, "IN", values))
        elif "!=" in part:
            name, value = part.split("!=", 1)
            conditions.append((name, "!=", value))
        elif "=" in part:
            name, value = part.split("=", 1)
            conditions.append((name, "=", value))
        else:
            return None
    return conditions, orders


def _matches(row: dict[str, str], conditions: list[tuple[str, str, str]]) -> bool:
    for name, op, value in conditions:
        have = row.get(name)
        if have is None:
            return False
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op == "IN" and have not in value.split(","):
            return False
    return True


class State(BaseState):
    def __init__(self, credentials: dict[str, str]) -> None:
        self.credentials = credentials
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.tables: dict[str, dict[str, Row]] = {"incident": {}}
        self.attachments: dict[str, Attachment] = {}
        self.max_size = 1024 * MB
        self._numbers = itertools.count(10001)
        self._seq = itertools.count()

    def authenticate(self, header: str | None) -> bool:
        found = authorization(header)
        if found is None:
            return False
        scheme, value = found
        if scheme == "bearer":
            return same_secret(value, self.credentials["oauth_token"])
        expected = f"{self.credentials['user']}:{self.credentials['password']}"
        return scheme == "basic" and same_secret(value, expected)

    def error(self, status: int, message: str, detail: str = "") -> Response:
        if status == 401:
            message, detail = "User Not Authenticated", "Required to provide Auth information"
        elif status == 429:
            limit = self.faults.rate_limit or 0
            message = "Rate limit exceeded"
            detail = f"Rate limit of {limit} requests per hour for Table API exceeded"
        elif status == 403:
            message = "Operation Failed"
            detail = "ACL Exception Update Failed due to security constraints"
        response = JSONResponse(
            {"error": {"message": message, "detail": detail or None}, "status": "failure"},
            status_code=status,
        )
        return response

    def rate_headers(self) -> dict[str, str]:
        """On every request a rate-limit rule matches (none unless a test sets one)."""
        if self.faults.rate_limit is None:
            return {}
        return {
            "X-RateLimit-Limit": str(self.faults.rate_limit),
            "X-RateLimit-Reset": str(int(time.time() + self.faults.rate_window)),
            "X-RateLimit-Rule": RATE_RULE,
        }

    def journal_rows(self) -> list[Journal]:
        return [j for table in self.tables.values() for row in table.values() for j in row.journal]

    def snapshot(self, base: str) -> dict[str, Any]:
        return {
            **super().snapshot(base),
            "tables": {
                name: {sys_id: row.to_json() for sys_id, row in rows.items()}
                for name, rows in self.tables.items()
            },
            "journal": [j.to_json() for j in self.journal_rows()],
            "attachments": [a.to_json(base) for a in self.attachments.values()],
        }


def _error(status: int, message: str, detail: str = "") -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "detail": detail or None}, "status": "failure"},
        status_code=status,
    )


def _no_record() -> JSONResponse:
    return _error(
        404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
    )


def _state(request: Request) -> State:
    state: State = request.app.state.emulator
    return state


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _select(row: dict[str, str], fields: str | None) -> dict[str, str]:
    if not fields:
        return row
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    return {f: row[f] for f in wanted if f in row}


def _int_param(request: Request, name: str, default: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    return int(raw) if raw.isdigit() else None


# -- the Table API -------------------------------------------------------------------------


async def table_list(request: Request) -> Response:
    state = _state(request)
    table = request.path_params["table"]
    if table == "sys_journal_field":
        rows = [(j.to_json(), j.seq) for j in state.journal_rows()]
    elif table in state.tables:
        rows = [(row.to_json(), i) for i, row in enumerate(state.tables[table].values())]
    else:
        return _error(400, "Invalid table", f"Invalid table {table}")
    parsed = _parse_query(request.query_params.get("sysparm_query", ""))
    limit = _int_param(request, "sysparm_limit", DEFAULT_LIMIT)
    offset = _int_param(request, "sysparm_offset", 0)
    if limit is None or offset is None:
        return _error(400, "Invalid parameter", "sysparm_limit and sysparm_offset are numbers")
    if parsed is None:
        # An invalid query answers no rows (glide.invalid_query.returns_no_rows).
        rows, orders = [], []
    else:
        conditions, orders = parsed
        rows = [(r, seq) for r, seq in rows if _matches(r, conditions)]
    for name, descending in reversed(orders):
        rows.sort(key=lambda item, n=name: (item[0].get(n, ""), item[1]), reverse=descending)
    total = len(rows)
    page = rows[offset : offset + limit]
    fields = request.query_params.get("sysparm_fields")
    headers = {"X-Total-Count": str(total)}
    here = f"{_base(request)}/api/now/table/{table}"
    params = {k: v for k, v in request.query_params.items() if k != "sysparm_offset"}

    def link(at: int, rel: str) -> str:
        return f'<{here}?{urlencode({**params, "sysparm_offset": at})}>;rel="{rel}"'

    links = [link(0, "first")]
    if offset > 0:
        links.append(link(max(0, offset - limit), "prev"))
    if offset + limit < total:
        links.append(link(offset + limit, "next"))
    links.append(link(max(0, (total - 1) // max(1, limit) * limit), "last"))
    headers["Link"] = ",".join(links)
    return JSONResponse({"result": [_select(r, fields) for r, _ in page]}, headers=headers)


def _row(request: Request) -> Row | None:
    rows = _state(request).tables.get(request.path_params["table"])
    return None if rows is None else rows.get(request.path_params["sys_id"])


async def table_get(request: Request) -> Response:
    row = _row(request)
    if row is None:
        return _no_record()
    return JSONResponse(
        {"result": _select(row.to_json(), request.query_params.get("sysparm_fields"))}
    )


async def table_update(request: Request) -> Response:
    state = _state(request)
    row = _row(request)
    if row is None:
        return _no_record()
    try:
        data = await request.json()
    except ValueError:
        return _error(400, "Exception while reading request", "The payload is not valid JSON.")
    if not isinstance(data, dict):
        return _error(400, "Exception while reading request", "The payload is not a JSON object.")
    changed = False
    active = row.fields.get("active") != "false"
    for name, value in data.items():
        text = "" if value is None else str(value)
        if name in JOURNAL_FIELDS:
            if not active or not text:
                continue  # read-only on a closed record: dropped without an error
            row.journal.append(
                Journal(
                    sys_id=_sys_id(),
                    name=request.path_params["table"],
                    element=name,
                    element_id=row.fields["sys_id"],
                    value=text,
                    created=time.time(),
                    seq=next(state._seq),
                )
            )
            changed = True
        elif name.startswith("sys_"):
            continue
        elif row.fields.get(name) != text:
            row.fields[name] = text
            changed = True
    if changed:
        row.fields["sys_mod_count"] = str(int(row.fields["sys_mod_count"]) + 1)
        row.fields["sys_updated_on"] = _when(time.time())
    return JSONResponse(
        {"result": _select(row.to_json(), request.query_params.get("sysparm_fields"))}
    )


# -- the Attachment API ---------------------------------------------------------------------


async def attachment_upload(request: Request) -> Response:
    state = _state(request)
    params = request.query_params
    for name in ("table_name", "table_sys_id", "file_name"):
        if not params.get(name):
            await request.body()
            return _error(400, f"Missing parameter: {name}", "")
    content_type = request.headers.get("content-type")
    if not content_type:
        await request.body()
        return _error(400, "Content-Type header is mandatory to post file attachments", "")
    rows = state.tables.get(params["table_name"])
    row = rows.get(params["table_sys_id"]) if rows is not None else None
    if row is None:
        await request.body()
        return _error(404, "Invalid table name or sys_id", NO_RECORD)
    too_large = (
        "Failed to create the attachment. File size exceeds the limit of "
        f"{state.max_size} bytes (com.glide.attachment.max_size)"
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > state.max_size:
        await request.body()
        return _error(400, too_large)
    data = await request.body()
    if len(data) > state.max_size:
        return _error(400, too_large)
    attachment = Attachment(
        sys_id=_sys_id(),
        table_name=params["table_name"],
        table_sys_id=params["table_sys_id"],
        file_name=params["file_name"],
        content_type=content_type,
        data=data,
        created=time.time(),
        after=len(row.journal),
    )
    state.attachments[attachment.sys_id] = attachment
    base = _base(request)
    return JSONResponse(
        {"result": attachment.to_json(base)},
        status_code=201,
        headers={"Location": f"{base}/api/now/attachment/{attachment.sys_id}"},
    )


async def attachment_list(request: Request) -> Response:
    state = _state(request)
    parsed = _parse_query(request.query_params.get("sysparm_query", ""))
    base = _base(request)
    rows = [a.to_json(base) for a in state.attachments.values()]
    rows = [r for r in rows if parsed is not None and _matches(r, parsed[0])]
    return JSONResponse({"result": rows})


async def attachment_file(request: Request) -> Response:
    attachment = _state(request).attachments.get(request.path_params["sys_id"])
    if attachment is None:
        return _no_record()
    return Response(attachment.data, media_type=attachment.content_type)


# -- the control API -------------------------------------------------------------------------


async def control_create_ticket(request: Request) -> Response:
    state = _state(request)
    data = await request.json()
    table = str(data.get("table") or "incident")
    now = _when(time.time())
    sys_id = _sys_id()
    number = str(data.get("number") or f"INC{next(state._numbers):07d}")
    state.tables.setdefault(table, {})[sys_id] = Row(
        {
            "sys_id": sys_id,
            "number": number,
            "short_description": str(data.get("short_description") or "Needs a large file"),
            "state": "1",
            "active": "true",
            "sys_mod_count": "0",
            "sys_created_on": now,
            "sys_updated_on": now,
        }
    )
    return JSONResponse({"result": state.tables[table][sys_id].to_json()}, status_code=201)


def _by_number(state: State, number: str) -> tuple[str, Row] | None:
    for table, rows in state.tables.items():
        for row in rows.values():
            if row.fields["number"] == number:
                return table, row
    return None


async def control_ticket_change(request: Request) -> Response:
    """``{"deleted": true}``, or ``{"active": false}`` (closes it: state 7)."""
    state = _state(request)
    found = _by_number(state, request.path_params["number"])
    if found is None:
        return JSONResponse({"error": "no such record"}, status_code=404)
    table, row = found
    data = await request.json()
    if data.get("deleted"):
        del state.tables[table][row.fields["sys_id"]]
        return JSONResponse({"deleted": True})
    if "active" in data:
        row.fields["active"] = "true" if data["active"] else "false"
        row.fields["state"] = "1" if data["active"] else "7"
    if "max_size" in data:
        state.max_size = int(data["max_size"])
    return JSONResponse({"result": row.to_json()})


async def control_limits(request: Request) -> Response:
    data = await request.json()
    _state(request).max_size = int(data["max_size"])
    return JSONResponse({"ok": True})


async def control_comments(request: Request) -> Response:
    state = _state(request)
    found = _by_number(state, request.path_params["number"])
    if found is None:
        return JSONResponse({"error": "no such record"}, status_code=404)
    _table, row = found
    mine = [a for a in state.attachments.values() if a.table_sys_id == row.fields["sys_id"]]
    comments = []
    for index, entry in enumerate(row.journal):
        comments.append(
            {
                "body": entry.value,
                "public": entry.element == "comments",
                "attachments": [
                    {
                        "file_name": a.file_name,
                        "size": len(a.data),
                        "sha256": hashlib.sha256(a.data).hexdigest(),
                    }
                    for a in mine
                    if a.after == index
                ],
            }
        )
    return JSONResponse({"comments": comments, "attachments": len(mine)})


API_ROUTES = [
    Route("/api/now/table/{table}", table_list, methods=["GET"]),
    Route("/api/now/table/{table}/{sys_id}", table_get, methods=["GET"]),
    Route("/api/now/table/{table}/{sys_id}", table_update, methods=["PATCH", "PUT"]),
    Route("/api/now/attachment/file", attachment_upload, methods=["POST"]),
    Route("/api/now/attachment", attachment_list, methods=["GET"]),
    Route("/api/now/attachment/{sys_id}/file", attachment_file, methods=["GET"]),
]

CONTROL_ROUTES = [
    Route("/_emulator/tickets", control_create_ticket, methods=["POST"]),
    Route("/_emulator/tickets/{number}", control_ticket_change, methods=["POST"]),
    Route("/_emulator/tickets/{number}/comments", control_comments, methods=["GET"]),
    Route("/_emulator/limits", control_limits, methods=["POST"]),
]


def build(credentials: dict[str, str], connections: Any = None) -> Any:
    return create_app(State(credentials), API_ROUTES, CONTROL_ROUTES, connections=connections)


# -- the control client --------------------------------------------------------------------


class ServiceNowEmulator(EmulatorClient):
    """A running emulator: the test-side helpdesk Protocol plus ServiceNow extras."""

    name = "servicenow"

    def __init__(self, process: Any, url: str, log_path: Path, credentials: dict[str, str]) -> None:
        super().__init__(process, url, log_path)
        self.credentials = credentials

    def env(self, auth: str = "basic") -> dict[str, str]:
        env = {"GATEWAY_TICKETS": "servicenow", "GATEWAY_SERVICENOW_URL": self.url}
        if auth == "basic":
            env["GATEWAY_SERVICENOW_USER"] = self.credentials["user"]
            env["GATEWAY_SERVICENOW_PASSWORD"] = self.credentials["password"]
        elif auth == "oauth":
            env["GATEWAY_SERVICENOW_OAUTH_TOKEN"] = self.credentials["oauth_token"]
        else:
            raise ValueError(f"unknown auth kind {auth!r}")
        return env

    def settings(self, auth: str = "basic", **overrides: Any) -> Any:
        from gateway.settings import ServiceNowSettings

        fields: dict[str, Any] = {"url": self.url}
        if auth == "basic":
            fields.update(user=self.credentials["user"], password=self.credentials["password"])
        else:
            fields["oauth_token"] = self.credentials["oauth_token"]
        fields.update(overrides)
        return ServiceNowSettings(**fields)

    def create_ticket(self) -> str:
        return str(self._post("tickets")["result"]["number"])

    def record(self, ticket: str) -> dict[str, Any]:
        """The record's fields as the Table API has them (sys_id, active, sys_mod_count…)."""
        for rows in self.state()["tables"].values():
            for row in rows.values():
                if row["number"] == ticket:
                    return dict(row)
        raise KeyError(ticket)

    def delete_ticket(self, ticket: str) -> None:
        self._post(f"tickets/{ticket}", {"deleted": True})

    def close_ticket(self, ticket: str) -> None:
        self._post(f"tickets/{ticket}", {"active": False})

    def set_max_size(self, size: int) -> None:
        """com.glide.attachment.max_size, in bytes."""
        self._post("limits", {"max_size": size})

    def comments(self, ticket: str) -> list[dict[str, Any]]:
        """Journal entries oldest first; each with the files uploaded just before it."""
        return list(self._get(f"tickets/{ticket}/comments")["comments"])

    def attachment_count(self, ticket: str) -> int:
        return int(self._get(f"tickets/{ticket}/comments")["attachments"])


def start_servicenow_emulator(log_dir: Path) -> ServiceNowEmulator:
    credentials = {
        "user": USER,
        "password": secrets.token_urlsafe(16),
        "oauth_token": secrets.token_urlsafe(24),
    }
    process, url, log_path = spawn(
        "tests.support.servicenow_emulator", "servicenow", log_dir,
        {"SERVICENOW_EMULATOR_CREDENTIALS": json.dumps(credentials)},
    )  # fmt: skip
    return ServiceNowEmulator(process, url, log_path, credentials)


@pytest.fixture(scope="session")
def servicenow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceNowEmulator]:
    emulator = start_servicenow_emulator(tmp_path_factory.mktemp("servicenow"))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def servicenow_api(servicenow: ServiceNowEmulator) -> ServiceNowEmulator:
    """The session's emulator, emptied of records and faults for this test."""
    servicenow.reset()
    return servicenow


def main() -> None:
    default = {"user": USER, "password": "password", "oauth_token": "token"}
    credentials = credentials_from_env("SERVICENOW_EMULATOR_CREDENTIALS", default)
    serve(lambda connections: build(credentials, connections))


if __name__ == "__main__":
    main()
