"""GATEWAY_DOWNLOAD_AUTH=oidc: a real OpenID provider, headless Chromium through the redirects."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext

from gateway import signing
from gateway.errors import ConfigError
from gateway.sessions import SESSION
from gateway.settings import load_settings
from tests.browser.conftest import browser, playwright_session  # noqa: F401 - fixtures
from tests.downloads.conftest import MiB, upload
from tests.support.gateway import GatewayProcess, gateway_env, staff_headers, start_gateway
from tests.support.oidc import OidcProvider

pytestmark = pytest.mark.browser
TICKET = "7070"
COOKIE = "gateway_engineer"


@dataclass
class Guarded:
    proc: GatewayProcess
    provider: OidcProvider
    data: bytes
    sha256: str

    def link(self) -> str:
        response = httpx.get(
            f"{self.proc.url}/api/tickets/{TICKET}/files", headers=staff_headers(self.proc)
        )
        response.raise_for_status()
        url: str = response.json()["files"][0]["download_url"]
        return url

    def audit(self, event: str) -> list[dict]:
        found = []
        for line in self.proc.log_path.read_text().splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                entry = json.loads(line)
                found.append(entry.get("fields", entry))
        return found


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, oidc_provider: OidcProvider
) -> Iterator[Guarded]:
    work = tmp_path_factory.mktemp("guarded")
    env = gateway_env(work, GATEWAY_ATTACHMENT_MAX="1MiB", **oidc_provider.gateway_env())
    proc = start_gateway(work, env)
    data = os.urandom(3 * MiB)
    upload(proc, TICKET, "evidence.bin", data)
    yield Guarded(proc, oidc_provider, data, hashlib.sha256(data).hexdigest())
    proc.kill()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:  # noqa: F811
    context = browser.new_context(accept_downloads=True)
    yield context
    context.close()


def sign_in_and_download(guarded: Guarded, context: BrowserContext, user: str) -> bytes:
    """Open the link, pick ``user`` at the provider, and return what the browser saved."""
    page = context.new_page()
    page.goto(guarded.link())
    assert page.url.startswith(f"{guarded.provider.issuer}/oauth2/authorize?")
    assert "code_challenge_method=S256" in page.url and "code_challenge=" in page.url
    with page.expect_download() as info:
        page.click(f"button[name=sub][value={user}]")
    path = info.value.path()
    assert info.value.suggested_filename == "evidence.bin"
    return Path(path).read_bytes()


def session_cookie(context: BrowserContext) -> dict | None:
    for cookie in context.cookies():
        if cookie["name"] == COOKIE:
            return dict(cookie)
    return None


def test_sign_in_through_the_provider_then_download(
    guarded: Guarded, context: BrowserContext
) -> None:
    saved = sign_in_and_download(guarded, context, "alice")
    assert hashlib.sha256(saved).hexdigest() == guarded.sha256
    cookie = session_cookie(context)
    assert cookie is not None
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # loopback; Secure everywhere else
    downloads = [e for e in guarded.audit("downloaded") if e.get("by")]
    assert downloads and downloads[-1]["by"] == "alice@support.example"
    # Signed in, the next link downloads at once (no trip to the provider).
    page = context.new_page()
    with page.expect_download() as info:
        page.evaluate("url => { location.href = url }", guarded.link())
    assert Path(info.value.path()).read_bytes() == guarded.data
    # Logout removes the session: the link needs a sign-in again.
    logout = context.new_page()
    logout.goto(f"{guarded.proc.url}/auth/logout")
    assert "Signed out" in logout.content()
    assert session_cookie(context) is None
    again = context.request.get(guarded.link(), headers={"Accept": "application/json"})
    assert again.status == 401


def test_a_group_in_the_allow_rule_is_enough(guarded: Guarded, context: BrowserContext) -> None:
    saved = sign_in_and_download(guarded, context, "bob")  # another domain, group tier2
    assert saved == guarded.data


def test_a_user_outside_the_allow_rule_is_refused(
    guarded: Guarded, context: BrowserContext
) -> None:
    page = context.new_page()
    page.goto(guarded.link())
    page.click("button[name=sub][value=mallory]")
    page.wait_for_load_state()
    assert "Sign-in refused" in page.content()
    assert "mallory@elsewhere.example is not allowed" in page.content()
    assert session_cookie(context) is None
    refused = guarded.audit("signin_refused")
    assert any("mallory" in str(e.get("reason")) for e in refused)


def _sealed(guarded: Guarded, *, exp: int, signed_in: int, secret: bytes | None = None) -> str:
    claims = {"s": "alice", "e": "alice@support.example", "n": "", "i": signed_in, "exp": exp}
    return signing.sign(claims, secret or guarded.proc.settings.secret, SESSION)


def test_forged_and_expired_cookies_are_refused(guarded: Guarded) -> None:
    link = guarded.link()
    now = int(time.time())
    good = _sealed(guarded, exp=now + 600, signed_in=now - 60)
    accepted = httpx.get(link, cookies={COOKIE: good})
    assert accepted.status_code == 200 and accepted.content == guarded.data
    renewed = accepted.cookies.get(COOKIE)
    assert renewed and renewed != good  # the idle lifetime slides with use
    bad = {
        "garbage": "not-a-session",
        "tampered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "other secret": _sealed(guarded, exp=now + 600, signed_in=now, secret=b"x" * 40),
        "idle expired": _sealed(guarded, exp=now - 1, signed_in=now - 600),
        "past the absolute lifetime": _sealed(guarded, exp=now + 600, signed_in=now - 13 * 3600),
        "an upload token": signing.sign(
            {"exp": now + 600}, guarded.proc.settings.secret, signing.UPLOAD
        ),
    }
    for name, value in bad.items():
        response = httpx.get(link, cookies={COOKIE: value})
        assert response.status_code == 401, name
        assert response.json()["error"]["code"] == "unauthorized"
    browser_like = httpx.get(link, cookies={COOKIE: "x"}, headers={"Accept": "text/html"})
    assert browser_like.status_code == 303
    assert browser_like.headers["location"].startswith("/auth/login?next=%2Ffiles%2F")


def test_the_link_is_checked_first_and_the_staff_token_stands_for_an_engineer(
    guarded: Guarded, tmp_path: Path
) -> None:
    link = guarded.link()
    base, _, name = link.rpartition("/")
    tampered = base[:-3] + ("AAA" if not base.endswith("AAA") else "BBB") + "/" + name
    assert httpx.get(tampered).status_code == 403
    assert httpx.head(link).status_code == 401
    staff = httpx.get(link, headers=staff_headers(guarded.proc))
    assert staff.status_code == 200 and staff.content == guarded.data
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "download", "--quiet", "--ticket", TICKET,
         "--gateway", guarded.proc.url, "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "GATEWAY_STAFF_TOKEN": guarded.proc.env["GATEWAY_STAFF_TOKEN"]},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK {guarded.sha256} ")
    # A link on its own needs sign-in; with --gateway the staff token goes with it.
    for extra, code in (([], 1), (["--gateway", guarded.proc.url], 0)):
        by_link = subprocess.run(
            [sys.executable, "-m", "gateway", "download", "--quiet", link, *extra,
             "-o", str(tmp_path / f"link{code}")],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "GATEWAY_STAFF_TOKEN": guarded.proc.env["GATEWAY_STAFF_TOKEN"]},
        )  # fmt: skip
        assert by_link.returncode == code, by_link.stdout + by_link.stderr
        expected = f"OK {guarded.sha256} " if code == 0 else "FAILED "
        assert by_link.stdout.startswith(expected), by_link.stdout


def test_a_callback_that_was_not_started_here_is_refused(guarded: Guarded) -> None:
    response = httpx.get(f"{guarded.proc.url}/auth/callback?code=x&state=y")
    assert response.status_code == 400 and COOKIE not in response.cookies
    assert response.json()["error"]["code"] == "bad_request"
    page = httpx.get(
        f"{guarded.proc.url}/auth/callback?code=x&state=y", headers={"Accept": "text/html"}
    )
    assert page.status_code == 400 and "Sign-in refused" in page.text
    login = httpx.get(f"{guarded.proc.url}/auth/login?next=https://evil.example/")
    assert login.status_code == 303
    pending = login.cookies.get("gateway_signin")
    state = httpx.URL(login.headers["location"]).params["state"]
    wrong_state = httpx.get(
        f"{guarded.proc.url}/auth/callback?code=x&state={state}x",
        cookies={"gateway_signin": pending},
    )
    assert wrong_state.status_code == 400


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("GATEWAY_OIDC_ISSUER", "GATEWAY_OIDC_ISSUER"),
        ("GATEWAY_OIDC_CLIENT_SECRET", "GATEWAY_OIDC_CLIENT_SECRET"),
        ("GATEWAY_OIDC_ALLOWED_DOMAINS", "GATEWAY_OIDC_ALLOWED_DOMAINS"),
    ],
)
def test_settings_name_what_is_missing(tmp_path: Path, missing: str, variable: str) -> None:
    env = {
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_DOWNLOAD_AUTH": "oidc",
        "GATEWAY_OIDC_ISSUER": "https://id.example",
        "GATEWAY_OIDC_CLIENT_ID": "c",
        "GATEWAY_OIDC_CLIENT_SECRET": "s",
        "GATEWAY_OIDC_ALLOWED_DOMAINS": "example.com",
    }
    assert load_settings(env).oidc is not None
    del env[missing]
    with pytest.raises(ConfigError, match=rf"^{variable}: "):
        load_settings(env)


def test_settings_want_https_outside_loopback(tmp_path: Path) -> None:
    env = {
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_PUBLIC_URL": "http://uploads.example.com",
        "GATEWAY_DOWNLOAD_AUTH": "oidc",
        "GATEWAY_OIDC_ISSUER": "https://id.example",
        "GATEWAY_OIDC_CLIENT_ID": "c",
        "GATEWAY_OIDC_CLIENT_SECRET": "s",
        "GATEWAY_OIDC_ALLOWED_GROUPS": "support",
    }
    with pytest.raises(ConfigError, match=r"^GATEWAY_PUBLIC_URL: must be https"):
        load_settings(env)
    env["GATEWAY_PUBLIC_URL"] = "https://uploads.example.com"
    oidc = load_settings(env).oidc
    assert oidc is not None and oidc.allowed_groups == ("support",)
