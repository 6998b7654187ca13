"""The page itself: what it says, its headers and assets, the link error pages, and no-JS."""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from gateway.http.assets import SCRIPT_CSP, release
from gateway.http.page import PAGE_CSP
from tests.browser.conftest import screenshot
from tests.support.gateway import GatewayProcess, ticket_comments

pytestmark = pytest.mark.browser

VENDORED = "vendor/hash-wasm/sha256.umd.min.js"


def test_page_names_ticket_cap_and_expiry_under_a_strict_csp(
    gateway_file: GatewayProcess, page: Page
) -> None:
    link = gateway_file.link("31337", max_size=50 * 1024 * 1024, expires_in=3 * 86400)
    response = page.goto(link)
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert response.headers["cache-control"] == "no-store"
    expect(page.locator("h1")).to_have_text("Send files to support")
    facts = page.locator(".facts")
    expect(facts).to_contain_text("#31337")
    expect(facts).to_contain_text("50 MiB")
    expect(facts).to_contain_text("in 2 days")
    expect(page.locator("#app")).to_have_attribute("data-ready", "true")
    # The script upgraded the form: drop zone text, folder picker, no plain submit button.
    expect(page.locator("#drop-title")).to_have_text("Drop files or folders here")
    expect(page.locator("#folder-label")).to_be_visible()
    expect(page.locator("#nojs-actions")).to_be_hidden()
    # Keyboard: the file chooser is reachable with Tab and shows a visible focus ring.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "files"
    outline = page.locator("#files-label").evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline == "solid"
    screenshot(page, "01-empty")


def test_static_assets_are_versioned_and_long_cached(gateway_file: GatewayProcess) -> None:
    html = httpx.get(gateway_file.link("5")).text
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert {u.rsplit("/", 1)[-1] for u in urls} >= {"upload.js", "upload.css", "icon.svg"}
    assert '<script type="module" src="' in html
    # One release hash in every URL, so the page's modules import each other (and start
    # their worker) by relative URL within the same release.
    assert {url.split("/")[2] for url in urls} == {release()}
    modules = ["hashing.js", "tus.js", "sha256.js", "hash-worker.js", VENDORED]
    for url in urls + [f"/static/{release()}/{name}" for name in modules]:
        r = httpx.get(gateway_file.url + url)
        assert r.status_code == 200, url
        assert "immutable" in r.headers["cache-control"]
        assert r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()[:16]}"'
        if url.endswith(".js"):
            # A worker runs under its script's own policy: WebAssembly and same-origin only.
            assert r.headers["content-security-policy"] == SCRIPT_CSP
        again = httpx.get(gateway_file.url + url, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
    js = httpx.get(gateway_file.url + "/static/0000/upload.js")
    assert js.status_code == 200 and "immutable" not in js.headers["cache-control"]
    assert js.headers["content-type"].startswith("text/javascript")
    for bad in ("/static/", "/static/x/", "/static/nope.js", "/static/x/..%2fpage.py",
                "/static/x/vendor/hash-wasm/LICENSE", "/static/x/vendor/../page.py"):  # fmt: skip
        r = httpx.get(gateway_file.url + bad, follow_redirects=True)
        assert r.status_code == 404, bad


def test_expired_and_invalid_links_get_a_friendly_page(
    gateway_file: GatewayProcess, page: Page
) -> None:
    expired = gateway_file.link("777", expires_in=1)
    time.sleep(1.5)
    response = page.goto(expired)
    assert response is not None and response.status == 403
    assert response.headers["content-type"].startswith("text/html")
    expect(page.locator("h1")).to_have_text("This upload link has expired")
    assert "777" not in page.content()
    screenshot(page, "04-expired-link")
    response = page.goto(gateway_file.url + "/u/not-a-real-token")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("This upload link is not valid")


def test_form_without_javascript_uploads_and_lists_receipts(
    gateway_file: GatewayProcess, browser: Browser, tmp_path: Path
) -> None:
    files = []
    for name, size in (("notes.txt", 12_345), ("dump.bin", 600_000)):
        path = tmp_path / name
        path.write_bytes(os.urandom(size))
        files.append(path)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(gateway_file.link("2024"))
        expect(page.locator("#nojs-actions button")).to_be_visible()
        expect(page.locator("#uploads")).to_be_hidden()
        page.set_input_files("#files", [str(p) for p in files])
        with page.expect_navigation():
            page.click("#nojs-actions button")
        expect(page.locator("h1")).to_have_text("2 files received")
        rows = page.locator("li.row")
        expect(rows).to_have_count(2)
        for path in files:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            expect(page.locator(f"code:text('{digest}')")).to_have_count(1)
        screenshot(page, "05-nojs-result")
    finally:
        context.close()
    comments = ticket_comments(gateway_file, "2024", wait_for=1)
    body = "\n".join(c["body"] for c in comments)
    for path in files:
        assert body.count(hashlib.sha256(path.read_bytes()).hexdigest()) == 1


def test_a_file_over_the_cap_fails_with_a_reason_and_a_retry_button(
    gateway_file: GatewayProcess, browser: Browser, tmp_path: Path
) -> None:
    big = tmp_path / "too-big.iso"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    # A phone-sized viewport: the page stays readable in one column.
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(gateway_file.link("1200", max_size=1024 * 1024))
        expect(page.locator("#app")).to_have_attribute("data-ready", "true")
        page.set_input_files("#files", str(big))
        row = page.locator("li.row")
        expect(row).to_have_attribute("data-state", "failed")
        expect(row.locator(".state")).to_have_text(
            "Failed: the file is larger than this link allows (1 MiB)."
        )
        expect(row.get_by_role("button", name="Retry too-big.iso")).to_be_visible()
        expect(page.locator("#announce")).to_contain_text("too-big.iso failed")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # no sideways scrolling on a phone
        screenshot(page, "09-failed-phone")
    finally:
        context.close()
