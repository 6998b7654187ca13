"""Delivery to Freshdesk and to ServiceNow end to end: a gateway process, the emulator, the bytes.

Each test runs once per system against the session's emulator of it (the
test-side helpdesk Protocol: ``env``, ``create_ticket``, ``comments``,
``outage``…), with a real ``python -m gateway serve`` on the file store.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.delivery.conftest import MARKER, MiB, all_delivered, receipts, upload, wait_until
from tests.delivery.proxy import HoldingProxy
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway

LINK_IN_COMMENT = re.compile(r"Download: (\S+) \(expires ")


@pytest.fixture(params=["freshdesk", "servicenow"])
def helpdesk(request: pytest.FixtureRequest) -> Any:
    """The session's emulator of each system, reset for the test."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def gateway(tmp_path: Path, helpdesk: Any) -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def make(**extra: str) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(started)}"
        proc = start_gateway(workdir, gateway_env(workdir, **{**helpdesk.env(), **extra}))
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()


def markers(helpdesk: Any, ticket: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for comment in helpdesk.comments(ticket):
        counts.update(MARKER.findall(comment["body"]))
    return counts


def test_small_file_as_attachment_and_large_file_as_link_each_in_one_comment(
    gateway: Any, helpdesk: Any
) -> None:
    ticket = helpdesk.create_ticket()
    gw = gateway(GATEWAY_ATTACHMENT_MAX="1MiB")
    link = gw.link(ticket)
    small_data, large_data = os.urandom(200_000), os.urandom(MiB + 1)
    small = upload(link, "small log.txt", small_data)
    wait_until(lambda: all_delivered(link, 1), "the small file to be delivered")
    large = upload(link, "core.dump", large_data)
    assert (small["route"], large["route"]) == ("attachment", "storage")
    wait_until(lambda: all_delivered(link, 2), "the large file to be delivered")

    assert markers(helpdesk, ticket) == {small["file_id"]: 1, large["file_id"]: 1}
    comments = [c for c in helpdesk.comments(ticket) if MARKER.search(c["body"])]
    assert all(c["public"] is False for c in comments)
    [with_file] = [c for c in comments if small["file_id"] in c["body"]]
    assert with_file["attachments"] == [
        {
            "file_name": "small log.txt",
            "size": len(small_data),
            "sha256": hashlib.sha256(small_data).hexdigest(),
        }
    ]
    [with_link] = [c for c in comments if large["file_id"] in c["body"]]
    assert with_link["attachments"] == [] and large["sha256"] in with_link["body"]
    match = LINK_IN_COMMENT.search(with_link["body"])
    assert match, with_link["body"]
    got = httpx.get(match.group(1), timeout=60.0)
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(large_data).hexdigest()


def test_an_outage_that_ends_delivers_exactly_once(gateway: Any, helpdesk: Any) -> None:
    ticket = helpdesk.create_ticket()
    gw = gateway()
    link = gw.link(ticket)
    helpdesk.outage("503", retry_after=1)
    receipt = upload(link, "during.txt", b"written while the helpdesk was down\n")
    wait_until(
        lambda: (
            receipts(link)[receipt["file_id"]]
            .get("status_detail", "")
            .startswith("Delivery will be retried")
        ),
        "the receipt to say the delivery waits",
    )
    helpdesk.outage(None)
    wait_until(lambda: all_delivered(link, 1), "delivery after the outage")
    assert markers(helpdesk, ticket) == {receipt["file_id"]: 1}


def test_a_deleted_ticket_fails_visibly(gateway: Any, helpdesk: Any) -> None:
    ticket = helpdesk.create_ticket()
    helpdesk.delete_ticket(ticket)
    gw = gateway()
    link = gw.link(ticket)
    receipt = upload(link, "orphan.txt", b"nobody to read me\n")
    failed = wait_until(
        lambda: (r := receipts(link)[receipt["file_id"]])["status"] == "failed" and r,
        "the receipt to say failed",
    )
    assert "refused" in failed["status_detail"] and ticket in failed["status_detail"]


def test_readiness_checks_the_credentials(gateway: Any, helpdesk: Any) -> None:
    good = gateway()
    ready = httpx.get(f"{good.url}/readyz", timeout=30.0)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["tickets"] == "ok"

    wrong = (
        {"GATEWAY_FRESHDESK_API_KEY": "not-the-key"}
        if helpdesk.name == "freshdesk"
        else {"GATEWAY_SERVICENOW_PASSWORD": "not-the-password"}
    )
    bad = gateway(**wrong)
    refused = httpx.get(f"{bad.url}/readyz", timeout=30.0)
    assert refused.status_code == 503
    check = refused.json()["checks"]["tickets"]
    assert check.startswith("unauthorized:") and "HTTP 401" in check
    assert "not-the" not in check
    wait_until(
        lambda: "configuration error: " + helpdesk.name in bad.log_tail(200),
        "the start-up line about refused credentials",
    )
    assert "not-the" not in bad.log_tail(500)
    assert "configuration error" not in good.log_tail(500)


def test_start_up_says_when_attachment_max_is_clamped(gateway: Any, helpdesk: Any) -> None:
    limit = {"freshdesk": 20_000_000, "servicenow": 1024**3}[helpdesk.name]
    gw = gateway(GATEWAY_ATTACHMENT_MAX="5GiB")
    assert gw.settings.attachment_max == limit
    wait_until(lambda: "takes attachments of at most" in gw.log_tail(200), "the clamp log line")
    line = next(x for x in gw.log_tail(200).splitlines() if "takes attachments of at most" in x)
    assert "GATEWAY_ATTACHMENT_MAX" in line and f"at most {limit:,} bytes" in line


def test_the_staff_api_can_post_the_link_on_the_ticket(gateway: Any, helpdesk: Any) -> None:
    """What a helpdesk automation calls: the link lands on the ticket for the requester."""
    ticket = helpdesk.create_ticket()
    gw = gateway()
    headers = {"Authorization": f"Bearer {gw.env['GATEWAY_STAFF_TOKEN']}"}
    minted = httpx.post(
        f"{gw.url}/api/links", json={"ticket": ticket, "comment": "public"}, headers=headers
    )
    assert minted.status_code == 201, minted.text
    assert minted.json()["comment"] == "public"
    [comment] = helpdesk.comments(ticket)
    assert comment["public"] is True and minted.json()["url"] in comment["body"]
    assert httpx.get(minted.json()["url"]).status_code == 200  # the upload page

    helpdesk.delete_ticket(ticket)
    refused = httpx.post(
        f"{gw.url}/api/links", json={"ticket": ticket, "comment": "private"}, headers=headers
    )
    assert refused.status_code == 502
    assert refused.json()["error"]["code"] == "tickets_refused"
    bad = httpx.post(
        f"{gw.url}/api/links", json={"ticket": ticket, "comment": "loud"}, headers=headers
    )
    assert bad.status_code == 400 and "'comment'" in bad.json()["error"]["message"]


def test_gateway_link_mints_for_the_systems_ticket_ids(gateway: Any, helpdesk: Any) -> None:
    ticket = helpdesk.create_ticket()  # "1" for Freshdesk, "INC0010001" for ServiceNow
    gw = gateway()
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "link", "--ticket", ticket],
        env=gw.env, cwd=gw.workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip().splitlines()[-1]
    assert url.startswith(gw.url + "/u/")
    receipt = upload(url, "via-cli.txt", b"minted on the command line\n")
    assert receipt["ticket"] == ticket
    wait_until(lambda: all_delivered(url, 1), "delivery through the CLI's link")
    assert markers(helpdesk, ticket) == {receipt["file_id"]: 1}


def test_the_emulator_offers_the_shared_helpdesk_protocol(helpdesk: Any) -> None:
    """What the cross-helpdesk delivery suites rely on, checked by name and signature."""
    assert helpdesk.name in ("freshdesk", "servicenow")
    assert helpdesk.url.startswith("http://127.0.0.1:")
    for method, params in {
        "env": [],
        "reset": [],
        "create_ticket": [],
        "comments": ["ticket"],
        "outage": ["mode", "retry_after"],
        "fail_next": ["status", "count", "path", "method"],
        "stop": [],
    }.items():
        signature = inspect.signature(getattr(helpdesk, method))
        required = [p.name for p in signature.parameters.values() if p.default is p.empty]
        assert [p for p in signature.parameters if p in params] == params, method
        assert set(required) <= set(params), method
    env = helpdesk.env()
    assert env["GATEWAY_TICKETS"] == helpdesk.name
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ticket = helpdesk.create_ticket()
    assert isinstance(ticket, str) and helpdesk.comments(ticket) == []


NOTE_POST = {
    "freshdesk": (
        "POST",
        "/api/v2/tickets/{ticket}/notes",
        "POST /api/v2/tickets/{ticket_id}/notes",
    ),
    "servicenow": ("PATCH", "/api/now/table/incident/", "PATCH /api/now/table/{table}/{sys_id}"),
}


def test_a_crash_after_the_note_was_recorded_does_not_post_it_again(
    gateway: Any, helpdesk: Any
) -> None:
    """SIGKILL the gateway while the helpdesk has the note and the gateway has no answer yet."""
    method, path, endpoint = NOTE_POST[helpdesk.name]
    ticket = helpdesk.create_ticket()
    proxy = HoldingProxy(helpdesk.url).start()
    try:
        url_variable = f"GATEWAY_{helpdesk.name.upper()}_URL"
        gw = gateway(**{url_variable: proxy.url})
        proxy.arm(method, path.format(ticket=ticket))
        link = gw.link(ticket)
        ids = [upload(link, f"f{n}.txt", os.urandom(999 + n))["file_id"] for n in range(2)]

        assert proxy.held.wait(60.0), "the gateway never posted the note"
        assert markers(helpdesk, ticket) == dict.fromkeys(ids, 1)
        assert {r["status"] for r in receipts(link).values()} == {"pending"}
        gw.kill()
        proxy.release()
        gw.start()
        wait_until(lambda: all_delivered(link, 2), "the deliveries to be recorded")
    finally:
        proxy.stop()
    assert markers(helpdesk, ticket) == dict.fromkeys(ids, 1)
    posts = [r for r in helpdesk.state()["requests"] if r["endpoint"] == endpoint]
    assert len(posts) == 1
    [note] = [c for c in helpdesk.comments(ticket) if MARKER.search(c["body"])]
    assert sorted(a["file_name"] for a in note["attachments"]) == ["f0.txt", "f1.txt"]
