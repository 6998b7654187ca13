"""An unexpected exception is the catalogue's 500 with every header a response gets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.http.errors import speak
from gateway.http.tus_reply import tus_error
from gateway.settings import load_settings


def _get(tmp_path: Path, dialect: str) -> httpx.Response:
    async def boom(request: Request) -> Response:
        if request.query_params.get("dialect"):
            speak(request, tus_error)
        raise RuntimeError("a bug")

    app = create_app(load_settings({"GATEWAY_DATA_DIR": str(tmp_path)}))
    app.router.routes.insert(0, Route("/boom", boom))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            params = {"dialect": dialect} if dialect else None
            return await client.get("/boom", params=params, headers={"X-Request-ID": "abc123"})

    return asyncio.run(get())


@pytest.mark.parametrize("dialect", ["", "tus"])
def test_a_bug_is_a_json_500_with_security_headers_and_request_id(
    tmp_path: Path, dialect: str
) -> None:
    response = _get(tmp_path, dialect)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    assert "a bug" not in response.text  # the cause goes to the log only
    assert response.headers["x-request-id"] == "abc123"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in response.headers
    if dialect:
        assert response.headers["tus-resumable"] == "1.0.0"
