"""EICAR through every upload path is quarantined and never linked; clean files are delivered.

Each test uploads the EICAR test file and a clean file in one batch through
one path (raw PUT, form POST, tus, the browser page) to a real gateway that
scans with a real clamd, then checks what every party sees: the receipt says
quarantined, a download link minted for the file is refused, and the ticket
comment names the signature with neither a link nor an attachment for it,
while the clean file arrives as usual. With the scanner down nothing is
delivered unscanned: delivery waits, ``/readyz`` says why, and a gateway
restarted with a reachable scanner delivers.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from playwright.sync_api import Browser, expect

from gateway.links import Links
from tests.support.clamd import EICAR, EICAR_SIGNATURE, ClamdServer, free_port
from tests.support.gateway import (
    GatewayProcess,
    gateway_env,
    staff_headers,
    start_gateway,
    ticket_comments,
)

MiB = 1024 * 1024
TIMEOUT = 60.0
CLEAN = b"a perfectly ordinary log file\n" * 4000


def put(link: str, files: dict[str, bytes]) -> list[dict[str, Any]]:
    out = []
    for name, data in files.items():
        response = httpx.put(f"{link}/{name}", content=data, timeout=TIMEOUT)
        assert response.status_code == 201, response.text
        out.append(response.json())
    return out


def form(link: str, files: dict[str, bytes]) -> list[dict[str, Any]]:
    response = httpx.post(
        link,
        files=[("file", (name, data, "application/octet-stream")) for name, data in files.items()],
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text
    receipts: list[dict[str, Any]] = response.json()["files"]
    return receipts


def tus(link: str, files: dict[str, bytes]) -> list[dict[str, Any]]:
    """tus 1.0.0 by hand: creation (POST), then the bytes in two PATCHes."""
    out = []
    for name, data in files.items():
        metadata = f"filename {base64.b64encode(name.encode()).decode()}"
        created = httpx.post(
            f"{link}/tus/",
            headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
                     "Upload-Metadata": metadata},
            timeout=TIMEOUT,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        url = httpx.URL(link).join(created.headers["Location"])
        half = len(data) // 2
        for offset, chunk in ((0, data[:half]), (half, data[half:])):
            patched = httpx.patch(
                url,
                content=chunk,
                headers={"Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                         "Content-Type": "application/offset+octet-stream"},
                timeout=TIMEOUT,
            )  # fmt: skip
            assert patched.status_code == 204, patched.text
        out.append(wait_for_receipt(link, name))
    return out


def receipts(link: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{link}/files", timeout=TIMEOUT)
    response.raise_for_status()
    files: list[dict[str, Any]] = response.json()["files"]
    return files


def wait_for_receipt(link: str, name: str, *, settled: bool = False) -> dict[str, Any]:
    """The receipt of ``name``; with ``settled``, once it is no longer pending."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = [r for r in receipts(link) if r["filename"] == name]
        if found and (not settled or found[0]["status"] not in ("pending", "scanning")):
            return found[0]
        assert time.monotonic() < deadline, f"no settled receipt for {name}: {found}"
        time.sleep(0.2)


def entries(proc: GatewayProcess, ticket: str) -> tuple[dict[str, str], list[str]]:
    """Each file's part of the ticket's comments (by file name), and every attachment's name."""
    blocks: dict[str, str] = {}
    attached: list[str] = []
    for comment in ticket_comments(proc, ticket):
        for block in comment["body"].split("• ")[1:]:
            blocks[block.split(" — ", 1)[0]] = block
        attached += [a["file_name"] for a in comment["attachments"]]
    return blocks, attached


def assert_quarantined_and_clean_delivered(
    proc: GatewayProcess, link: str, ticket: str, infected: list[str], clean: dict[str, bytes]
) -> None:
    for name in infected:
        receipt = wait_for_receipt(link, name, settled=True)
        assert receipt["status"] == "quarantined", receipt
        url, _ = Links(proc.settings).download_url(receipt["file_id"], name)
        refused = httpx.get(url, timeout=TIMEOUT)
        assert refused.status_code == 403, refused.text
        assert "quarantine" in refused.json()["error"]["message"]
    for name in clean:
        assert wait_for_receipt(link, name, settled=True)["status"] == "delivered"
    ticket_comments(proc, ticket, wait_for=1)
    deadline = time.monotonic() + TIMEOUT
    while True:
        blocks, attached = entries(proc, ticket)
        if set(blocks) >= {*infected, *clean} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for name in infected:
        block = blocks[name]
        assert f"QUARANTINED: malware detected ({EICAR_SIGNATURE})" in block, block
        assert "/files/" not in block and "Download" not in block, block
        assert name not in attached
    for name, data in clean.items():
        assert hashlib.sha256(data).hexdigest() in blocks[name]
        assert "QUARANTINED" not in blocks[name]
        assert attached.count(name) == 1
    # Nothing anywhere on the ticket links to a quarantined file.
    for comment in ticket_comments(proc, ticket):
        linked = {unquote(n) for n in re.findall(r"/files/[^/\s]+/(\S+)", comment["body"])}
        assert not linked & set(infected), comment["body"]


Uploader = Callable[[str, dict[str, bytes]], list[dict[str, Any]]]


@pytest.mark.parametrize("upload", [put, form, tus], ids=["put", "form", "tus"])
def test_eicar_is_quarantined_and_never_linked_while_a_clean_file_is_delivered(
    scanning_gateway: GatewayProcess, upload: Uploader
) -> None:
    ticket = f"66{upload.__name__}"
    link = scanning_gateway.link(ticket)
    files = {"eicar.com": EICAR, "notes.txt": CLEAN}
    got = upload(link, files)
    assert {r["filename"] for r in got} == set(files)
    assert_quarantined_and_clean_delivered(
        scanning_gateway, link, ticket, ["eicar.com"], {"notes.txt": CLEAN}
    )


def test_eicar_inside_a_large_stored_file_gets_no_download_link(
    scanning_gateway: GatewayProcess,
) -> None:
    """Past the attachment cap a clean file gets a link; an infected one must not."""
    big = os.urandom(10 * MiB) + EICAR + os.urandom(11 * MiB)
    link = scanning_gateway.link("6700")
    (receipt,) = put(link, {"dump.bin": big})
    assert receipt["route"] == "storage"
    assert_quarantined_and_clean_delivered(scanning_gateway, link, "6700", ["dump.bin"], {})


def test_eicar_from_the_browser_page_is_quarantined(
    scanning_gateway: GatewayProcess, browser: Browser, tmp_path: Path
) -> None:
    infected, clean = tmp_path / "eicar.com", tmp_path / "notes.txt"
    infected.write_bytes(EICAR)
    clean.write_bytes(CLEAN)
    link = scanning_gateway.link("6800")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(link)
        expect(page.locator("#app")).to_have_attribute("data-ready", "true")
        page.set_input_files("#files", [str(infected), str(clean)])
        rows = page.locator("li.row")
        expect(rows).to_have_count(2)
        flagged = rows.filter(has_text="eicar.com")
        expect(flagged.locator(".state")).to_contain_text(
            "virus scanner flagged this file", timeout=TIMEOUT * 1000
        )
        expect(rows.filter(has_text="notes.txt")).to_have_attribute("data-state", "done")
    finally:
        context.close()
    assert_quarantined_and_clean_delivered(
        scanning_gateway, link, "6800", ["eicar.com"], {"notes.txt": CLEAN}
    )


def test_scanner_down_delivery_waits_readyz_says_why_then_a_live_scanner_delivers(
    tmp_path: Path, clamd: ClamdServer
) -> None:
    workdir = tmp_path / "gw"
    dead = f"tcp://127.0.0.1:{free_port()}"
    proc = start_gateway(workdir, gateway_env(workdir, GATEWAY_CLAMD=dead))
    try:
        link = proc.link("6900")
        put(link, {"notes.txt": CLEAN, "eicar.com": EICAR})
        deadline = time.monotonic() + TIMEOUT
        while True:
            waiting = wait_for_receipt(link, "notes.txt")
            if "scanner" in waiting.get("status_detail", "") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert waiting["status"] == "pending"
        assert "malware scanner" in waiting["status_detail"]
        assert wait_for_receipt(link, "eicar.com")["status"] == "pending"
        ready = httpx.get(f"{proc.url}/readyz", timeout=TIMEOUT)
        assert ready.status_code == 503
        assert ready.json()["checks"]["scanner"] != "ok"
        assert ready.json()["checks"]["storage"] == "ok"
        assert ticket_comments(proc, "6900") == []

        proc.kill()
        proc.env["GATEWAY_CLAMD"] = clamd.tcp_address
        proc.start()
        assert_quarantined_and_clean_delivered(
            proc, link, "6900", ["eicar.com"], {"notes.txt": CLEAN}
        )
        assert httpx.get(f"{proc.url}/readyz", timeout=TIMEOUT).status_code == 200
        bodies = "".join(c["body"] for c in ticket_comments(proc, "6900"))
        for receipt in receipts(link):  # each file in exactly one comment
            assert bodies.count(f"[upload-gateway file {receipt['file_id']}]") == 1
        staff = httpx.get(f"{proc.url}/tickets/6900", headers=staff_headers(proc))
        assert staff.status_code == 200
    finally:
        proc.kill()
