"""Upload links: the CLI, the staff API, and what a bad link gets (no ticket named)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.links import Links
from tests.support.gateway import GatewayProcess, gateway_env, staff_headers, start_gateway

TICKET = "918273645"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("links")
    proc = start_gateway(work, gateway_env(work))
    yield proc
    proc.kill()


def _token(url: str) -> str:
    return url.rsplit("/u/", 1)[1]


def _assert_error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] and body["error"]["message"]
    assert TICKET not in response.text
    error: dict[str, str] = body["error"]
    return error


def test_cli_prints_the_url_last(gw: GatewayProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "link", "--ticket", TICKET, "--expires", "2h",
         "--max-size", "5MiB"],
        env=gw.env, cwd=gw.workdir, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    url = done.stdout.strip().splitlines()[-1]
    assert url.startswith(f"{gw.url}/u/")
    assert TICKET not in url
    listing = httpx.get(f"{url}/files")
    assert listing.status_code == 200 and listing.json()["ticket"] == TICKET
    put = httpx.put(f"{url}/note.txt", content=b"hello")
    assert put.status_code == 201 and put.json()["ticket"] == TICKET
    too_big = httpx.put(f"{url}/big.bin", content=b"x" * (5 * 1024 * 1024 + 1))
    assert too_big.status_code == 413


def test_cli_rejects_a_bad_duration(gw: GatewayProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "link", "--ticket", TICKET, "--expires", "forever"],
        env=gw.env, cwd=gw.workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "forever" in done.stderr
    assert "/u/" not in done.stdout


def test_api_mints_a_working_link(gw: GatewayProcess) -> None:
    before = time.time()
    response = httpx.post(
        f"{gw.url}/api/links",
        json={"ticket": TICKET, "expires_in": 3600},
        headers=staff_headers(gw),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["url"].startswith(f"{gw.url}/u/")
    assert before + 3600 - 5 <= body["expires_at"] <= time.time() + 3600 + 5
    put = httpx.put(f"{body['url']}/log.txt", content=b"api")
    assert put.status_code == 201 and put.json()["ticket"] == TICKET


def test_api_accepts_a_numeric_ticket(gw: GatewayProcess) -> None:
    response = httpx.post(f"{gw.url}/api/links", json={"ticket": 4242}, headers=staff_headers(gw))
    assert response.status_code == 201
    assert httpx.get(f"{response.json()['url']}/files").json()["ticket"] == "4242"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic c3RhZmY6eA=="},
     {"Authorization": "Bearer"}],
)  # fmt: skip
def test_api_without_the_staff_token_is_401(gw: GatewayProcess, headers: dict[str, str]) -> None:
    response = httpx.post(f"{gw.url}/api/links", json={"ticket": TICKET}, headers=headers)
    _assert_error(response, 401)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'"123"', b'{"ticket": null}', b'{"ticket": "a/b"}',
     b'{"ticket": "1", "expires_in": "soon"}', b'{"ticket": "1", "expires_in": -5}',
     b'{"ticket": "1", "max_size": "lots"}', b'{"ticket": true}'],
)  # fmt: skip
def test_api_bad_body_is_400(gw: GatewayProcess, content: bytes) -> None:
    response = httpx.post(
        f"{gw.url}/api/links",
        content=content,
        headers={**staff_headers(gw), "Content-Type": "application/json"},
    )
    _assert_error(response, 400)


def _flip(token: str, index: int) -> str:
    swapped = "A" if token[index] != "A" else "B"
    return token[:index] + swapped + token[index + 1 :]


def test_bad_links_are_404_and_name_no_ticket(gw: GatewayProcess) -> None:
    token = _token(gw.link(TICKET))
    other = Links(gw.settings.with_(secret=b"another-secret-" * 4)).mint(TICKET).token
    bad = {
        "tampered start": _flip(token, 0),
        "tampered middle": _flip(token, len(token) // 2),
        "tampered end": _flip(token, len(token) - 1),
        "truncated": token[:-3],
        "half": token[: len(token) // 2],
        "extended": token + "AA",
        "forged": "A" * len(token),
        "other secret": other,
        "not base64": "~~~~",
    }
    for name, value in bad.items():
        for method, path in (("GET", "/files"), ("PUT", "/f.txt"), ("POST", "")):
            response = httpx.request(method, f"{gw.url}/u/{value}{path}", content=b"x")
            error = _assert_error(response, 404)
            assert error["code"] == "link_invalid", (name, method)


def test_expired_link_is_403(gw: GatewayProcess) -> None:
    past = Links(gw.settings, clock=lambda: time.time() - 3600)
    url = past.mint(TICKET, expires_in=60).url
    for method, path in (("GET", "/files"), ("PUT", "/f.txt"), ("POST", "")):
        response = httpx.request(method, f"{url}{path}", content=b"x")
        error = _assert_error(response, 403)
        assert error["code"] == "link_expired"
        assert "expired" in error["message"]
    page = httpx.get(url)  # the browser page says so in HTML
    assert page.status_code == 403
    assert TICKET not in page.text


def test_upload_token_is_not_a_download_token(gw: GatewayProcess) -> None:
    token = _token(gw.link(TICKET))
    response = httpx.get(f"{gw.url}/files/{token}/x.bin")
    _assert_error(response, 403)


def test_link_cannot_exceed_the_gateways_cap(gw: GatewayProcess, tmp_path: Path) -> None:
    response = httpx.post(
        f"{gw.url}/api/links",
        json={"ticket": TICKET, "max_size": "99TiB"},
        headers=staff_headers(gw),
    )
    _assert_error(response, 400)
