"""The Freshdesk emulator against the shapes of Freshdesk's API v2 reference.

Status codes, error bodies, paging with the Link header, Basic auth with the
API key, 429 with Retry-After and the 20 MB attachments limit: the client
tests and the delivery tests are only as good as these.
"""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from tests.support.freshdesk_emulator import FreshdeskEmulator


def api(emulator: FreshdeskEmulator, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, auth=(key or emulator.api_key, "X"), timeout=60.0)


def test_basic_auth_takes_the_api_key_as_user_and_refuses_anything_else(
    freshdesk_api: FreshdeskEmulator,
) -> None:
    with api(freshdesk_api) as client:
        me = client.get("/api/v2/agents/me")
    assert me.status_code == 200 and isinstance(me.json()["id"], int)
    assert "X-RateLimit-Remaining" in me.headers
    for auth in [None, ("wrong-key", "X")]:
        refused = httpx.get(f"{freshdesk_api.url}/api/v2/agents/me", auth=auth)
        assert refused.status_code == 401
        assert refused.json() == {
            "code": "invalid_credentials",
            "message": "You have to be logged in to perform this action.",
        }


def test_a_private_note_with_attachments_is_listed_with_its_text_and_files(
    freshdesk_api: FreshdeskEmulator,
) -> None:
    ticket = freshdesk_api.create_ticket()
    data = os.urandom(70_000)
    with api(freshdesk_api) as client:
        created = client.post(
            f"/api/v2/tickets/{ticket}/notes",
            data={"body": "two &amp; lines<br>[m1]", "private": "true"},
            files=[("attachments[]", ("a.bin", data, "application/octet-stream"))],
        )
        assert created.status_code == 201, created.text
        note = created.json()
        assert note["private"] is True and note["ticket_id"] == int(ticket)
        assert note["attachments"][0]["size"] == len(data)
        json_note = client.post(f"/api/v2/tickets/{ticket}/notes", json={"body": "<p>hi</p>"})
        assert json_note.status_code == 201 and json_note.json()["private"] is True
        listed = client.get(f"/api/v2/tickets/{ticket}/conversations")
        assert listed.status_code == 200
        first = listed.json()[0]
        assert first["body_text"] == "two & lines\n[m1]"
        assert client.get(first["attachments"][0]["attachment_url"]).content == data
    [with_file, plain] = freshdesk_api.comments(ticket)
    assert with_file["public"] is False and plain["body"] == "hi"
    assert with_file["attachments"] == [
        {"file_name": "a.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    ]


def test_validation_errors_name_the_field(freshdesk_api: FreshdeskEmulator) -> None:
    ticket = freshdesk_api.create_ticket()
    with api(freshdesk_api) as client:
        no_body = client.post(f"/api/v2/tickets/{ticket}/notes", json={"private": True})
        too_many = client.get(f"/api/v2/tickets/{ticket}/conversations?per_page=101")
    assert no_body.status_code == 400
    assert no_body.json()["description"] == "Validation failed"
    assert [e["field"] for e in no_body.json()["errors"]] == ["body"]
    assert too_many.status_code == 400
    assert [e["field"] for e in too_many.json()["errors"]] == ["per_page"]


def test_attachments_over_20_mb_together_are_refused(freshdesk_api: FreshdeskEmulator) -> None:
    ticket = freshdesk_api.create_ticket()
    half = b"x" * 10_000_001
    with api(freshdesk_api) as client:
        refused = client.post(
            f"/api/v2/tickets/{ticket}/notes",
            data={"body": "big"},
            files=[("attachments[]", ("a", half)), ("attachments[]", ("b", half))],
        )
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "attachments"
    assert freshdesk_api.comments(ticket) == []


def test_conversations_are_paged_with_a_link_header(freshdesk_api: FreshdeskEmulator) -> None:
    ticket = freshdesk_api.create_ticket()
    with api(freshdesk_api) as client:
        for i in range(35):
            client.post(f"/api/v2/tickets/{ticket}/notes", json={"body": f"n{i}"})
        first = client.get(f"/api/v2/tickets/{ticket}/conversations")
        assert len(first.json()) == 30
        following = first.links["next"]["url"]
        second = client.get(following)
        assert [n["body_text"] for n in second.json()] == [f"n{i}" for i in range(30, 35)]
        assert "link" not in second.headers
        whole = client.get(f"/api/v2/tickets/{ticket}/conversations?per_page=100")
    assert len(whole.json()) == 35 and "link" not in whole.headers


def test_a_deleted_or_unknown_ticket_is_404_and_a_closed_one_takes_notes(
    freshdesk_api: FreshdeskEmulator,
) -> None:
    gone, closed = freshdesk_api.create_ticket(), freshdesk_api.create_ticket()
    freshdesk_api.delete_ticket(gone)
    freshdesk_api.close_ticket(closed)
    with api(freshdesk_api) as client:
        for path in [f"/api/v2/tickets/{gone}", "/api/v2/tickets/999999"]:
            assert client.get(path).status_code == 404
        assert client.post(f"/api/v2/tickets/{gone}/notes", json={"body": "x"}).status_code == 404
        note = client.post(f"/api/v2/tickets/{closed}/notes", json={"body": "x"})
    assert note.status_code == 201


def test_rate_limit_outage_and_injected_failures(freshdesk_api: FreshdeskEmulator) -> None:
    freshdesk_api.set_rate_limit(2, window=60)
    with api(freshdesk_api) as client:
        assert [client.get("/api/v2/agents/me").status_code for _ in range(2)] == [200, 200]
        limited = client.get("/api/v2/agents/me")
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        freshdesk_api.set_rate_limit(None)
        freshdesk_api.outage("503", retry_after=7)
        down = client.get("/api/v2/agents/me")
        assert (down.status_code, down.headers["Retry-After"]) == (503, "7")
        freshdesk_api.outage("drop")
        with pytest.raises(httpx.TransportError):
            client.get("/api/v2/agents/me")
        freshdesk_api.outage(None)
        freshdesk_api.fail_next(500, path="/notes", method="POST")
        ticket = freshdesk_api.create_ticket()
        assert client.post(f"/api/v2/tickets/{ticket}/notes", json={"body": "x"}).status_code == 500
        assert client.post(f"/api/v2/tickets/{ticket}/notes", json={"body": "x"}).status_code == 201
    assert freshdesk_api.state()["dropped"] == 1
