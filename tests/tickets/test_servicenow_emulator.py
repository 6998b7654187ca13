"""The ServiceNow emulator against the shapes of the Table API and Attachment API references.

Error bodies (``{"error": {"message", "detail"}, "status": "failure"}``),
string-valued records, encoded queries, paging with sysparm_limit/offset and
the Link header, journal entries in sys_journal_field, the attachment size
cap, 429 with Retry-After.
"""

from __future__ import annotations

import os

import httpx
import pytest

from tests.support.servicenow_emulator import ServiceNowEmulator


def api(emulator: ServiceNowEmulator, auth: str = "basic") -> httpx.Client:
    c = emulator.credentials
    if auth == "basic":
        return httpx.Client(base_url=emulator.url, auth=(c["user"], c["password"]), timeout=60.0)
    headers = {"Authorization": f"Bearer {c['oauth_token']}"}
    return httpx.Client(base_url=emulator.url, headers=headers, timeout=60.0)


@pytest.mark.parametrize("auth", ["basic", "oauth"])
def test_basic_and_bearer_auth_are_accepted(servicenow_api: ServiceNowEmulator, auth: str) -> None:
    number = servicenow_api.create_ticket()
    with api(servicenow_api, auth) as client:
        found = client.get("/api/now/table/incident", params={"sysparm_query": f"number={number}"})
    assert found.status_code == 200
    [row] = found.json()["result"]
    assert row["number"] == number and len(row["sys_id"]) == 32
    assert row["active"] == "true" and row["sys_mod_count"] == "0"  # strings, as the API has them


def test_refused_credentials_get_the_documented_error_body(
    servicenow_api: ServiceNowEmulator,
) -> None:
    for auth in [None, ("admin", "wrong")]:
        refused = httpx.get(f"{servicenow_api.url}/api/now/table/incident", auth=auth)
        assert refused.status_code == 401
        assert refused.json() == {
            "error": {
                "message": "User Not Authenticated",
                "detail": "Required to provide Auth information",
            },
            "status": "failure",
        }


def test_queries_select_fields_and_page_with_limit_offset_and_link(
    servicenow_api: ServiceNowEmulator,
) -> None:
    numbers = [servicenow_api.create_ticket() for _ in range(5)]
    with api(servicenow_api) as client:
        page = client.get(
            "/api/now/table/incident",
            params={"sysparm_limit": "2", "sysparm_offset": "2", "sysparm_fields": "number"},
        )
        assert page.json()["result"] == [{"number": n} for n in numbers[2:4]]
        assert page.headers["X-Total-Count"] == "5"
        assert set(page.links) == {"first", "prev", "next", "last"}
        assert "sysparm_offset=4" in page.links["next"]["url"]
        missing = client.get("/api/now/table/incident", params={"sysparm_query": "number=INC9"})
        assert missing.status_code == 200 and missing.json()["result"] == []
        unknown = client.get("/api/now/table/incident/" + "0" * 32)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "No Record found"
    assert unknown.json()["status"] == "failure"


def test_work_notes_become_journal_entries_unless_the_record_is_closed(
    servicenow_api: ServiceNowEmulator,
) -> None:
    number = servicenow_api.create_ticket()
    sys_id = servicenow_api.record(number)["sys_id"]
    query = f"element_id={sys_id}^elementINwork_notes,comments^ORDERBYDESCsys_created_on"
    with api(servicenow_api) as client:
        for text in ["first note", "second note"]:
            updated = client.patch(f"/api/now/table/incident/{sys_id}", json={"work_notes": text})
            assert updated.status_code == 200
            assert updated.json()["result"]["work_notes"] == ""  # journal fields read back empty
        public = client.patch(f"/api/now/table/incident/{sys_id}", json={"comments": "hello"})
        assert public.json()["result"]["sys_mod_count"] == "3"
        journal = client.get(
            "/api/now/table/sys_journal_field",
            params={"sysparm_query": query, "sysparm_fields": "element,value"},
        )
        assert journal.json()["result"] == [
            {"element": "comments", "value": "hello"},
            {"element": "work_notes", "value": "second note"},
            {"element": "work_notes", "value": "first note"},
        ]
        servicenow_api.close_ticket(number)
        dropped = client.patch(f"/api/now/table/incident/{sys_id}", json={"work_notes": "late"})
    assert dropped.status_code == 200 and dropped.json()["result"]["sys_mod_count"] == "3"
    assert [c["body"] for c in servicenow_api.comments(number)] == [
        "first note",
        "second note",
        "hello",
    ]
    assert [c["public"] for c in servicenow_api.comments(number)] == [False, False, True]


def test_attachments_upload_raw_and_download_identical(servicenow_api: ServiceNowEmulator) -> None:
    number = servicenow_api.create_ticket()
    sys_id = servicenow_api.record(number)["sys_id"]
    data = os.urandom(123_457)
    params = {"table_name": "incident", "table_sys_id": sys_id, "file_name": "trace.log"}
    with api(servicenow_api) as client:
        created = client.post(
            "/api/now/attachment/file",
            params=params,
            content=data,
            headers={"Content-Type": "text/plain"},
        )
        assert created.status_code == 201
        meta = created.json()["result"]
        assert meta["size_bytes"] == str(len(data)) and meta["file_name"] == "trace.log"
        assert created.headers["Location"].endswith(meta["sys_id"])
        assert client.get(meta["download_link"]).content == data
        listed = client.get(
            "/api/now/attachment", params={"sysparm_query": f"table_sys_id={sys_id}"}
        )
        assert [a["sys_id"] for a in listed.json()["result"]] == [meta["sys_id"]]
        missing = client.post(
            "/api/now/attachment/file",
            params={"table_name": "incident", "table_sys_id": sys_id},
            content=b"x",
            headers={"Content-Type": "text/plain"},
        )
        assert missing.status_code == 400
        nowhere = client.post(
            "/api/now/attachment/file",
            params={**params, "table_sys_id": "0" * 32},
            content=b"x",
            headers={"Content-Type": "text/plain"},
        )
        assert nowhere.status_code == 404 and nowhere.json()["status"] == "failure"
        servicenow_api.set_max_size(1000)
        too_big = client.post(
            "/api/now/attachment/file",
            params=params,
            content=b"y" * 1001,
            headers={"Content-Type": "application/octet-stream"},
        )
    assert too_big.status_code == 400 and "max_size" in too_big.json()["error"]["message"]
    assert servicenow_api.attachment_count(number) == 1


def test_rate_limit_and_outage_carry_retry_after(servicenow_api: ServiceNowEmulator) -> None:
    servicenow_api.set_rate_limit(1, window=30)
    with api(servicenow_api) as client:
        assert client.get("/api/now/table/incident").status_code == 200
        limited = client.get("/api/now/table/incident")
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 30
        assert limited.headers["X-RateLimit-Limit"] == "1"
        assert limited.headers["X-RateLimit-Rule"]
        assert limited.json() == {
            "error": {
                "message": "Rate limit exceeded",
                "detail": "Rate limit of 1 requests per hour for Table API exceeded",
            },
            "status": "failure",
        }
        servicenow_api.set_rate_limit(None)
        servicenow_api.outage("503", retry_after=4)
        down = client.get("/api/now/table/incident")
        assert (down.status_code, down.headers["Retry-After"]) == (503, "4")
        servicenow_api.outage(None)
        servicenow_api.fail_next(403, path="/api/now/table/incident", method="PATCH")
        number = servicenow_api.create_ticket()
        sys_id = servicenow_api.record(number)["sys_id"]
        denied = client.patch(f"/api/now/table/incident/{sys_id}", json={"work_notes": "x"})
    assert denied.status_code == 403
    assert denied.json()["error"]["message"] == "Operation Failed"
