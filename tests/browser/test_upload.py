"""Uploads through the page's own tus client, against a real gateway process.

Loopback is fast, so mid-upload states are made observable with small chunks
(``?chunk=``) and latency added by Chromium's own network emulation (DevTools;
its throughput limit does not slow request bodies down, latency does slow
every PATCH); the gateway is untouched.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser.conftest import screenshot
from tests.support.gateway import GatewayProcess, ticket_comments, tus_bytes_received

pytestmark = pytest.mark.browser

MiB = 1024 * 1024
LONG = 90_000  # ms: an upload's final state, with room for a slow shared machine


def make_file(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_page(page: Page, link: str, chunk: int | None = None) -> None:
    page.goto(link + (f"?chunk={chunk}" if chunk else ""))
    expect(page.locator("#app")).to_have_attribute("data-ready", "true")


def row(page: Page, name: str) -> Locator:
    return page.locator("li.row", has=page.locator(".name", has_text=name))


def throttle(context: BrowserContext, page: Page, latency_ms: int = 300) -> Any:
    """Slow the page's requests down inside Chromium (no proxy, no change to the gateway)."""
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": latency_ms,
            "downloadThroughput": -1,
            "uploadThroughput": -1,
        },
    )
    return cdp


def sent(page: Page, name: str) -> int:
    return int(row(page, name).get_attribute("data-sent") or 0)


def wait_sent(page: Page, name: str, at_least: int) -> None:
    page.wait_for_function(
        """([name, n]) => [...document.querySelectorAll('li.row')].some(
             r => r.querySelector('.name').textContent === name && Number(r.dataset.sent) >= n)""",
        arg=[name, at_least],
        timeout=LONG,
    )


def expect_delivered(page: Page, path: Path, text: str, proc: GatewayProcess | None = None) -> None:
    r = row(page, path.name)
    try:
        expect(r).to_have_attribute("data-status", "delivered", timeout=LONG)
    except AssertionError as exc:
        screenshot(page, f"failure-{path.name}")
        state = r.locator(".state").text_content()
        log = "" if proc is None else proc.log_tail(40)
        raise AssertionError(f"{path.name}: {state!r}\n{log}") from exc
    expect(r.locator(".state")).to_have_text(text)
    expect(r.locator("progress")).to_have_attribute("value", "100")
    expect(r).to_have_attribute("data-verified", "true")
    expect(r.locator(".hash code")).to_have_text(sha256(path))


def assert_one_comment_line_per_file(proc: GatewayProcess, ticket: str, paths: list[Path]) -> None:
    body = ""
    for _ in range(3):
        comments = ticket_comments(proc, ticket, wait_for=1)
        body = "\n".join(c["body"] for c in comments)
        if all(sha256(p) in body for p in paths):
            break
    for path in paths:
        assert body.count(sha256(path)) == 1, (path.name, body)


def tus_offset(page: Page, name: str) -> int:
    """What the gateway holds of an unfinished upload remembered by the page (tus HEAD)."""
    url = page.evaluate(
        """(name) => {
             for (let i = 0; i < localStorage.length; i++) {
               const v = JSON.parse(localStorage.getItem(localStorage.key(i)));
               if (v && v.name === name) return v.url;
             }
             return null;
           }""",
        name,
    )
    assert url, f"no remembered upload for {name}"
    r = httpx.head(url, headers={"Tus-Resumable": "1.0.0"})
    assert r.status_code == 200, r.status_code
    return int(r.headers["Upload-Offset"])


def test_several_files_reach_the_ticket_with_matching_sha256(
    gateway_s3: GatewayProcess, page: Page, tmp_path: Path
) -> None:
    small = make_file(tmp_path, "screenshot.png", 300_000)
    medium = make_file(tmp_path, "app.log", 3 * MiB + 17)
    large = make_file(tmp_path, "heapdump.bin", 21 * MiB + 5)
    open_page(page, gateway_s3.link("5150"), chunk=4 * MiB)
    page.set_input_files("#files", [str(small), str(medium), str(large)])
    expect(page.locator("li.row")).to_have_count(3)
    expect_delivered(page, small, "Delivered to the ticket")
    expect_delivered(page, medium, "Delivered to the ticket")
    expect_delivered(page, large, "Stored, link posted on the ticket")
    screenshot(page, "03-done")
    assert_one_comment_line_per_file(gateway_s3, "5150", [small, medium, large])
    assert page.evaluate("localStorage.length") == 0  # finished uploads are forgotten


def unthrottle(cdp: Any) -> None:
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )


def test_pause_and_resume(
    gateway_file: GatewayProcess, context: BrowserContext, page: Page, tmp_path: Path
) -> None:
    path = make_file(tmp_path, "capture.pcap", 10 * MiB)
    open_page(page, gateway_file.link("600"), chunk=256 * 1024)
    cdp = throttle(context, page)
    page.set_input_files("#files", str(path))
    wait_sent(page, path.name, MiB)
    r = row(page, path.name)
    r.get_by_role("button", name=f"Pause {path.name}").click()
    expect(r).to_have_attribute("data-state", "paused")
    screenshot(page, "08-paused")
    expect(r.get_by_role("button", name=f"Resume {path.name}")).to_be_focused()
    held = tus_offset(page, path.name)
    assert 0 < held < path.stat().st_size
    page.wait_for_timeout(1000)
    assert tus_offset(page, path.name) == held  # nothing moves while paused
    unthrottle(cdp)
    r.get_by_role("button", name=f"Resume {path.name}").click()
    expect_delivered(page, path, "Delivered to the ticket")
    assert tus_bytes_received(gateway_file) < path.stat().st_size + MiB  # no restart from 0
    assert_one_comment_line_per_file(gateway_file, "600", [path])


def test_network_cut_mid_upload_resumes_by_itself(
    gateway_file: GatewayProcess, context: BrowserContext, page: Page, tmp_path: Path
) -> None:
    path = make_file(tmp_path, "database.sql.gz", 8 * MiB)
    open_page(page, gateway_file.link("700"), chunk=256 * 1024)
    throttle(context, page)
    page.set_input_files("#files", str(path))
    wait_sent(page, path.name, 2 * MiB)
    context.set_offline(True)
    r = row(page, path.name)
    expect(r.locator(".stats")).to_contain_text("offline", timeout=LONG)
    screenshot(page, "06-offline")
    held = tus_offset(page, path.name)
    assert held > 0
    context.set_offline(False)  # also lifts the throttle
    expect_delivered(page, path, "Delivered to the ticket")
    assert tus_bytes_received(gateway_file) < path.stat().st_size + MiB
    assert_one_comment_line_per_file(gateway_file, "700", [path])


def test_reload_mid_upload_resumes_when_the_file_is_picked_again(
    gateway_file: GatewayProcess, context: BrowserContext, page: Page, tmp_path: Path
) -> None:
    path = make_file(tmp_path, "recording.mp4", 8 * MiB)
    link = gateway_file.link("800")
    open_page(page, link, chunk=256 * 1024)
    cdp = throttle(context, page)
    page.set_input_files("#files", str(path))
    wait_sent(page, path.name, 2 * MiB)
    screenshot(page, "02-uploading")
    page.reload()
    expect(page.locator("#app")).to_have_attribute("data-ready", "true")
    held = tus_offset(page, path.name)
    assert held >= MiB
    unthrottle(cdp)
    page.set_input_files("#files", str(path))
    expect_delivered(page, path, "Delivered to the ticket")
    # Resumed, not restarted: the gateway took in about the file once, not once plus `held`.
    assert tus_bytes_received(gateway_file) < path.stat().st_size + MiB
    assert_one_comment_line_per_file(gateway_file, "800", [path])


def test_gateway_restart_mid_upload_resumes_by_itself(
    gateway_s3: GatewayProcess, context: BrowserContext, page: Page, tmp_path: Path
) -> None:
    path = make_file(tmp_path, "cluster-dump.tar", 24 * MiB)
    open_page(page, gateway_s3.link("900"), chunk=MiB)
    cdp = throttle(context, page)
    page.set_input_files("#files", str(path))
    wait_sent(page, path.name, 6 * MiB)
    gateway_s3.kill()
    r = row(page, path.name)
    expect(r.locator(".stats")).to_contain_text("Reconnecting in", timeout=LONG)
    screenshot(page, "07-retrying")
    gateway_s3.start()
    assert tus_offset(page, path.name) > 0  # what was stored survived the crash
    unthrottle(cdp)
    expect_delivered(page, path, "Stored, link posted on the ticket", gateway_s3)
    assert_one_comment_line_per_file(gateway_s3, "900", [path])
