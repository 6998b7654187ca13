"""How the page's tus client recovers when a chunk goes wrong, against a real gateway.

A write lease held by another request answers 423 with ``Retry-After: 1`` once
the gateway has waited ``GATEWAY_BUSY_WAIT`` for it (a lease a SIGKILLed
gateway left behind lapses within that wait, so the page rarely sees one). The
page waits 423s out without spending its budget of failed attempts, which a
dozen 423s once used up (the upload then ended "failed" after a gateway
restart); the test uses a gateway that does not wait, to get those 423s.

Damaged chunks are made by Playwright's request routing: it flips a byte of a
PATCH body on its way out of the browser, after the page computed the
chunk's checksum, so the gateway itself answers 460. The page must then ask
the gateway where the upload stands (HEAD), read that chunk from the file
again and send it with its true checksum; only the same offset failing five
times in a row is given up as damage on the way.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, Request, Response, Route, expect

from tests.browser.test_upload import (
    LONG,
    MiB,
    assert_one_comment_line_per_file,
    expect_delivered,
    make_file,
    open_page,
    row,
    tus_offset,
    wait_sent,
)
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway

pytestmark = pytest.mark.browser

CHUNK = 256 * 1024


def checksum(data: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()


@dataclass
class Wire:
    """The page's tus traffic as the browser sent it, and a switch to damage PATCHes."""

    damage_at: int = -1  # the Upload-Offset whose PATCH bodies get a flipped byte
    damage_times: int = 0  # how many of them
    sent: list[tuple[str, int | None, str | None]] = field(default_factory=list)
    statuses: list[tuple[str, int | None, int]] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.route("**/tus/**", self._route)
        page.on("response", self._response)

    def _route(self, route: Route, request: Request) -> None:
        offset = request.headers.get("upload-offset")
        number = int(offset) if offset is not None else None
        self.sent.append((request.method, number, request.headers.get("upload-checksum")))
        if request.method == "PATCH" and number == self.damage_at and self.damage_times > 0:
            self.damage_times -= 1
            body = bytearray(request.post_data_buffer or b"")
            body[len(body) // 2] ^= 0x01
            route.continue_(post_data=bytes(body))
            return
        route.continue_()

    def _response(self, response: Response) -> None:
        request = response.request
        if "/tus/" in request.url:
            offset = request.headers.get("upload-offset")
            self.statuses.append((request.method, int(offset) if offset else None, response.status))


def test_a_damaged_chunk_is_read_again_at_the_gateways_offset_and_sent_again(
    gateway_file: GatewayProcess, page: Page, tmp_path: Path
) -> None:
    path = make_file(tmp_path, "trace.json", 2 * MiB + 12345)
    data = path.read_bytes()
    target = 3 * CHUNK
    wire = Wire(damage_at=target, damage_times=4)  # one less than the page tolerates
    wire.attach(page)
    open_page(page, gateway_file.link("4600"), chunk=CHUNK)
    page.set_input_files("#files", str(path))
    expect_delivered(page, path, "Delivered to the ticket", gateway_file)

    rejected = [s for s in wire.statuses if s[2] == 460]
    assert rejected == [("PATCH", target, 460)] * 4
    patches_at_target = [s for s in wire.sent if s[0] == "PATCH" and s[1] == target]
    assert len(patches_at_target) == 5
    # Every try carried the checksum of exactly the file's bytes at that offset.
    assert {s[2] for s in patches_at_target} == {checksum(data[target : target + CHUNK])}
    # After each 460 the page asked the gateway where it stands before sending again.
    tries = [i for i, sent in enumerate(wire.sent) if sent[:2] == ("PATCH", target)]
    assert all(wire.sent[i + 1][0] == "HEAD" for i in tries[:-1]), wire.sent
    assert_one_comment_line_per_file(gateway_file, "4600", [path])


def test_the_same_offset_damaged_five_times_fails_with_a_reason(
    gateway_file: GatewayProcess, page: Page, tmp_path: Path
) -> None:
    path = make_file(tmp_path, "core.dump", MiB + 999)
    target = CHUNK
    wire = Wire(damage_at=target, damage_times=1000)
    wire.attach(page)
    open_page(page, gateway_file.link("4601"), chunk=CHUNK)
    page.set_input_files("#files", str(path))
    r = row(page, path.name)
    expect(r).to_have_attribute("data-state", "failed", timeout=LONG)
    expect(r.locator(".state")).to_contain_text("kept arriving damaged")
    assert [s for s in wire.statuses if s[2] == 460] == [("PATCH", target, 460)] * 5
    assert tus_offset(page, path.name) == target  # the damaged bytes were never kept


def _paused_after_first_chunk(
    page: Page, gateway: GatewayProcess, ticket: str, path: Path
) -> tuple[Wire, Locator, int, str]:
    """Upload ``path`` through the page, pause it once a chunk is sent: wire, row, offset, URL."""
    wire = Wire()
    wire.attach(page)
    open_page(page, gateway.link(ticket), chunk=CHUNK)
    page.set_input_files("#files", str(path))
    wait_sent(page, path.name, CHUNK)
    r = row(page, path.name)
    r.get_by_role("button", name=f"Pause {path.name}").click()
    expect(r).to_have_attribute("data-state", "paused")
    page.wait_for_timeout(300)
    held = tus_offset(page, path.name)
    upload_url = page.evaluate("() => JSON.parse(localStorage.getItem(localStorage.key(0))).url")
    return wire, r, held, upload_url


def test_resume_from_an_offset_that_is_not_a_chunk_boundary(
    gateway_file: GatewayProcess, page: Page, tmp_path: Path
) -> None:
    """Another client moved the upload on by an odd number of bytes while the page paused."""
    path = make_file(tmp_path, "odd.bin", 3 * MiB + 7)
    data = path.read_bytes()
    wire, r, held, upload_url = _paused_after_first_chunk(page, gateway_file, "4602", path)
    odd = 100_003
    response = httpx.patch(
        upload_url,
        content=data[held : held + odd],
        headers={
            "Tus-Resumable": "1.0.0",
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(held),
            "Upload-Checksum": checksum(data[held : held + odd]),
        },
    )
    assert response.status_code == 204, response.text
    moved = held + odd
    assert moved % CHUNK != 0
    r.get_by_role("button", name=f"Resume {path.name}").click()
    expect_delivered(page, path, "Delivered to the ticket", gateway_file)
    resumed = [s for s in wire.sent if s[0] == "PATCH" and s[1] == moved]
    assert resumed == [("PATCH", moved, checksum(data[moved : moved + CHUNK]))]
    assert not [s for s in wire.statuses if s[2] == 460]
    assert_one_comment_line_per_file(gateway_file, "4602", [path])


@pytest.fixture
def gateway_impatient(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway that answers 423 at once and lets a writer idle (no minimum body rate)."""
    work = tmp_path / "gw-impatient"
    env = gateway_env(work, GATEWAY_BUSY_WAIT="0", GATEWAY_MIN_BODY_RATE="0")
    proc = start_gateway(work, env)
    yield proc
    proc.kill()


def test_a_write_lease_held_elsewhere_is_waited_out(
    gateway_impatient: GatewayProcess, page: Page, tmp_path: Path
) -> None:
    """Another request holds the lease (as a killed gateway's request would for 10 s) for as
    long as the page keeps being refused: more refusals than its failure budget must not fail it."""
    path = make_file(tmp_path, "locked.bin", MiB + 4321)
    data = path.read_bytes()
    wire, r, held, upload_url = _paused_after_first_chunk(page, gateway_impatient, "4603", path)
    piece, pieces = 1024, 50
    body = data[held : held + piece * pieces]

    def trickle() -> Iterator[bytes]:
        # Hold the lease until the page has been refused more often than its budget of
        # failed attempts (12), however fast or slow its retries run on this machine.
        yield body[:piece]
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if sum(1 for s in wire.statuses if s[2] == 423) > 12:
                break
            time.sleep(0.25)
        for i in range(1, pieces):
            yield body[i * piece : (i + 1) * piece]
            time.sleep(0.02)

    answers: list[int] = []

    def slow_patch() -> None:
        response = httpx.patch(
            upload_url,
            content=trickle(),
            headers={
                "Tus-Resumable": "1.0.0",
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(held),
                "Content-Length": str(len(body)),
                "Upload-Checksum": checksum(body),
            },
            timeout=60,
        )
        answers.append(response.status_code)

    writer = threading.Thread(target=slow_patch)
    writer.start()
    page.wait_for_timeout(1000)  # the slow request holds the lease now
    r.get_by_role("button", name=f"Resume {path.name}").click()
    shown: set[str] = set()
    while writer.is_alive():  # keep Playwright's dispatcher (and so the routing) running
        page.wait_for_timeout(200)
        shown.add(r.locator(".stats").text_content() or "")
    assert answers == [204]
    expect_delivered(page, path, "Delivered to the ticket", gateway_impatient)
    locked = [s for s in wire.statuses if s[2] == 423]
    # More 423s than the page's budget of failed attempts (12).
    assert len(locked) > 12, (len(locked), wire.statuses, sorted(shown))
    assert any("busy with this file, waiting" in text for text in shown), shown
    assert_one_comment_line_per_file(gateway_impatient, "4603", [path])
