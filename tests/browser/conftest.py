"""Headless Chromium (Debian's, never a downloaded one) driven by Playwright.

The browser is started once per test session. Where ``/usr/bin/chromium`` is
missing the browser tests skip on a workstation and fail in CI (``CI=true``).
Screenshots of the page's main states go to ``test-artifacts/screenshots``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from bench.page_client import ARGS as PAGE_CLIENT_ARGS
from tests.support.ci import missing_tool

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [arg for arg in PAGE_CLIENT_ARGS if arg != "--enable-precise-memory-info"]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


# Module scope, not session: Playwright's sync API keeps an event loop running in
# the main thread while it is open, which breaks every later test that calls
# asyncio.run(). Each browser module starts and stops its own.
@pytest.fixture(scope="module")
def playwright_session() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (Debian package 'chromium')"
        missing_tool(message)
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright_session: Playwright) -> Iterator[Browser]:
    browser = playwright_session.chromium.launch(
        executable_path=str(CHROMIUM), args=ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    yield page
    assert not errors, f"page errors or CSP violations: {errors}"


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
