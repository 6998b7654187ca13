"""The Jira Service Management emulator answers as the Cloud REST reference says.

Plain httpx against the running emulator, no gateway code: if these shapes
drift from the vendor's, the client tests prove nothing.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.support.helpdesk import HelpdeskEmulator
from tests.support.jira import JiraEmulator

API = "/rest/servicedeskapi"


@pytest.fixture
def api(jira_api: JiraEmulator) -> Iterator[httpx.Client]:
    c = jira_api.credentials
    token = base64.b64encode(f"{c.email}:{c.api_token}".encode()).decode()
    with httpx.Client(
        base_url=jira_api.url, headers={"Authorization": f"Basic {token}"}, timeout=30.0
    ) as client:
        yield client


def temporary(api: httpx.Client, desk: str, name: str, data: bytes) -> httpx.Response:
    return api.post(
        f"{API}/servicedesk/{desk}/attachTemporaryFile",
        headers={"X-Atlassian-Token": "no-check"},
        files={"file": (name, data, "text/plain")},
    )


def test_implements_the_helpdesk_seam(jira_api: JiraEmulator) -> None:
    assert isinstance(jira_api, HelpdeskEmulator)
    assert jira_api.env()["GATEWAY_TICKETS"] == "jira"


def test_service_desk_and_auth_errors(jira_api: JiraEmulator, api: httpx.Client) -> None:
    desk = jira_api.credentials.service_desk_id
    ok = api.get(f"{API}/servicedesk/{desk}")
    assert ok.status_code == 200
    body = ok.json()
    assert body["id"] == desk and body["projectKey"] == "SUP" and "self" in body["_links"]
    missing = api.get(f"{API}/servicedesk/999")
    assert missing.status_code == 404 and "errorMessage" in missing.json()
    anonymous = httpx.get(f"{jira_api.url}{API}/servicedesk/{desk}")
    assert anonymous.status_code == 401 and "errorMessage" in anonymous.json()
    wrong = base64.b64encode(f"{jira_api.credentials.email}:nope".encode()).decode()
    refused = httpx.get(
        f"{jira_api.url}{API}/servicedesk/{desk}", headers={"Authorization": f"Basic {wrong}"}
    )
    assert refused.status_code == 401


def test_temporary_file_then_attachment_with_internal_comment(
    jira_api: JiraEmulator, api: httpx.Client
) -> None:
    key = jira_api.create_ticket()
    desk = jira_api.credentials.service_desk_id
    data = os.urandom(5000)
    # Without the XSRF header the upload is blocked.
    blocked = api.post(
        f"{API}/servicedesk/{desk}/attachTemporaryFile", files={"file": ("a.txt", data)}
    )
    assert blocked.status_code == 403
    made = temporary(api, desk, "a.txt", data)
    assert made.status_code == 201
    [item] = made.json()["temporaryAttachments"]
    assert item["fileName"] == "a.txt" and item["temporaryAttachmentId"].startswith("temp")

    attached = api.post(
        f"{API}/request/{key}/attachment",
        json={
            "temporaryAttachmentIds": [item["temporaryAttachmentId"]],
            "public": False,
            "additionalComment": {"body": "see attached"},
        },
    )
    assert attached.status_code == 201
    result = attached.json()
    assert result["comment"]["public"] is False
    assert result["comment"]["body"].startswith("see attached")
    assert "[^a.txt]" in result["comment"]["body"]
    [listed] = result["attachments"]["values"]
    assert listed["filename"] == "a.txt" and listed["size"] == len(data)
    assert result["attachments"]["isLastPage"] is True

    [_, comment] = jira_api.comments(key)
    assert comment["attachments"] == [
        {"file_name": "a.txt", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    ]
    # A temporary attachment is used once.
    again = api.post(
        f"{API}/request/{key}/attachment",
        json={"temporaryAttachmentIds": [item["temporaryAttachmentId"]], "public": False},
    )
    assert again.status_code == 400 and "temporary" in again.json()["errorMessage"]


def test_comments_page_with_start_limit_and_is_last_page(
    jira_api: JiraEmulator, api: httpx.Client
) -> None:
    key = jira_api.create_ticket()  # carries one public comment already
    for n in range(4):
        made = api.post(f"{API}/request/{key}/comment", json={"body": f"n{n}", "public": n % 2})
        assert made.status_code == 201
        assert made.json()["body"] == f"n{n}" and made.json()["id"]
    first = api.get(f"{API}/request/{key}/comment", params={"start": 0, "limit": 2}).json()
    assert (first["start"], first["limit"], first["size"], first["isLastPage"]) == (0, 2, 2, False)
    assert "next" in first["_links"]
    last = api.get(f"{API}/request/{key}/comment", params={"start": 4, "limit": 2}).json()
    assert (last["size"], last["isLastPage"]) == (1, True)
    assert [c["body"] for c in last["values"]] == ["n3"]
    internal = api.get(f"{API}/request/{key}/comment", params={"public": "false"}).json()
    assert [c["body"] for c in internal["values"]] == ["n0", "n2"]
    # The site caps a page, whatever limit asks for.
    jira_api.set_faults(page_limit=3)
    capped = api.get(f"{API}/request/{key}/comment", params={"limit": 100}).json()
    assert (capped["limit"], capped["size"], capped["isLastPage"]) == (3, 3, False)


def test_unknown_closed_and_deleted_requests(jira_api: JiraEmulator, api: httpx.Client) -> None:
    assert api.get(f"{API}/request/SUP-999/comment").status_code == 404
    key = jira_api.create_ticket()
    jira_api.close_ticket(key)
    closed = api.post(f"{API}/request/{key}/comment", json={"body": "x", "public": False})
    assert closed.status_code == 400 and "closed" in closed.json()["errorMessage"]
    jira_api.delete_ticket(key)
    gone = api.post(f"{API}/request/{key}/comment", json={"body": "x", "public": False})
    assert gone.status_code == 404 and "errorMessage" in gone.json()
    empty = api.post(f"{API}/request/{jira_api.create_ticket()}/comment", json={"body": " "})
    assert empty.status_code == 400
    other = jira_api.create_ticket()
    long = api.post(f"{API}/request/{other}/comment", json={"body": "x" * 32_768})
    assert long.status_code == 400 and "32,767" in long.json()["errorMessage"]
    assert api.post(f"{API}/request/{other}/comment", json={"body": "x" * 32_767}).is_success


def test_size_limit_is_413_and_the_site_setting_says_it(
    jira_api: JiraEmulator, api: httpx.Client
) -> None:
    assert api.get("/rest/api/3/attachment/meta").json() == {
        "enabled": True,
        "uploadLimit": 10 * 1024 * 1024,
    }
    jira_api.set_faults(attachment_limit=1000)
    assert api.get("/rest/api/3/attachment/meta").json()["uploadLimit"] == 1000
    desk = jira_api.credentials.service_desk_id
    assert temporary(api, desk, "ok.bin", b"x" * 1000).status_code == 201
    too_big = temporary(api, desk, "big.bin", b"x" * 1001)
    assert too_big.status_code == 413
    assert "1000 bytes" in too_big.json()["errorMessage"]


def test_429_and_503_carry_retry_after(jira_api: JiraEmulator, api: httpx.Client) -> None:
    key = jira_api.create_ticket()
    jira_api.set_faults(write_limit=2, write_window=30)
    for n in range(2):
        assert api.post(f"{API}/request/{key}/comment", json={"body": f"{n}"}).status_code == 201
    limited = api.post(f"{API}/request/{key}/comment", json={"body": "3"})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    assert limited.headers["RateLimit-Reason"] == "jira-per-issue-on-write"
    # Another issue has its own budget.
    other = jira_api.create_ticket()
    assert api.post(f"{API}/request/{other}/comment", json={"body": "x"}).status_code == 201

    jira_api.outage("503", retry_after=7)
    down = api.get(f"{API}/request/{key}/comment")
    assert down.status_code == 503 and down.headers["Retry-After"] == "7"
    jira_api.outage(None)
    jira_api.fail_next(429, count=1, path="/comment", method="GET")
    assert api.get(f"{API}/request/{key}/comment").status_code == 429
    assert api.get(f"{API}/request/{key}/comment").status_code == 200


def test_dropped_connections_get_no_answer(jira_api: JiraEmulator, api: httpx.Client) -> None:
    jira_api.outage("drop")
    with pytest.raises(httpx.TransportError):
        api.get(f"{API}/servicedesk/{jira_api.credentials.service_desk_id}")
    jira_api.outage(None)
    assert jira_api.state()["dropped"] == 1


def test_attachments_turned_off(jira_api: JiraEmulator, api: httpx.Client) -> None:
    jira_api.set_faults(attachments_enabled=False)
    assert api.get("/rest/api/3/attachment/meta").json()["enabled"] is False
    refused = temporary(api, jira_api.credentials.service_desk_id, "a.txt", b"a")
    assert refused.status_code == 403
